"""Evaluation repository: an evaluation's life, like a run's (core/runs.py): create (or find), claim under a
lease, heartbeat, progress, finish, cancel, and what the reaper needs (expired leases, unsent messages,
evaluations of runs that will never succeed).

An evaluation scores one checkpoint ("best" or "last") of a run on one split of a dataset with fixed
parameters. Everything that decides the result is hashed into `request_key` (unique): an identical request
finds the stored row (served from SQL, never computed twice); one that failed or was cancelled is queued
again under the same row. An evaluation of a run that has not succeeded yet waits, unsent, until the run
succeeds (the worker that finished the run, or a reaper, sends it) and fails if the run fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.datasets import get_dataset
from core.db import FRESH
from core.models import FINISHED_STATUSES, Evaluation, Run, UTCDateTime, utcnow
from core.queue import enqueue_evaluation
from core.settings import Settings
from ml.data.catalog import resolve_dataset
from ml.errors import DataError
from ml.kinds import DATA_KINDS, get_kind

log = logging.getLogger("inkwell.evaluations")


class EvaluationLost(RuntimeError):
    """This worker no longer holds a live lease on the evaluation: write nothing."""


def canonical_params(model_serves: str, *, decoding: str = "greedy", beam_size: int = 5,
                     length_penalty: float = 0.0, limit: int | None = None) -> dict[str, Any]:
    """The parameters that matter for a kind: decoding ones only for text models; beam_size and the length
    penalty only for beam search (greedy ignores them, so they do not split identical requests)."""
    params: dict[str, Any] = {"limit": limit}
    if model_serves == "transliterate":
        params["decoding"] = decoding
        if decoding == "beam":
            params.update(beam_size=int(beam_size), length_penalty=float(length_penalty))
    return params


def request_key(run_id: str, checkpoint: str, dataset: str, dataset_sha256: str | None, split: str,
                params: dict[str, Any]) -> str:
    """sha256 of the canonical request: the same request always hashes the same."""
    canonical = json.dumps({"run": run_id, "checkpoint": checkpoint, "dataset": dataset, "sha256": dataset_sha256,
                            "split": split, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _reload(session: Session, evaluation_id: str) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id, populate_existing=True)


def find_by_key(session: Session, key: str) -> Evaluation | None:
    return session.scalar(select(Evaluation).where(Evaluation.request_key == key), execution_options=FRESH)


def create_or_find_evaluation(session: Session, run: Run, *, checkpoint: str, dataset: str,
                              dataset_sha256: str | None, split: str, params: dict[str, Any],
                              ) -> tuple[Evaluation, str]:
    """(evaluation, what happened): "created" (new, queued), "requeued" (an identical one had failed or was
    cancelled: queued again, same id) or "found" (an identical one is queued, running or succeeded)."""
    key = request_key(run.id, checkpoint, dataset, dataset_sha256, split, params)
    found = find_by_key(session, key)
    if found is None:
        row = Evaluation(id=uuid.uuid4().hex, run_id=run.id, request_key=key, checkpoint=checkpoint,
                         dataset=dataset, dataset_sha256=dataset_sha256, split=split, params=params,
                         status="queued", attempt=0, cancel_requested=False, created_at=utcnow())
        session.add(row)
        try:
            session.commit()
            return row, "created"
        except IntegrityError:  # a concurrent identical request inserted it first
            session.rollback()
            found = find_by_key(session, key)
            if found is None:
                raise
    if found.status in ("failed", "cancelled"):
        stmt = (update(Evaluation).where(Evaluation.id == found.id, Evaluation.status.in_(("failed", "cancelled")))
                .values(status="queued", error=None, cancel_requested=False, finished_at=None, worker=None,
                        lease_expires_at=None, sent_at=None, done=0, total=None, created_at=utcnow())
                .execution_options(synchronize_session=False))
        requeued = session.execute(stmt).rowcount == 1
        session.commit()
        return _reload(session, found.id), "requeued" if requeued else "found"
    return found, "found"


def get_evaluation(session: Session, evaluation_id: str) -> Evaluation | None:
    return _reload(session, evaluation_id)


def list_evaluations(session: Session, run_id: str | None = None, *, run_ids: list[str] | None = None,
                     status: str | None = None, limit: int = 200) -> list[Evaluation]:
    """Evaluations, newest first, of one run, of several, or of all."""
    stmt = select(Evaluation).order_by(Evaluation.created_at.desc(), Evaluation.id).limit(limit)
    if run_id is not None:
        stmt = stmt.where(Evaluation.run_id == run_id)
    if run_ids is not None:
        stmt = stmt.where(Evaluation.run_id.in_(run_ids))
    if status is not None:
        stmt = stmt.where(Evaluation.status == status)
    return list(session.scalars(stmt, execution_options=FRESH))


def set_task_id(session: Session, evaluation_id: str, task_id: str, *, now: datetime | None = None) -> None:
    """Record the message just sent for the evaluation."""
    session.execute(update(Evaluation).where(Evaluation.id == evaluation_id)
                    .values(task_id=task_id, sent_at=now or utcnow(), sends=Evaluation.sends + 1)
                    .execution_options(synchronize_session=False))
    session.commit()


def send_evaluation(session: Session, app: Celery, settings: Settings, evaluation_id: str, device_request: str,
                    *, now: datetime | None = None) -> str | None:
    """Send the evaluation's message (the queues of its run's device request) and record it; the task id, or
    None when it is no longer queued or another sender just sent it. Broker errors propagate (rolled back)."""
    now = now or utcnow()
    try:
        if not take_for_send(session, evaluation_id, now=now):
            session.rollback()
            return None
        task_id = enqueue_evaluation(app, evaluation_id, settings, device_request)
        set_task_id(session, evaluation_id, task_id, now=now)  # commits the send mark with it
        return task_id
    except BaseException:
        session.rollback()
        raise


def claim_evaluation(session: Session, evaluation_id: str, worker: str, device: str, lease_seconds: float, *,
                     host: str | None = None, now: datetime | None = None) -> Evaluation | None:
    """Atomically take an evaluation whose run succeeded: queued, or running with an expired lease (its worker
    died) → running under `worker`. None when finished, cancelled, held, or its run has not succeeded."""
    now = now or utcnow()
    run_ok = select(Run.id).where(Run.id == Evaluation.run_id, Run.status == "succeeded").exists()
    stmt = (
        update(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.cancel_requested.is_(False), run_ok,
               or_(Evaluation.status == "queued",
                   and_(Evaluation.status == "running", Evaluation.lease_expires_at < now)))
        .values(status="running", attempt=Evaluation.attempt + 1, worker=worker, device=device, host=host,
                started_at=func.coalesce(Evaluation.started_at, literal(now, UTCDateTime())),
                heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    claimed = session.execute(stmt).rowcount == 1
    session.commit()
    return _reload(session, evaluation_id) if claimed else None


def heartbeat_evaluation(session: Session, evaluation_id: str, worker: str, lease_seconds: float, *,
                         now: datetime | None = None) -> bool:
    """Extend `worker`'s lease; False if the evaluation is no longer running under this worker."""
    now = now or utcnow()
    stmt = (update(Evaluation)
            .where(Evaluation.id == evaluation_id, Evaluation.worker == worker, Evaluation.status == "running")
            .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False))
    alive = session.execute(stmt).rowcount == 1
    session.commit()
    return alive


