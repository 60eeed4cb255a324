"""Learning-rate sweeps: the comparison table and the overlaid curves."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy.orm import Session

from api.deps import SessionDep
from api.routes.runs import PNG_RESPONSE, history, is_id, metric_name, png, run_outs
from api.schemas import SweepOut, SweepRow
from core.models import Run
from core.runs import HIGHER_IS_BETTER, epochs, list_runs
from ml import plots
from ml.config import MODELS

router = APIRouter(tags=["sweeps"])
MAX_SWEEP_RUNS = 1000
NOT_FOUND = {404: {"description": "no such sweep"}}


def sweep_runs(session: Session, sweep_id: str) -> list[Run]:
    """The sweep's runs in the order they were requested; 404 when there are none."""
    found = list_runs(session, sweep_id=sweep_id, limit=MAX_SWEEP_RUNS) if is_id(sweep_id) else []
    if not found:
        raise HTTPException(404, f"no sweep {sweep_id[:64]!r}")
    return list(reversed(found))  # list_runs gives newest first


def best_of(runs: list[Run]) -> Run | None:
    """The succeeded run with the best validation metric; while none succeeded, the best so far."""
    scored = [r for r in runs if r.best_val_metric is not None]
    pool = [r for r in scored if r.status == "succeeded"] or scored
    if not pool:
        return None
    sign = 1.0 if HIGHER_IS_BETTER.get(pool[0].model, True) else -1.0
    return max(pool, key=lambda r: sign * r.best_val_metric)


def _labels(runs: list[Run]) -> list[str]:
    """`lr=…` per run, made unique when a sweep repeats a learning rate."""
    labels: list[str] = []
    for run in runs:
        label = f"lr={float(run.config.get('learning_rate', 0)):g}"
        labels.append(label if label not in labels else f"{label} ({run.id[:6]})")
    return labels


@router.get(
    "/sweeps/{sweep_id}",
    summary="Learning-rate sweep: per run rate, status, final losses and metrics; best marked",
    response_model=SweepOut,
    responses=NOT_FOUND,
)
def sweep(sweep_id: str, session: SessionDep) -> SweepOut:
    members = sweep_runs(session, sweep_id)
    model = members[0].model if members[0].model in MODELS else "cnn"
    best = best_of(members)
    rows = []
    for out in run_outs(session, members):
        latest = out.latest_epoch
        final_val = getattr(latest, "val_accuracy" if out.model == "cnn" else "val_error_rate", None)
        rows.append(SweepRow(
            run_id=out.id, learning_rate=float(out.config.get("learning_rate", 0)), status=out.status,
            epochs_done=out.epochs_done, epochs_total=out.epochs_total,
            final_train_loss=latest.train_loss if latest is not None else None,
            final_val_metric=final_val, best_val_metric=out.best_val_metric, test_metric=out.test_metric,
            best=best is not None and out.id == best.id,
        ))
    return SweepOut(
        sweep_id=sweep_id, model=model, dataset=members[0].dataset, metric=metric_name(model),
        higher_is_better=HIGHER_IS_BETTER[model], best_run_id=best.id if best else None, runs=rows,
    )


@router.get(
    "/sweeps/{sweep_id}/plot.png",
    summary="The sweep's training-loss and validation curves overlaid, one colour per learning rate (PNG)",
    response_class=Response,
    responses={**PNG_RESPONSE, **NOT_FOUND},
)
def sweep_plot(sweep_id: str, session: SessionDep) -> Response:
    members = sweep_runs(session, sweep_id)
    model = members[0].model
    labels = _labels(members)
    curves = {label: history(model, epochs(session, r.id)) for label, r in zip(labels, members, strict=True)}
    title = f"learning-rate sweep {sweep_id[:8]} ({model})"
    return png(plots.sweep_png(curves, metric_name(model), title=title))
