"""Crash recovery that does not depend on the broker redelivering anything.

A worker killed mid-run leaves its run `running` with a lease nobody renews. Every worker runs a
reaper thread that flips such runs back to `queued` (one UPDATE guarded by the expired lease, so only
one reaper wins) and sends the training task again; the next claim resumes from the last checkpoint.
It also sends again the message of any queued run that has none (`resend_unsent`): so a run is never
left queued forever, whatever happened between the API's commit and its send. A message goes to the queues
of the device the run asks for (core.queue.queues_for), as the API's first send did.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core import evaluations
from core.errors import one_line
from core.models import Run, utcnow
from core.queue import enqueue_training
from core.runs import set_task_id, take_for_resend, unsent_runs
from core.settings import Settings

log = logging.getLogger("inkwell.worker.reaper")


def reap_interval(lease_seconds: float) -> float:
    """Seconds between two reaper passes: half a lease, at least one second."""
    return max(1.0, float(lease_seconds) / 2)


def expired_runs(session: Session, now: datetime) -> list[tuple[str, str | None, int, str]]:
    """(id, worker, attempt, device_request) of the runs still `running` whose lease ended before `now`."""
    stmt = (select(Run.id, Run.worker, Run.attempt, Run.device_request)
            .where(Run.status == "running", Run.lease_expires_at < now))
    return [(row.id, row.worker, row.attempt, row.device_request) for row in session.execute(stmt)]


def requeue_if_expired(session: Session, run_id: str, now: datetime) -> bool:
    """Flip one run from running with an expired lease back to queued (not committed); True if this
    call did it. The worker is cleared so the dead holder can no longer finish it."""
    stmt = (
        update(Run)
        .where(Run.id == run_id, Run.status == "running", Run.lease_expires_at < now)
        .values(status="queued", worker=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).rowcount == 1


def reap_once(session: Session, app: Celery, settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Requeue every run whose lease expired and send its training task again; returns their ids.

    Each run is flipped, its task sent, then committed: if sending fails the flip is rolled back and
    the next pass tries again, so a run is never left queued without a message.
    """
    now = now or utcnow()
    candidates = expired_runs(session, now)
    session.commit()
    requeued = []
    for run_id, worker, attempt, device_request in candidates:
        try:
            if not requeue_if_expired(session, run_id, now):
                session.rollback()  # another reaper (or a claim) got there first
                continue
            task_id = enqueue_training(app, run_id, settings, device_request)
            set_task_id(session, run_id, task_id, now=now)  # commits the flip with it
        except Exception:
            session.rollback()
            log.exception("reaper: could not requeue run %s", run_id)
            continue
        requeued.append(run_id)
        log.info("reaper: run %s lost its worker %s during attempt %d; requeued as task %s", run_id, worker,
                 attempt, task_id)
    return requeued


def resend_unsent(session: Session, app: Celery, settings: Settings, *, now: datetime | None = None) -> list[str]:
    """Send again the messages of queued runs nobody took: never sent (the API died between its commit and
    the send, or the broker refused) for `unsent_grace_seconds`, or last sent `resend_after_seconds` ago
    (doubling after each send). A duplicate message is harmless: the claim lets one worker train the run."""
    now = now or utcnow()
    due = unsent_runs(session, now=now, unsent_grace=settings.unsent_grace_seconds,
                      resend_after=settings.resend_after_seconds)
    sent = []
    for run_id in due:
        try:
            before, device_request = session.execute(
                select(Run.sent_at, Run.device_request).where(Run.id == run_id)).one()
            if not take_for_resend(session, run_id, now=now, sent_before=before):
                session.rollback()
                continue
            task_id = enqueue_training(app, run_id, settings, device_request)
            set_task_id(session, run_id, task_id, now=now)
        except Exception as exc:
            session.rollback()
            log.warning("reaper: could not send run %s again (%s)", run_id, one_line(exc, with_type=True))
            continue
        sent.append(run_id)
        log.info("reaper: queued run %s had no recent message (last sent %s); sent again as task %s", run_id,
                 before or "never", task_id)
    return sent


def reap_evaluations(session: Session, app: Celery, settings: Settings, *, now: datetime | None = None,
                     ) -> list[str]:
    """Evaluations get the same care as runs: those whose worker died (lease expired) are queued again, queued
    ones whose run succeeded and whose message is missing or old are sent (again), and those whose run failed
    or was cancelled are failed. Returns the ids sent."""
    now = now or utcnow()
    requeued = evaluations.requeue_expired(session, now)
    for evaluation_id in requeued:
        log.info("reaper: evaluation %s lost its worker; queued again", evaluation_id)
    failed = evaluations.fail_orphans(session)
    if failed:
        log.info("reaper: %d evaluation(s) of runs that did not succeed marked failed", failed)
    sent = []
    due = evaluations.sendable(session, now=now, unsent_grace=settings.unsent_grace_seconds,
                               resend_after=settings.resend_after_seconds)
    for evaluation_id, device_request in due:
        try:
            if evaluations.send_evaluation(session, app, settings, evaluation_id, device_request, now=now):
                sent.append(evaluation_id)
        except Exception as exc:
            log.warning("reaper: could not send evaluation %s (%s)", evaluation_id, one_line(exc, with_type=True))
    return sent


class Reaper:
    """A daemon thread calling `reap_once` every `interval` seconds (first pass at once)."""

    def __init__(self, app: Celery, settings: Settings, factory: sessionmaker[Session],
                 interval: float | None = None) -> None:
        self.app, self.settings, self.factory = app, settings, factory
        self.interval = interval if interval is not None else reap_interval(settings.lease_seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inkwell-reaper", daemon=True)

    def start(self) -> Reaper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        with self.factory() as session:
            while not self._stop.is_set():
                try:
                    reap_once(session, self.app, self.settings)
                    resend_unsent(session, self.app, self.settings)
                    reap_evaluations(session, self.app, self.settings)
                except Exception as exc:  # e.g. the database is down: try again next pass
                    session.rollback()
                    log.warning("reaper: pass failed (%s)", one_line(exc, with_type=True))
                self._stop.wait(self.interval)
