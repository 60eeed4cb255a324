"""Scoring one evaluation: claim it, keep its lease, score the run's checkpoint with `ml.evaluation`, record it.

Like training (worker/training.py): plain Python called by the Celery task in worker/app.py; it never raises
for a problem of the evaluation itself (a bad dataset, a missing checkpoint): those mark it failed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.datasets import materialize
from core.db import get_sessionmaker
from core.evaluations import (
    EvaluationLost,
    claim_evaluation,
    finish_evaluation,
    heartbeat_evaluation,
    is_cancel_requested,
    release_evaluation,
    set_progress,
)
from core.models import Evaluation, Run
from core.objectstore import ObjectMissing
from core.settings import Settings, get_settings
from core.storage import ArtifactStore, checkpoint_key_for, open_artifacts
from ml.config import CHECKPOINTS
from ml.data.catalog import resolve_dataset
from ml.errors import Cancelled
from ml.evaluation import evaluate_checkpoint
from ml.kinds import get_kind
from worker.lease import LeaseKeeper
from worker.training import DEVICE_ENV, STOPPING, describe_device, error_line, store_retrying

log = logging.getLogger("inkwell.worker.evaluation")

PROGRESS_SECONDS = 1.0  # progress is written at most this often


def fetch_checkpoint(store: ArtifactStore, evaluation: Evaluation, folder: Path) -> tuple[Path, str]:
    """(local file, which answered) of the checkpoint the evaluation asks for: best.pt, or checkpoint.pt for a
    run that has no best.pt (trained before best checkpoints were kept) or when "last" is asked for."""
    order = ["best", "last"] if evaluation.checkpoint == "best" else ["last"]
    for which in order:
        dest = folder / f"{evaluation.id}-{CHECKPOINTS[which]}"
        try:
            store.objects.get_file(checkpoint_key_for(evaluation.run_id, which), dest)
            return dest, which
        except ObjectMissing:
            continue
    raise FileNotFoundError(f"run {evaluation.run_id} has no checkpoint in the artifact store")


def dataset_spec(evaluation: Evaluation, run: Run, store: ArtifactStore, data_dir: Path) -> str:
    """The evaluation's dataset as a spec on this machine (an upload is fetched by its hash)."""
    data_kind = get_kind(run.model).data_kind
    if evaluation.dataset_sha256:
        return materialize(store, evaluation.dataset_sha256, data_kind)
    return resolve_dataset(evaluation.dataset, data_kind, Path(data_dir), model=run.model)


class _Checks:
    """should_cancel and on_progress for evaluate_checkpoint: the lease, SIGTERM and cancel requests, and
    progress written at most once per PROGRESS_SECONDS."""

    def __init__(self, session: Session, evaluation_id: str, worker: str, lease: LeaseKeeper) -> None:
        self.session, self.id, self.worker, self.lease = session, evaluation_id, worker, lease
        self._last = float("-inf")

    def should_cancel(self) -> bool:
        return self.lease.lost or STOPPING.is_set()

    def on_progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_SECONDS and done < total:
            return
        self._last = now
        try:
            if not set_progress(self.session, self.id, self.worker, done, total):
                self.lease.mark_lost()
            elif is_cancel_requested(self.session, self.id):
                self.lease.mark_lost()  # stops at the next batch; the cancel is recorded below
                self.cancelled = True
            self.session.commit()
        except Exception as exc:  # progress is best effort; the lease decides ownership
            self.session.rollback()
            log.warning("evaluation %s: progress not recorded (%s)", self.id, error_line(exc))

    cancelled = False