def _held(evaluation_id: str, worker: str) -> Any:
    return and_(Evaluation.id == evaluation_id, Evaluation.worker == worker, Evaluation.status == "running",
                Evaluation.lease_expires_at >= utcnow())


def set_progress(session: Session, evaluation_id: str, worker: str, done: int, total: int) -> bool:
    """Record how many examples are scored; False (nothing written) when the worker lost the evaluation."""
    stmt = (update(Evaluation).where(_held(evaluation_id, worker)).values(done=int(done), total=int(total))
            .execution_options(synchronize_session=False))
    ok = session.execute(stmt).rowcount == 1
    session.commit()
    return ok


def is_cancel_requested(session: Session, evaluation_id: str) -> bool:
    row = session.execute(select(Evaluation.cancel_requested, Evaluation.status)
                          .where(Evaluation.id == evaluation_id)).first()
    return row is None or bool(row.cancel_requested) or row.status == "cancelled"


def finish_evaluation(session: Session, evaluation_id: str, status: str, *, worker: str | None = None,
                      error: str | None = None, result: dict[str, Any] | None = None) -> Evaluation | None:
    """Mark an unfinished evaluation succeeded (with `result`: metric, value, n, seconds, details,
    checkpoint_used, checkpoint_epoch), failed or cancelled. With `worker`: only while that worker holds it
    (EvaluationLost otherwise). A finished evaluation is left as it is."""
    if status not in FINISHED_STATUSES:
        raise ValueError(f"cannot finish an evaluation as {status!r}")
    where = _held(evaluation_id, worker) if worker is not None else and_(
        Evaluation.id == evaluation_id, Evaluation.status.in_(("queued", "running")))
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": utcnow(), "lease_expires_at": None}
    if result:
        values.update(result)
        if result.get("n") is not None:
            values["done"] = result["n"]
    changed = session.execute(update(Evaluation).where(where).values(**values)
                              .execution_options(synchronize_session=False)).rowcount
    session.commit()
    if worker is not None and changed != 1:
        raise EvaluationLost(f"evaluation {evaluation_id}: {worker} no longer holds it; nothing was written")
    return _reload(session, evaluation_id)


