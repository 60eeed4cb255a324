"""Database rows -> response bodies. Metric names come from each run's kind (ml.kinds)."""

from __future__ import annotations

from typing import Any

from fastapi import Response
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from api.schemas import Epoch, ModelInfo, RunMetrics, RunOut, SweepOut, SweepRow, WorkerOut
from core.db import FRESH
from core.models import EpochMetric, FinalMetric, PromotedModel, Run, Worker
from core.results import best_run, epochs, final_metrics, higher_is_better, promoted_run
from ml.kinds import ModelKind, find_kind

PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"},
}


def png(data: bytes) -> Response:
    """A PNG that is never cached (plots change while a run trains)."""
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


def metric_name(model: str) -> str:
    """The validation/test metric of kind `model` ("metric" for a kind no longer registered)."""
    kind = find_kind(model)
    return kind.metric if kind is not None else "metric"


def epoch_out(model: str, row: EpochMetric) -> Epoch:
    """One epoch row as `{"epoch", "train_loss", "val_<metric>", "seconds"}`."""
    return Epoch(epoch=row.epoch, train_loss=row.train_loss, seconds=row.seconds,
                 **{f"val_{metric_name(model)}": row.val_metric})


def history(model: str, rows: list[EpochMetric]) -> list[dict[str, Any]]:
    """Epoch rows as the per-epoch dicts ml.plots draws."""
    return [epoch_out(model, row).model_dump() for row in rows]


def run_outs(session: Session, runs: list[Run]) -> list[RunOut]:
    """Response bodies for `runs`, with their latest epoch and test metric read in two queries."""
    ids = [r.id for r in runs]
    latest: dict[str, EpochMetric] = {}
    finals: dict[tuple[str, str], float | None] = {}
    if ids:
        last = (
            select(EpochMetric.run_id, func.max(EpochMetric.epoch).label("epoch"))
            .where(EpochMetric.run_id.in_(ids)).group_by(EpochMetric.run_id).subquery()
        )
        stmt = select(EpochMetric).join(
            last, and_(EpochMetric.run_id == last.c.run_id, EpochMetric.epoch == last.c.epoch)
        )
        latest = {row.run_id: row for row in session.scalars(stmt, execution_options=FRESH)}
        rows = session.execute(select(FinalMetric.run_id, FinalMetric.name, FinalMetric.value)
                               .where(FinalMetric.run_id.in_(ids)))
        finals = {(run_id, name): value for run_id, name, value in rows}
    out = []
    for run in runs:
        row = latest.get(run.id)
        metric = metric_name(run.model)
        out.append(RunOut(
            id=run.id, model=run.model, dataset=run.dataset, config=run.config, status=run.status,
            sweep_id=run.sweep_id, attempt=run.attempt, worker=run.worker, device=run.device,
            device_request=run.device_request, host=run.host,
            cancel_requested=bool(run.cancel_requested), epochs_total=run.epochs_total,
            epochs_done=row.epoch if row is not None else 0,
            latest_epoch=epoch_out(run.model, row) if row is not None else None,
            metric=metric, best_val_metric=run.best_val_metric, best_epoch=run.best_epoch,
            test_metric_name=f"test_{metric}",
            test_metric=finals.get((run.id, f"test_{metric}")),
            created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
            heartbeat_at=run.heartbeat_at, error=run.error,
        ))
    return out


def run_out(session: Session, run: Run) -> RunOut:
    return run_outs(session, [run])[0]


def metrics_out(session: Session, run: Run) -> RunMetrics:
    """`GET /runs/{id}/metrics`: every epoch, and `test_<metric>` (null until known)."""
    test_name = f"test_{metric_name(run.model)}"
    return RunMetrics(run_id=run.id, model=run.model, status=run.status, epochs_total=run.epochs_total,
                      epochs=[epoch_out(run.model, r) for r in epochs(session, run.id)],
                      **{test_name: final_metrics(session, run.id).get(test_name)})


def sweep_out(session: Session, sweep_id: str, members: list[Run]) -> SweepOut:
    """The sweep table: per run its rate, status, final and best metrics; the best run marked."""
    model = members[0].model
    best = best_run(session, model, sweep_id=sweep_id)
    val_name = f"val_{metric_name(model)}"
    rows = []
    for out in run_outs(session, members):
        latest = out.latest_epoch
        rows.append(SweepRow(
            run_id=out.id, learning_rate=float(out.config.get("learning_rate", 0)), status=out.status,
            epochs_done=out.epochs_done, epochs_total=out.epochs_total,
            final_train_loss=latest.train_loss if latest is not None else None,
            final_val_metric=getattr(latest, val_name, None), best_val_metric=out.best_val_metric,
            test_metric=out.test_metric, best=best is not None and out.id == best.id,
        ))
    return SweepOut(
        sweep_id=sweep_id, model=model, dataset=members[0].dataset, metric=metric_name(model),
        higher_is_better=higher_is_better(model), best_run_id=best.id if best else None, runs=rows,
    )


def model_info(session: Session, kind: ModelKind) -> ModelInfo:
    """A kind, its promoted run, the run serving by default and that run's metrics."""
    promoted = promoted_run(session, kind.name)
    record = session.get(PromotedModel, kind.name, populate_existing=True) if promoted is not None else None
    serving = promoted or best_run(session, kind.name)
    test = final_metrics(session, serving.id).get(kind.test_metric) if serving is not None else None
    hint = None
    if serving is None:
        hint = (f'no trained {kind.name} model yet: POST /train {{"model": "{kind.name}"}} and wait for the run '
                "to succeed (GET /runs/{id})")
    return ModelInfo(
        model=kind.name, metric=kind.metric, higher_is_better=kind.higher_is_better, data_kind=kind.data_kind,
        default_dataset=kind.default_dataset, serves=kind.serves, description=kind.description,
        promoted_run_id=promoted.id if promoted is not None else None,
        promoted_at=record.promoted_at if record is not None else None,
        serving_run_id=serving.id if serving is not None else None,
        serving_source=None if serving is None else ("promoted" if promoted is not None else "best"),
        val_metric=serving.best_val_metric if serving is not None else None, test_metric=test, hint=hint,
    )


def worker_out(worker: Worker) -> WorkerOut:
    """A registry row as `GET /workers` shows it (queues as a list)."""
    return WorkerOut(name=worker.name, host=worker.host, pid=worker.pid,
                     queues=[q for q in worker.queues.split(",") if q], device=worker.device,
                     current_run=worker.current_run, started_at=worker.started_at, last_seen_at=worker.last_seen_at)