def evaluate_one(evaluation_id: str, worker: str, *, settings: Settings | None = None,
                 factory: sessionmaker[Session] | None = None) -> str:
    """Score one evaluation if this worker can claim it; returns "skipped", "succeeded", "failed",
    "cancelled", "lease-lost" or "interrupted" (the worker is stopping: handed back to the queue)."""
    s = settings or get_settings()
    factory = factory or get_sessionmaker()
    requested = os.environ.get(DEVICE_ENV) or None
    with factory() as session:
        evaluation = claim_evaluation(session, evaluation_id, worker, describe_device(requested), s.lease_seconds,
                                      host=socket.gethostname())
        if evaluation is None:
            log.info("evaluation %s not claimed (finished, cancelled, held, or its run has not succeeded)",
                     evaluation_id)
            return "skipped"
        lease = LeaseKeeper(factory, evaluation_id, worker, s.lease_seconds, s.heartbeat_seconds,
                            beat=heartbeat_evaluation).start()
        try:
            return _score(session, evaluation, worker, s, lease, requested)
        finally:
            lease.stop()


def _score(session: Session, evaluation: Evaluation, worker: str, s: Settings, lease: LeaseKeeper,
           requested: str | None) -> str:
    evaluation_id = evaluation.id
    started = time.monotonic()
    checks = _Checks(session, evaluation_id, worker, lease)
    store = open_artifacts(s)
    folder = store.cache_dir / "evaluations"
    folder.mkdir(parents=True, exist_ok=True)
    local: Path | None = None
    try:
        run = session.get(Run, evaluation.run_id)
        spec = store_retrying(lambda: dataset_spec(evaluation, run, store, s.data_dir), s.store_retry_seconds,
                              f"evaluation {evaluation_id}: fetch the dataset", stopping=lambda: lease.lost)
        local, used = store_retrying(lambda: fetch_checkpoint(store, evaluation, folder), s.store_retry_seconds,
                                     f"evaluation {evaluation_id}: read the checkpoint", stopping=lambda: lease.lost)
        params = evaluation.params or {}
        result = evaluate_checkpoint(
            local, spec, s.data_dir, split=evaluation.split, decoding=params.get("decoding", "greedy"),
            beam_size=int(params.get("beam_size", 5)), length_penalty=float(params.get("length_penalty", 0.0)),
            limit=params.get("limit"), details=True, device=requested, should_cancel=checks.should_cancel,
            on_progress=checks.on_progress)
        finish_evaluation(session, evaluation_id, "succeeded", worker=worker, result={
            "metric": result.metric, "value": result.value, "n": result.n, "seconds": result.seconds,
            "details": result.details, "checkpoint_used": used, "checkpoint_epoch": result.epoch})
        log.info("evaluation %s of run %s: %s %.4f on %d %s examples (%s checkpoint, epoch %s) in %.1f s",
                 evaluation_id, evaluation.run_id, result.metric, result.value, result.n, evaluation.split, used,
                 result.epoch, time.monotonic() - started)
        return "succeeded"
    except Cancelled:
        if checks.cancelled:
            _finish_quietly(session, evaluation_id, "cancelled", None)
            return "cancelled"
        if lease.lost:
            return "lease-lost"
        released = release_evaluation(session, evaluation_id, worker)  # the worker is stopping
        return "interrupted" if released else "lease-lost"
    except EvaluationLost:
        return "lease-lost"
    except Exception as exc:
        if lease.lost:
            return "lease-lost"
        message = error_line(exc)
        log.exception("evaluation %s failed: %s", evaluation_id, message)
        session.rollback()
        try:
            finish_evaluation(session, evaluation_id, "failed", worker=worker, error=message)
        except Exception as again:  # the lease runs out and a reaper queues it again
            session.rollback()
            log.error("evaluation %s: could not mark it failed (%s)", evaluation_id, error_line(again))
        return "failed"
    finally:
        if local is not None:
            local.unlink(missing_ok=True)


def _finish_quietly(session: Session, evaluation_id: str, status: str, error: str | None) -> None:
    try:
        finish_evaluation(session, evaluation_id, status, error=error)
    except Exception as exc:
        session.rollback()
        log.error("evaluation %s: could not mark it %s (%s)", evaluation_id, status, error_line(exc))
