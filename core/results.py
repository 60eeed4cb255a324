"""Run results: per-epoch and final metrics, artifacts, the best run and the promoted one.

The other half of the repository is core.runs (a run's life: create, claim, lease, finish, cancel).
Every function takes a Session; writes commit before returning.
"""

from __future__ import annotations

import math

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from core.db import FRESH
from core.models import Artifact, EpochMetric, FinalMetric, PromotedModel, Run, utcnow
from core.runs import fence
from core.storage import ArtifactStore, checkpoint_key_for
from core.upsert import upsert
from ml.config import CHECKPOINTS
from ml.kinds import find_kind


def higher_is_better(model: str) -> bool:
    """Whether a larger validation metric is better for kind `model` (unknown kinds: True)."""
    kind = find_kind(model)
    return kind.higher_is_better if kind is not None else True


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def record_epoch(
    session: Session,
    run_id: str,
    epoch: int,
    train_loss: float | None,
    val_metric: float | None,
    seconds: float,
    *,
    worker: str | None = None,
) -> None:
    """Store (or overwrite) one epoch's metrics and refresh the run's best validation metric.

    With `worker`, the write is fenced: LeaseLost (nothing written) unless that worker holds a live lease.
    """
    if worker is not None:
        fence(session, run_id, worker)
    values = {"train_loss": _finite(train_loss), "val_metric": _finite(val_metric), "seconds": float(seconds),
              "created_at": utcnow()}
    row = {"run_id": run_id, "epoch": int(epoch), **values}
    upsert(session, EpochMetric, row, ["run_id", "epoch"], list(values))
    model = session.scalar(select(Run.model).where(Run.id == run_id))
    best = func.max if higher_is_better(model or "") else func.min
    best_value = session.scalar(select(best(EpochMetric.val_metric)).where(EpochMetric.run_id == run_id))
    session.execute(update(Run).where(Run.id == run_id).values(best_val_metric=best_value)
                    .execution_options(synchronize_session=False))
    session.commit()


def record_final(session: Session, run_id: str, name: str, value: float | None, *, worker: str | None = None,
                 ) -> None:
    """Store (or overwrite) a final metric such as test_accuracy (fenced by `worker`'s lease when given)."""
    if worker is not None:
        fence(session, run_id, worker)
    values = {"run_id": run_id, "name": name, "value": _finite(value)}
    upsert(session, FinalMetric, values, ["run_id", "name"], ["value"])
    session.commit()


def record_best_epoch(session: Session, run_id: str, epoch: int | None, *, worker: str | None = None) -> None:
    """Store which epoch the run's best checkpoint (best.pt) holds (fenced by `worker`'s lease when given)."""
    if worker is not None:
        fence(session, run_id, worker)
    session.execute(update(Run).where(Run.id == run_id).values(best_epoch=epoch)
                    .execution_options(synchronize_session=False))
    session.commit()


def add_artifact(session: Session, run_id: str, kind: str, name: str, path: str, size_bytes: int, *,
                 worker: str | None = None) -> Artifact:
    """Record a file (path relative to the artifacts folder); a second call with the same name replaces it.

    Fenced by `worker`'s lease when given."""
    if worker is not None:
        fence(session, run_id, worker)
    values = {"kind": kind, "path": path, "size_bytes": int(size_bytes), "created_at": utcnow()}
    upsert(session, Artifact, {"run_id": run_id, "name": name, **values}, ["run_id", "name"], list(values))
    session.commit()
    stmt = select(Artifact).where(Artifact.run_id == run_id, Artifact.name == name)
    return session.scalars(stmt, execution_options=FRESH).one()


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
    return session.scalar(stmt, execution_options=FRESH)


def best_run(session: Session, model: str, *, sweep_id: str | None = None) -> Run | None:
    """The run of `model` with the best validation metric (by the kind's direction).

    Without `sweep_id`: among succeeded runs only (the run that serves by default). With it: among the
    sweep's runs, succeeded ones first, so a sweep still training shows its best run so far.
    """
    metric = Run.best_val_metric.desc() if higher_is_better(model) else Run.best_val_metric.asc()
    stmt = select(Run).where(Run.model == model, Run.best_val_metric.is_not(None))
    if sweep_id is None:
        stmt = stmt.where(Run.status == "succeeded")
    else:
        stmt = stmt.where(Run.sweep_id == sweep_id)
    succeeded_first = case((Run.status == "succeeded", 0), else_=1)
    stmt = stmt.order_by(succeeded_first, metric, Run.finished_at.desc(), Run.id).limit(1)
    return session.scalar(stmt, execution_options=FRESH)


def epochs(session: Session, run_id: str) -> list[EpochMetric]:
    """The run's epoch metrics in epoch order."""
    stmt = select(EpochMetric).where(EpochMetric.run_id == run_id).order_by(EpochMetric.epoch)
    return list(session.scalars(stmt, execution_options=FRESH))


def final_metrics(session: Session, run_id: str) -> dict[str, float | None]:
    """The run's final metrics by name."""
    rows = session.execute(select(FinalMetric.name, FinalMetric.value).where(FinalMetric.run_id == run_id))
    return {name: value for name, value in rows}


def checkpoint_key_of(session: Session, store: ArtifactStore, run_id: str, which: str = "last") -> str | None:
    """The key of the run's "last" (default) or "best" checkpoint in the store; None when the store holds none
    (StoreUnavailable when it cannot be reached; ValueError for another `which`).

    "last": a registered checkpoint artifact other than best.pt, else the usual key (checkpoint.pt).
    "best": best.pt (registered or not). Runs trained before best.pt existed have none.
    """
    default = checkpoint_key_for(run_id, which)
    best_name = CHECKPOINTS["best"]
    stmt = select(Artifact.path).where(Artifact.run_id == run_id, Artifact.kind == "checkpoint")
    for key in session.scalars(stmt):
        if (key.rsplit("/", 1)[-1] == best_name) != (which == "best"):
            continue  # the other checkpoint
        try:
            if store.objects.exists(key):
                return key
        except ValueError:  # not a valid key (a row written by hand): never used
            continue
    return default if store.objects.exists(default) else None


def artifacts(session: Session, run_id: str) -> list[Artifact]:
    """The run's registered artifacts by name."""
    return list(session.scalars(select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.name)))
