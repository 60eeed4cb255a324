"""Training one run: claim it, keep its lease, train it with `ml.training.fit`, record everything.

`train_run` is plain Python; worker/app.py holds the Celery task that calls it. It never raises for a problem
of the run itself: a deterministic failure marks the run failed instead of being retried forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.datasets import materialize
from core.db import get_sessionmaker
from core.errors import one_line
from core.models import Run
from core.objectstore import ObjectMissing, StoreUnavailable
from core.results import add_artifact, epochs, record_best_epoch, record_epoch, record_final
from core.runs import LeaseLost, claim_run, fence, finish_run, is_cancel_requested, release_run
from core.settings import Settings, get_settings
from core.storage import ArtifactStore, checkpoint_key, checkpoint_key_for, open_artifacts, plot_key, run_key
from ml.checkpoint import load_checkpoint
from ml.config import BEST_NAME, CHECKPOINT_NAME, TrainConfig
from ml.data.catalog import resolve_dataset
from ml.errors import Cancelled
from ml.kinds import get_kind
from ml.plots import loss_curve_png, validation_curve_png
from ml.training import EpochResult, pick_device
from ml.training import fit as fit_model
from worker.lease import LeaseKeeper

log = logging.getLogger("inkwell.worker")

MAX_ERROR_CHARS = 500
DB_RETRY_SECONDS = 1.0  # pause between two tries of a write while the database is unreachable
STORE_RETRY_PAUSE = 2.0  # pause between two tries of a write while the artifact store is unreachable
T = TypeVar("T")
CANCEL_POLL_SECONDS = 1.0  # is_cancel_requested is asked at most this often
DEVICE_ENV = "INKWELL_DEVICE"  # e.g. "cpu" or "cuda:1"; unset: the first GPU if there is one


def describe_device(requested: str | None = None) -> str:
    """What `fit` will train on, for runs.device: "cuda:0 (NVIDIA H100 ...)" or "cpu"."""
    dev = pick_device(requested)
    label = str(dev)
    if dev.type == "cuda":
        try:
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            label = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        except Exception:  # no usable GPU: fit reports the real problem
            pass
    return label[:64]


def error_line(exc: BaseException) -> str:
    """`ExcType: message` on one line, at most MAX_ERROR_CHARS characters (what runs.error stores)."""
    return one_line(exc, MAX_ERROR_CHARS, with_type=True)


def resolve_config(run: Run, data_dir: Path, store: ArtifactStore | None = None) -> tuple[TrainConfig, str]:
    """(the run's TrainConfig, its dataset resolved to a spec on this machine).

    An uploaded dataset (the run records its sha256) is fetched from the artifact store into this worker's
    cache by hash and checked, so the run trains on exactly the bytes it was queued with; other names
    resolve inside `data_dir`. The config keeps the dataset's *name* (what the checkpoint records), so a run
    requeued onto another machine resumes from the same checkpoint.
    """
    values = dict(run.config or {})
    name = str(values.get("data") or run.dataset)
    data_kind = get_kind(run.model).data_kind
    if run.dataset_sha256:
        if store is None:
            raise ValueError(f"run {run.id} trains on an uploaded dataset but no artifact store was given")
        spec = materialize(store, run.dataset_sha256, data_kind)
    else:
        spec = resolve_dataset(name, data_kind, Path(data_dir), model=run.model)
    values.update(model=run.model, data=name)
    return TrainConfig.from_dict(values), spec


def _without_epochs(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "epochs"}


def sync_epochs(session: Session, run_id: str, history: Iterable[Mapping[str, Any]], worker: str,
                ) -> list[int]:
    """Record the epochs of `history` (EpochResult dicts) that have no row yet; returns those epochs.

    Rows already there are left untouched (their created_at stays the time they were first written).
    Every write is fenced by `worker`'s lease (LeaseLost: nothing more is written).
    """
    have = {row.epoch for row in epochs(session, run_id)}
    added = []
    for item in history:
        epoch = int(item["epoch"])
        if epoch not in have:
            record_epoch(session, run_id, epoch, item["train_loss"], item["val_metric"], item["seconds"],
                         worker=worker)
            added.append(epoch)
    return added


def backfill_from_checkpoint(session: Session, run_id: str, checkpoint: Path, config: TrainConfig,
                             worker: str) -> int:
    """Before resuming: record epochs the checkpoint holds but the database lacks (a crash between the
    checkpoint write and its metrics row). Returns the checkpoint's epoch (0 without a usable one)."""
    if not checkpoint.exists():
        return 0
    saved = load_checkpoint(checkpoint, map_location="cpu")
    if _without_epochs(saved.get("config", {})) != _without_epochs(config.to_dict()):
        return 0  # fit refuses it with a clear error
    added = sync_epochs(session, run_id, saved.get("history", []), worker)
    if added:
        log.info("run %s: recorded epochs %s from the checkpoint", run_id, added)
    return int(saved.get("epoch", 0))


# Set when the worker is asked to stop (SIGTERM: docker compose stop, Kubernetes, spot reclaim): the run
# in training stops at its next batch and goes back to the queue for another worker.
STOPPING = threading.Event()


class StopCheck:
    """`should_cancel` for fit: true at once when the lease is lost or the worker is stopping, or when a
    cancel was requested (the database is asked at most once per `poll_seconds`)."""

    def __init__(
        self,
        session: Session,
        run_id: str,
        lease: LeaseKeeper,
        poll_seconds: float = CANCEL_POLL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session, self.run_id, self.lease = session, run_id, lease
        self.poll_seconds, self.clock = poll_seconds, clock
        self._last = float("-inf")
        self._cancel = False

    def __call__(self) -> bool:
        if self.lease.lost or STOPPING.is_set():
            return True
        now = self.clock()
        if now - self._last >= self.poll_seconds:
            self._last = now
            try:
                self._cancel = is_cancel_requested(self.session, self.run_id)
                self.session.commit()  # end the read so the next one sees fresh data
            except Exception as exc:
                self.session.rollback()
                log.warning("run %s: cancel check failed (%s)", self.run_id, error_line(exc))
        return self._cancel


def train_run(
    run_id: str,
    worker: str,
    *,
    settings: Settings | None = None,
    factory: sessionmaker[Session] | None = None,
) -> str:
    """Train one run if this worker can claim it; returns what happened.

    "skipped" (finished, cancelled or held by a live worker: the message is just acknowledged),
    "succeeded", "failed", "cancelled", "lease-lost" (another worker owns the run now; nothing more is
    written), or "interrupted" (the worker is stopping: the run was handed back to the queue).
    """
    s = settings or get_settings()
    factory = factory or get_sessionmaker()
    requested = os.environ.get(DEVICE_ENV) or None
    with factory() as session:
        run = claim_run(session, run_id, worker=worker, device=describe_device(requested),
                        lease_seconds=s.lease_seconds, host=socket.gethostname())
        if run is None:
            log.info("run %s not claimed (finished, cancelled or held by a live worker); message dropped",
                     run_id)
            return "skipped"
        lease = LeaseKeeper(factory, run_id, worker, s.lease_seconds, s.heartbeat_seconds).start()
        try:
            return _train_claimed(session, run, worker, s, lease, requested, factory)
        finally:
            lease.stop()


def _train_claimed(
    session: Session, run: Run, worker: str, s: Settings, lease: LeaseKeeper, requested: str | None,
    factory: sessionmaker[Session],
) -> str:
    run_id, total = run.id, run.epochs_total
    started = time.monotonic()

    @contextmanager
    def fenced() -> Iterator[None]:
        """Around a file write: hold the lease's fence (the run's row) so no other worker can take the run
        meanwhile; LeaseLost (and nothing written) when this worker no longer holds it. While the database
        is unreachable the fence is tried again, for at most a lease (after that the lease is gone)."""
        with factory() as guard:
            retrying(lambda: fence(guard, run_id, worker), s.lease_seconds, f"run {run_id}: fence", guard)
            yield
            guard.commit()

    def on_epoch(result: EpochResult) -> None:
        if lease.lost:
            return
        try:
            record_epoch(session, run_id, result.epoch, result.train_loss, result.val_metric, result.seconds,
                         worker=worker)
        except LeaseLost:
            lease.mark_lost()  # StopCheck stops the training at the next batch
            return
        except Exception as exc:  # written again from the history when the run ends
            session.rollback()
            log.warning("run %s: could not record epoch %d (%s)", run_id, result.epoch, error_line(exc))
        log.info("run %s epoch %d/%d: train_loss %.4f, val_%s %.4f (%.1f s)", run_id, result.epoch, total,
                 result.train_loss, result.metric, result.val_metric, result.seconds)

    def lease_lost() -> str:
        log.warning("run %s: lease lost; stopped without writing anything more (another worker owns it)",
                    run_id)
        return "lease-lost"

    def stored(action: Callable[[], T], what: str) -> T:
        """`action()` (an object-store call), tried again while the store is unreachable, for at most
        store_retry_seconds; then StoreUnavailable fails the run with that message."""
        return store_retrying(action, s.store_retry_seconds, f"run {run_id}: {what}", stopping=lambda: lease.lost)

    def upload(key: str, put: Callable[[], None]) -> None:
        """One object written while this worker holds the run (each try fenced, retried outside the fence)."""
        def fenced_put() -> None:
            with fenced():
                put()
        stored(fenced_put, f"write {key}")

    try:
        store = open_artifacts(s)
        config, spec = stored(lambda: resolve_config(run, s.data_dir, store), "fetch the dataset")
        out_dir = store.work_dir(run_id)
        local_checkpoint = out_dir / CHECKPOINT_NAME
        if stored(lambda: store.fetch_checkpoint(run_id, local_checkpoint), "read the checkpoint"):
            log.info("run %s: checkpoint fetched from %s", run_id, store.url)
            stored(lambda: _fetch_best(store, run_id, out_dir / BEST_NAME), "read the best checkpoint")
        else:
            (out_dir / BEST_NAME).unlink(missing_ok=True)
        done = backfill_from_checkpoint(session, run_id, local_checkpoint, config, worker)

        def saved(path: Path) -> None:
            """After fit wrote checkpoint.pt or best.pt (fenced): the complete file is put in the store."""
            key = run_key(run_id, path.name)
            upload(key, lambda: store.objects.put_file(key, path))

        log.info("run %s claimed by %s on %s: attempt %d, %s on %s, %d epochs, %s", run_id, worker,
                 run.device, run.attempt, run.model, run.dataset, config.epochs,
                 f"resuming after epoch {done}" if done else "starting at epoch 1")
        result = fit_model(config, data_dir=s.data_dir, out_dir=out_dir, resume=True, on_epoch=on_epoch,
                           should_cancel=StopCheck(session, run_id, lease), device=requested,
                           dataset_spec=spec, write_guard=fenced, on_saved=saved)
        if lease.lost:
            return lease_lost()
        history = [{"epoch": h.epoch, "train_loss": h.train_loss, "val_metric": h.val_metric,
                    "seconds": h.seconds} for h in result.history]
        final_name = f"test_{result.metric}"
        patience = s.lease_seconds  # the database may be restarting: retry the final writes this long

        def record_results() -> None:
            sync_epochs(session, run_id, history, worker)
            record_final(session, run_id, final_name, result.test_metric, worker=worker)
            if result.best_checkpoint is not None:
                record_final(session, run_id, f"best_{final_name}", result.best_test_metric, worker=worker)
                record_best_epoch(session, run_id, result.best_epoch, worker=worker)

        retrying(record_results, patience, f"run {run_id}: final metrics", session)
        plots = _plots([h.as_json() for h in result.history], result.metric)
        for name, png in plots.items():
            key = plot_key(run_id, name)
            upload(key, lambda key=key, png=png: store.objects.put_bytes(key, png))
        files = [("checkpoint", CHECKPOINT_NAME, checkpoint_key(run_id), local_checkpoint.stat().st_size),
                 *([("checkpoint", BEST_NAME, checkpoint_key_for(run_id, "best"),
                     result.best_checkpoint.stat().st_size)] if result.best_checkpoint is not None else []),
                 *(("plot", name, plot_key(run_id, name), len(png)) for name, png in plots.items())]

        def register() -> None:
            for kind, name, key, size in files:
                add_artifact(session, run_id, kind, name, key, size, worker=worker)

        retrying(register, patience, f"run {run_id}: artifacts", session)
        finished = retrying(lambda: finish_run(session, run_id, "succeeded", worker=worker), patience,
                            f"run {run_id}: finish", session)
        store.forget_run(run_id)  # the store holds everything now
        log.info("run %s finished: %s, %s %.4f, %d epochs in %.1f s", run_id,
                 finished.status if finished else "gone", final_name, result.test_metric, len(history),
                 time.monotonic() - started)
        return finished.status if finished else "succeeded"
    except LeaseLost:
        return lease_lost()
    except Cancelled:
        if lease.lost:
            return lease_lost()
        if STOPPING.is_set():
            return _hand_back(session, run_id, worker, time.monotonic() - started)
        _finish_quietly(session, run_id, "cancelled", None, worker)
        log.info("run %s finished: cancelled after %.1f s", run_id, time.monotonic() - started)
        return "cancelled"
    except Exception as exc:
        if lease.lost:
            return lease_lost()
        message = error_line(exc)
        log.exception("run %s failed: %s", run_id, message)
        session.rollback()
        _finish_quietly(session, run_id, "failed", message, worker)
        log.info("run %s finished: failed (%s)", run_id, message)
        return "failed"


def _fetch_best(store: ArtifactStore, run_id: str, dest: Path) -> None:
    """The run's stored best.pt into `dest` (removed when the store has none: fit then trusts no best file)."""
    try:
        store.objects.get_file(checkpoint_key_for(run_id, "best"), dest)
    except ObjectMissing:
        dest.unlink(missing_ok=True)


def retrying(action: Callable[[], T], seconds: float, what: str, session: Session,
             pause: float = DB_RETRY_SECONDS) -> T:
    """`action()`, tried again while the database is unreachable (OperationalError), for `seconds` at most."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except OperationalError as exc:
            session.rollback()
            if time.monotonic() + pause > deadline:
                raise
            log.warning("%s: database unreachable (%s); trying again in %.0f s", what, error_line(exc), pause)
            time.sleep(pause)


def _hand_back(session: Session, run_id: str, worker: str, seconds: float) -> str:
    """The worker is stopping: the run goes back to the queue (this attempt not counted); the finished
    epochs are in its checkpoint, the interrupted one is trained again by the next worker."""
    try:
        released = release_run(session, run_id, worker)
    except Exception as exc:  # the lease runs out and a reaper requeues it instead
        session.rollback()
        log.error("run %s: could not hand it back (%s); its lease will expire", run_id, error_line(exc))
        return "interrupted"
    log.info("run %s: worker stopping after %.1f s; run %s", run_id, seconds,
             "handed back to the queue" if released else "no longer ours")
    return "interrupted" if released else "lease-lost"


def _finish_quietly(session: Session, run_id: str, status: str, error: str | None, worker: str) -> None:
    """finish_run, logging instead of raising: if the database is down the lease runs out and the
    reaper requeues the run."""
    try:
        finish_run(session, run_id, status, error, worker=worker)
    except Exception as exc:
        session.rollback()
        log.error("run %s: could not mark it %s (%s)", run_id, status, error_line(exc))


def store_retrying(action: Callable[[], T], seconds: float, what: str, pause: float = STORE_RETRY_PAUSE,
                   stopping: Callable[[], bool] = lambda: False) -> T:
    """`action()`, tried again while the artifact store is unreachable (StoreUnavailable), for `seconds` at
    most (or until `stopping()`); then the last StoreUnavailable, with how long it was tried."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except StoreUnavailable as exc:
            if time.monotonic() + pause > deadline or stopping():
                raise StoreUnavailable(f"{exc} (gave up after {seconds:.0f} s of retries)") from exc
            log.warning("%s: artifact store unreachable (%s); trying again in %.0f s", what, error_line(exc), pause)
            time.sleep(pause)


def _plots(history: list[dict[str, Any]], metric: str) -> dict[str, bytes]:
    """The run's loss and validation curves as PNG bytes, by file name."""
    return {"loss.png": loss_curve_png(history), "validation.png": validation_curve_png(history, metric)}
