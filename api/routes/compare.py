"""Comparing runs: configs side by side with their differences, and the per-epoch metrics as JSON or CSV.

The reading is api/comparison.py; these routes parse `?runs=ID,ID,...` and pick the representation.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.compare_schemas import MAX_COMPARED, MAX_EXPORTED, Comparison, MetricsExport, id_list_query, split_ids
from api.comparison import compare, export, export_csv
from api.deps import SessionDep

router = APIRouter(tags=["compare"])

ComparedIds = id_list_query(2, MAX_COMPARED)
ExportedIds = id_list_query(1, MAX_EXPORTED)
NOT_FOUND = {404: {"description": "one of the runs does not exist (the first unknown id is named)"}}


@router.get("/compare", summary="Runs side by side: configs and their differences, final and best metrics, "
                                "curves and evaluations", response_model=Comparison, responses=NOT_FOUND)
def compare_runs(runs: ComparedIds, session: SessionDep) -> Comparison:
    return compare(session, split_ids(runs))


@router.get("/compare/metrics.json", summary="Per-epoch metrics and final metrics of a set of runs",
            response_model=MetricsExport, responses=NOT_FOUND)
def metrics_json(runs: ExportedIds, session: SessionDep) -> MetricsExport:
    return export(session, split_ids(runs))


@router.get(
    "/compare/metrics.csv",
    summary="Per-epoch metrics of a set of runs as CSV: one row per epoch, each run's final metrics as columns",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "columns run_id, model, dataset, learning_rate, "
                                                                 "attention, epoch, train_loss, val_metric_name, "
                                                                 "val_metric, then one per final metric"},
               **NOT_FOUND},
)
def metrics_csv(runs: ExportedIds, session: SessionDep) -> Response:
    ids = split_ids(runs)
    text = export_csv(export(session, ids))
    name = f"inkwell-metrics-{ids[0][:8]}{f'-and-{len(ids) - 1}-more' if len(ids) > 1 else ''}.csv"
    return Response(text, media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
