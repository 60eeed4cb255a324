"""Run results: per-epoch and final metrics, artifacts, the best run and the promoted one.

Part of the run repository (core.runs re-exports everything here); writes commit before returning.
"""

from __future__ import annotations

import math

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.models import Artifact, EpochMetric, FinalMetric, PromotedModel, Run, utcnow
from core.upsert import upsert

# The validation metric per model: accuracy (higher is better) or error rate (lower is better).
HIGHER_IS_BETTER = {"cnn": True, "seq2seq": False}
# Reads overwrite objects already in the session: other processes change runs under us.
_FRESH = {"populate_existing": True}


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def record_epoch(
    session: Session,
    run_id: str,
    epoch: int,
    train_loss: float | None,
    val_metric: float | None,
    seconds: float,
) -> None:
    """Store (or overwrite) one epoch's metrics and refresh the run's best validation metric."""
    values = {"train_loss": _finite(train_loss), "val_metric": _finite(val_metric), "seconds": float(seconds),
              "created_at": utcnow()}
    row = {"run_id": run_id, "epoch": int(epoch), **values}
    upsert(session, EpochMetric, row, ["run_id", "epoch"], list(values))
    model = session.scalar(select(Run.model).where(Run.id == run_id))
    best = func.max if HIGHER_IS_BETTER.get(model or "", True) else func.min
    best_value = session.scalar(select(best(EpochMetric.val_metric)).where(EpochMetric.run_id == run_id))
    session.execute(update(Run).where(Run.id == run_id).values(best_val_metric=best_value)
                    .execution_options(synchronize_session=False))
    session.commit()


def record_final(session: Session, run_id: str, name: str, value: float | None) -> None:
    """Store (or overwrite) a final metric such as test_accuracy."""
    values = {"run_id": run_id, "name": name, "value": _finite(value)}
    upsert(session, FinalMetric, values, ["run_id", "name"], ["value"])
    session.commit()


def add_artifact(session: Session, run_id: str, kind: str, name: str, path: str, size_bytes: int) -> Artifact:
    """Record a file (path relative to the artifacts folder); a second call with the same name replaces it."""
    values = {"kind": kind, "path": path, "size_bytes": int(size_bytes), "created_at": utcnow()}
    upsert(session, Artifact, {"run_id": run_id, "name": name, **values}, ["run_id", "name"], list(values))
    session.commit()
    stmt = select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)
    return session.scalars(stmt, execution_options=_FRESH).one()


def promote(session: Session, model: str, run_id: str) -> PromotedModel:
    """Make a succeeded run of `model` the one that serves predictions; ValueError otherwise."""
    run = session.get(Run, run_id, populate_existing=True)
    if run is None:
        raise ValueError(f"no run {run_id!r}")
    if run.model != model:
        raise ValueError(f"run {run_id} is a {run.model} run, not {model}")
    if run.status != "succeeded":
        raise ValueError(f"run {run_id} is {run.status}; only succeeded runs can be promoted")
    values = {"model": model, "run_id": run_id, "promoted_at": utcnow()}
    upsert(session, PromotedModel, values, ["model"], ["run_id", "promoted_at"])
    session.commit()
    return session.get(PromotedModel, model, populate_existing=True)


def promoted_run(session: Session, model: str) -> Run | None:
    """The run promoted for `model`, if any."""
    stmt = select(Run).join(PromotedModel, PromotedModel.run_id == Run.id).where(PromotedModel.model == model)
    return session.scalar(stmt, execution_options=_FRESH)


def best_run(session: Session, model: str) -> Run | None:
    """The succeeded run of `model` with the best validation metric (max accuracy / min error rate)."""
    order = Run.best_val_metric.desc() if HIGHER_IS_BETTER[model] else Run.best_val_metric.asc()
    stmt = (
        select(Run)
        .where(Run.model == model, Run.status == "succeeded", Run.best_val_metric.is_not(None))
        .order_by(order, Run.finished_at.desc(), Run.id)
        .limit(1)
    )
    return session.scalar(stmt, execution_options=_FRESH)


def epochs(session: Session, run_id: str) -> list[EpochMetric]:
    """The run's epoch metrics in epoch order."""
    stmt = select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch)
    return list(session.scalars(stmt, execution_options=_FRESH))


def final_metrics(session: Session, run_id: str) -> dict[str, float | None]:
    """The run's final metrics by name."""
    rows = session.execute(select(FinalMetric.name, FinalMetric.value).where(FinalMetric.run_id == run_id))
    return {name: value for name, value in rows}