def request_cancel(session: Session, evaluation_id: str, *, now: datetime | None = None) -> Evaluation | None:
    """Queued (or running with a dead lease) → cancelled now; running → cancel_requested (the worker stops at
    its next batch). A finished one is returned unchanged; None when there is none."""
    now = now or utcnow()
    at_once = (update(Evaluation)
               .where(Evaluation.id == evaluation_id,
                      or_(Evaluation.status == "queued",
                          and_(Evaluation.status == "running", Evaluation.lease_expires_at < now)))
               .values(status="cancelled", cancel_requested=True, finished_at=now, lease_expires_at=None)
               .execution_options(synchronize_session=False))
    if session.execute(at_once).rowcount == 0:
        session.execute(update(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.status == "running")
                        .values(cancel_requested=True).execution_options(synchronize_session=False))
    session.commit()
    return _reload(session, evaluation_id)


def release_evaluation(session: Session, evaluation_id: str, worker: str) -> bool:
    """Hand an evaluation back to the queue (the worker is stopping): queued again, this attempt not counted."""
    stmt = (update(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.worker == worker,
                                     Evaluation.status == "running")
            .values(status="queued", worker=None, lease_expires_at=None, attempt=Evaluation.attempt - 1,
                    sent_at=None)
            .execution_options(synchronize_session=False))
    released = session.execute(stmt).rowcount == 1
    session.commit()
    return released


# -- the reaper's side ------------------------------------------------------------------------------------------
def requeue_expired(session: Session, now: datetime) -> list[str]:
    """Flip every running evaluation whose lease ended back to queued (committed); returns their ids."""
    ids = list(session.scalars(select(Evaluation.id)
                               .where(Evaluation.status == "running", Evaluation.lease_expires_at < now)))
    flipped = []
    for evaluation_id in ids:
        stmt = (update(Evaluation)
                .where(Evaluation.id == evaluation_id, Evaluation.status == "running",
                       Evaluation.lease_expires_at < now)
                .values(status="queued", worker=None, lease_expires_at=None, sent_at=None)
                .execution_options(synchronize_session=False))
        if session.execute(stmt).rowcount == 1:
            flipped.append(evaluation_id)
    session.commit()
    return flipped


def sendable(session: Session, *, now: datetime, unsent_grace: float, resend_after: float,
             limit: int = 100) -> list[tuple[str, str]]:
    """(evaluation id, its run's device request) of queued evaluations whose run succeeded and whose message
    may be missing: never sent (after `unsent_grace` s since creation, or at once when `unsent_grace` is 0),
    or last sent `resend_after` x 2^(sends-1) s ago."""
    rows = session.execute(
        select(Evaluation.id, Evaluation.created_at, Evaluation.sent_at, Evaluation.sends, Run.device_request)
        .join(Run, Run.id == Evaluation.run_id)
        .where(Evaluation.status == "queued", Evaluation.cancel_requested.is_(False), Run.status == "succeeded")
        .order_by(Evaluation.created_at).limit(limit * 10)
    )
    due = []
    for evaluation_id, created_at, sent_at, sends, device_request in rows:
        if sent_at is None:
            if (now - created_at).total_seconds() >= unsent_grace:
                due.append((evaluation_id, device_request))
        elif (now - sent_at).total_seconds() >= resend_after * 2 ** min(max(sends - 1, 0), 10):
            due.append((evaluation_id, device_request))
    session.commit()
    return due[:limit]


