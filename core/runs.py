"""Run repository, a run's life: create (idempotently), claim (lease), heartbeat, finish, cancel, list.

Results (epochs, final metrics, artifacts, best and promoted runs) are in core.results. Every function
takes a Session. Functions that write commit before returning, so a claim or a heartbeat is visible to
other processes at once; returned objects stay usable after the session closes (expire_on_commit=False).

Idempotency: runs made with an `Idempotency-Key` carry it. A sweep shares one key over several runs, so
no unique index can guard it; instead the lookup and the insert happen in one transaction that first
takes a lock: a PostgreSQL advisory transaction lock on the key, or on SQLite the database's write lock
(taken by a no-op UPDATE before anything is read). A concurrent retry waits for the first request to
commit, then finds its runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, literal, or_, select, text, true, update
from sqlalchemy.orm import Session

from core.db import FRESH
from core.models import FINISHED_STATUSES, RUN_STATUSES, Run, UTCDateTime, utcnow
from ml.kinds import get_kind


def _reload(session: Session, run_id: str) -> Run | None:
    return session.get(Run, run_id, populate_existing=True)


def create_runs(
    session: Session,
    configs: list[dict[str, Any]],
    model: str,
    dataset: str,
    sweep_id: str | None = None,
    idempotency_key: str | None = None,
    device_request: str = "any",
    dataset_sha256: str | None = None,
) -> list[Run]:
    """Queue one run per config (a sweep when several); `epochs_total` comes from config["epochs"].

    `device_request` (gpu, cpu or any) is where its messages go (core.queue.queues_for); `dataset_sha256`
    the uploaded dataset's content hash, when it trains on an upload."""
    defaults = get_kind(model).defaults  # UnknownKind (a ValueError) for a kind nobody registered
    if not configs:
        raise ValueError("at least one configuration is needed")
    now = utcnow()
    runs = []
    for i, config in enumerate(configs):
        n_epochs = int(config.get("epochs") or defaults.get("epochs", 1))
        runs.append(Run(
            id=uuid.uuid4().hex, model=model, dataset=dataset, config=dict(config), status="queued",
            sweep_id=sweep_id, idempotency_key=idempotency_key, attempt=0, epochs_total=n_epochs,
            device_request=device_request, dataset_sha256=dataset_sha256,
            cancel_requested=False, created_at=now + timedelta(microseconds=i),  # keeps sweep order
        ))
    session.add_all(runs)
    session.commit()
    return runs