def take_for_send(session: Session, evaluation_id: str, *, now: datetime) -> bool:
    """Mark a queued evaluation as being sent now (not committed); False when another sender was first (it
    was sent less than a second ago) or it is no longer queued."""
    stmt = (update(Evaluation)
            .where(Evaluation.id == evaluation_id, Evaluation.status == "queued",
                   or_(Evaluation.sent_at.is_(None), Evaluation.sent_at < now - timedelta(seconds=1)))
            .values(sent_at=now).execution_options(synchronize_session=False))
    return session.execute(stmt).rowcount == 1


def waiting_for_run(session: Session, run_id: str) -> list[str]:
    """Queued, never-sent evaluations of `run_id` (waiting for it to succeed)."""
    stmt = select(Evaluation.id).where(Evaluation.run_id == run_id, Evaluation.status == "queued",
                                       Evaluation.sent_at.is_(None), Evaluation.cancel_requested.is_(False))
    ids = list(session.scalars(stmt))
    session.commit()
    return ids


def fail_orphans(session: Session) -> int:
    """Fail unfinished evaluations whose run failed or was cancelled (they can never be scored)."""
    dead_run = select(Run.id).where(Run.id == Evaluation.run_id, Run.status.in_(("failed", "cancelled"))).exists()
    stmt = (update(Evaluation).where(Evaluation.status.in_(("queued", "running")), dead_run)
            .values(status="failed", error="its run did not succeed; there is no model to evaluate",
                    finished_at=utcnow(), lease_expires_at=None)
            .execution_options(synchronize_session=False))
    count = session.execute(stmt).rowcount
    session.commit()
    return count


# -- a request ----------------------------------------------------------------------------------------------------
class EvaluationRejected(ValueError):
    """The request cannot be scored: a dataset of another kind, an unknown one, options the kind does not take."""


class RunNotEvaluable(RuntimeError):
    """The run failed or was cancelled: it has no model to evaluate."""


def submit_evaluation(session: Session, app: Celery, settings: Settings, run: Run, *, split: str,
                      checkpoint: str = "best", dataset: str | None = None, decoding: str = "greedy",
                      beam_size: int = 5, length_penalty: float = 0.0, limit: int | None = None,
                      ) -> tuple[Evaluation, str]:
    """(evaluation, "created" | "requeued" | "found") for a request on `run`.

    The dataset defaults to the run's own (the exact uploaded bytes it trained on, by hash). A new or requeued
    evaluation of a succeeded run is sent at once; one of a run still training waits for it. If the broker
    refuses, it stays queued and a reaper sends it."""
    if run.status in ("failed", "cancelled"):
        raise RunNotEvaluable(f"run {run.id} {run.status}; it has no model to evaluate")
    kind = get_kind(run.model)
    if kind.serves != "transliterate" and (decoding != "greedy" or beam_size != 5 or length_penalty != 0.0):
        raise EvaluationRejected(f"decoding, beam_size and length_penalty apply to text models; run {run.id} is a "
                                 f"{run.model} run")
    if dataset is None or dataset == run.dataset:
        name, sha256 = run.dataset, run.dataset_sha256
    else:
        name, upload = dataset, get_dataset(session, dataset)
        if upload is not None:
            if upload.kind != kind.data_kind:
                raise EvaluationRejected(f"dataset {name!r} holds {DATA_KINDS[upload.kind]}; a {run.model} run "
                                         f"is evaluated on {kind.data_words}")
            sha256 = upload.sha256
        else:
            try:
                resolve_dataset(name, kind.data_kind, settings.data_dir, download=False)
            except DataError as exc:
                raise EvaluationRejected(f"{exc}; a {run.model} run is evaluated on {kind.data_words}") from None
            sha256 = None
    params = canonical_params(kind.serves, decoding=decoding, beam_size=beam_size, length_penalty=length_penalty,
                              limit=limit)
    evaluation, what = create_or_find_evaluation(session, run, checkpoint=checkpoint, dataset=name,
                                                 dataset_sha256=sha256, split=split, params=params)
    if what != "found" and run.status == "succeeded":
        try:
            send_evaluation(session, app, settings, evaluation.id, run.device_request)
        except Exception as exc:  # the reaper sends queued evaluations whose message is missing
            log.warning(
                "evaluation %s: could not send it now (%s); a reaper will", evaluation.id, exc)
        evaluation = _reload(session, evaluation.id) or evaluation
    return evaluation, what