def _lock_key(session: Session, key: str) -> None:
    """Serialise transactions carrying `key` until this one ends (see the module docstring)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"inkwell.idempotency:{key}"})
    elif dialect == "sqlite":
        session.execute(update(Run).where(false()).values(idempotency_key=Run.idempotency_key)
                        .execution_options(synchronize_session=False))


def create_or_find_runs(
    session: Session,
    configs: list[dict[str, Any]],
    model: str,
    dataset: str,
    sweep_id: str | None = None,
    idempotency_key: str | None = None,
    device_request: str = "any",
    dataset_sha256: str | None = None,
) -> tuple[list[Run], bool]:
    """(runs, created): runs made now, or those an earlier call with the same idempotency key made."""
    if idempotency_key is None:
        made = create_runs(session, configs, model, dataset, sweep_id=sweep_id, device_request=device_request,
                           dataset_sha256=dataset_sha256)
        return made, True
    session.rollback()  # start a fresh transaction whose first statement takes the lock
    try:
        _lock_key(session, idempotency_key)
        existing = find_by_idempotency_key(session, idempotency_key)
        if existing:
            session.rollback()
            return existing, False
        made = create_runs(session, configs, model, dataset, sweep_id=sweep_id, idempotency_key=idempotency_key,
                           device_request=device_request, dataset_sha256=dataset_sha256)
        return made, True
    except BaseException:
        session.rollback()
        raise


def same_request(runs: list[Run], model: str, dataset: str, configs: list[dict[str, Any]],
                 device_request: str = "any") -> bool:
    """Whether `runs` were made from exactly this model, dataset, configs and device (an idempotent retry)."""
    return ([(r.model, r.dataset, r.config, r.device_request) for r in runs]
            == [(model, dataset, c, device_request) for c in configs])


def set_task_id(session: Session, run_id: str, task_id: str, *, now: datetime | None = None) -> None:
    """Record the broker message just sent for the run (the reaper re-sends queued runs sent long ago)."""
    session.execute(update(Run).where(Run.id == run_id)
                    .values(task_id=task_id, sent_at=now or utcnow(), sends=Run.sends + 1)
                    .execution_options(synchronize_session=False))
    session.commit()


class LeaseLost(RuntimeError):
    """This worker no longer holds a live lease on the run: another worker may own it, write nothing."""


def fence(session: Session, run_id: str, worker: str, *, now: datetime | None = None) -> None:
    """Inside the caller's transaction: prove `worker` still holds a live lease on `run_id`, else LeaseLost.

    The guarded UPDATE locks the run's row (PostgreSQL) or the database (SQLite) until the transaction
    ends, so no other worker can claim the run between this check and the caller's commit: a worker's
    write either lands while it owns the run or not at all.
    """
    now = now or utcnow()
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running", Run.lease_expires_at >= now)
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:
        session.rollback()
        raise LeaseLost(f"run {run_id}: {worker} no longer holds its lease; nothing was written")


def release_run(session: Session, run_id: str, worker: str) -> bool:
    """Hand a run back to the queue (a worker stopping on SIGTERM): queued again, this attempt not counted.

    Only the worker holding the run can release it; True when it did. Its message is sent again by the
    caller (or, failing that, by a reaper once `sent_at` is old).
    """
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(status="queued", worker=None, lease_expires_at=None, attempt=Run.attempt - 1, sent_at=None)
        .execution_options(synchronize_session=False)
    )
    released = session.execute(stmt).rowcount == 1
    session.commit()
    return released


def unsent_runs(session: Session, *, now: datetime, unsent_grace: float, resend_after: float,
                limit: int = 100) -> list[str]:
    """Queued runs whose message may be missing: never sent and older than `unsent_grace` seconds (the
    API died between commit and send, or the broker refused), or last sent `resend_after` x 2^(sends-1)
    seconds ago (a message lost, or dropped by a worker that gave up its claim)."""
    rows = session.execute(
        select(Run.id, Run.created_at, Run.sent_at, Run.sends)
        .where(Run.status == "queued", Run.cancel_requested.is_(False))
        .order_by(Run.created_at).limit(limit * 10)
    )
    due = []
    for run_id, created_at, sent_at, sends in rows:
        if sent_at is None:
            if (now - created_at).total_seconds() >= unsent_grace:
                due.append(run_id)
        elif (now - sent_at).total_seconds() >= resend_after * 2 ** min(max(sends - 1, 0), 10):
            due.append(run_id)
    session.commit()
    return due[:limit]


def take_for_resend(session: Session, run_id: str, *, now: datetime, sent_before: datetime | None) -> bool:
    """Mark `run_id` as being re-sent now (not committed), if it is still queued with the same `sent_at`;
    False when another reaper or a claim got there first."""
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status == "queued",
               Run.sent_at.is_(None) if sent_before is None else Run.sent_at == sent_before)
        .values(sent_at=now)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def fail_unqueued(session: Session, run_ids: list[str], reason: str) -> None:
    """Runs whose message could not be sent: failed, and their idempotency key freed for a retry."""
    for run_id in run_ids:
        finish_run(session, run_id, "failed", error=f"could not queue: {reason}")
    session.execute(update(Run).where(Run.id.in_(run_ids)).values(idempotency_key=None)
                    .execution_options(synchronize_session=False))
    session.commit()


def find_by_idempotency_key(session: Session, key: str) -> list[Run]:
    """The runs created with `key`, oldest first (empty if none)."""
    stmt = select(Run).where(Run.idempotency_key == key).order_by(Run.created_at, Run.id)
    return list(session.scalars(stmt, execution_options=FRESH))


def get_run(session: Session, run_id: str) -> Run | None:
    """The run as stored now, or None."""
    return _reload(session, run_id)


def list_runs(
    session: Session,
    status: str | None = None,
    model: str | None = None,
    sweep_id: str | None = None,
    limit: int = 100,
) -> list[Run]:
    """Runs, newest first, optionally filtered."""
    stmt = select(Run).order_by(Run.created_at.desc(), Run.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(Run.status == status)
    if model is not None:
        stmt = stmt.where(Run.model == model)
    if sweep_id is not None:
        stmt = stmt.where(Run.sweep_id == sweep_id)
    return list(session.scalars(stmt, execution_options=FRESH))


def claim_run(
    session: Session,
    run_id: str,
    worker: str,
    device: str,
    lease_seconds: float,
    *,
    host: str | None = None,
    now: datetime | None = None,
) -> Run | None:
    """Atomically take a run for training; None if it is finished, cancelled or leased by a live worker.

    One UPDATE decides: a queued run, or a running one whose lease has expired (its worker died),
    becomes running under `worker` (on machine `host`) with a fresh lease and attempt + 1.
    """
    now = now or utcnow()
    stmt = (
        update(Run)
        .where(
            Run.id == run_id,
            Run.cancel_requested.is_(False),
            or_(Run.status == "queued", and_(Run.status == "running", Run.lease_expires_at < now)),
        )
        .values(
            status="running", attempt=Run.attempt + 1, worker=worker, device=device, host=host,
            started_at=func.coalesce(Run.started_at, literal(now, UTCDateTime())),
            heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    claimed = session.execute(stmt).rowcount == 1
    session.commit()
    return _reload(session, run_id) if claimed else None


def heartbeat(
    session: Session, run_id: str, worker: str, lease_seconds: float, *, now: datetime | None = None
) -> bool:
    """Extend `worker`'s lease; False if the run is no longer running under this worker."""
    now = now or utcnow()
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.worker == worker, Run.status == "running")
        .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    alive = session.execute(stmt).rowcount == 1
    session.commit()
    return alive


def finish_run(
    session: Session, run_id: str, status: str, error: str | None = None, *, worker: str | None = None
) -> Run | None:
    """Mark an unfinished run succeeded, failed or cancelled (a finished run is left as it is).

    With `worker`, only a run still held by that worker is changed (a worker that lost its lease
    cannot finish the run another worker took over). Returns the run as stored afterwards.
    """
    if status not in FINISHED_STATUSES:
        raise ValueError(f"cannot finish a run as {status!r}; choose one of {', '.join(FINISHED_STATUSES)}")
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status.in_(("queued", "running")))
        .where(and_(Run.worker == worker, Run.lease_expires_at >= utcnow()) if worker is not None else true())
        .values(status=status, error=error, finished_at=utcnow(), lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(stmt)
    session.commit()
    return _reload(session, run_id)


def request_cancel(session: Session, run_id: str, *, now: datetime | None = None) -> Run | None:
    """Cancel a run: queued (or running with a dead lease) → cancelled now; running → cancel_requested.

    A finished run is returned unchanged; None if there is no such run.
    """
    now = now or utcnow()
    at_once = (
        update(Run)
        .where(Run.id == run_id,
               or_(Run.status == "queued", and_(Run.status == "running", Run.lease_expires_at < now)))
        .values(status="cancelled", cancel_requested=True, finished_at=now, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    if session.execute(at_once).rowcount == 0:
        session.execute(
            update(Run).where(Run.id == run_id, Run.status == "running").values(cancel_requested=True)
            .execution_options(synchronize_session=False)
        )
    session.commit()
    return _reload(session, run_id)


def is_cancel_requested(session: Session, run_id: str) -> bool:
    """True if training of `run_id` should stop (cancel requested, already cancelled, or run gone)."""
    row = session.execute(select(Run.cancel_requested, Run.status).where(Run.id == run_id)).first()
    return row is None or bool(row.cancel_requested) or row.status == "cancelled"


def runs_by_status_counts(session: Session) -> dict[str, int]:
    """How many runs are in each status (every status present, zero when none)."""
    counts = dict.fromkeys(RUN_STATUSES, 0)
    for status, count in session.execute(select(Run.status, func.count()).group_by(Run.status)):
        counts[status] = count
    return counts
