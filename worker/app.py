"""The worker's Celery app: the shared configuration from core.queue, the training task, the reaper and this
worker's row in the worker registry (worker/registry.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown, worker_shutting_down
from sqlalchemy.exc import OperationalError

from core.db import get_sessionmaker
from core.errors import one_line
from core.evaluations import send_evaluation, waiting_for_run
from core.models import Evaluation, Run, utcnow
from core.queue import EVALUATE_TASK, TRAIN_TASK, enqueue_training, make_celery
from core.runs import set_task_id
from core.settings import get_settings
from core.workers import WorkerInfo
from ml.kinds import load_kind_modules
from worker.evaluation import evaluate_one
from worker.reaper import Reaper
from worker.registry import WorkerHeartbeat
from worker.training import DEVICE_ENV, STOPPING, describe_device, train_run

log = logging.getLogger("inkwell.worker")

CLAIM_RETRY_SECONDS = 10
CLAIM_RETRIES = 60

load_kind_modules(get_settings().kind_modules)  # kinds registered outside ml/kinds (INKWELL_KIND_MODULES)
celery_app = make_celery()
_reaper: Reaper | None = None
_registry: WorkerHeartbeat | None = None
current_run: str | None = None  # the run whose message this (solo-pool) worker is handling, for the registry
_busy = threading.Event()  # set while this (solo-pool) worker runs a task
_polling_broker = threading.Event()  # set when the broker is polled (the SQLAlchemy transport)


def worker_name() -> str:
    """This process's Celery node name, also written to runs.worker: inkwell-<host>-<pid>@<host>."""
    host = socket.gethostname()
    return f"inkwell-{host}-{os.getpid()}@{host}"


@celery_app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_run_task(self: Task, run_id: str) -> str:
    """Claim and train `run_id` (see worker.training.train_run); never raises for a problem of the run.

    Only an unreachable database while claiming (nothing started yet) retries the message later,
    so a queued run is not left without one.
    """
    global current_run
    _busy.set()
    current_run = run_id
    _nudge_registry()
    try:
        outcome = train_run(run_id, worker=self.request.hostname or worker_name())
    except OperationalError as exc:
        log.warning("run %s: database unreachable before the claim (%s); retrying in %d s", run_id,
                    type(exc).__name__, CLAIM_RETRY_SECONDS)
        raise self.retry(exc=exc, countdown=CLAIM_RETRY_SECONDS, max_retries=CLAIM_RETRIES) from None
    finally:
        current_run = None
        _nudge_registry()
        _busy.clear()
    if outcome == "interrupted":
        resend(run_id)
    elif outcome == "succeeded":
        send_evaluations(run_id)
    return outcome


@celery_app.task(name=EVALUATE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def evaluate_task(self: Task, evaluation_id: str) -> str:
    """Claim and score `evaluation_id` (worker.evaluation.evaluate_one); never raises for a problem of the
    evaluation itself. An unreachable database before the claim retries the message later."""
    _busy.set()
    try:
        outcome = evaluate_one(evaluation_id, worker=self.request.hostname or worker_name())
    except OperationalError as exc:
        log.warning("evaluation %s: database unreachable before the claim (%s); retrying in %d s", evaluation_id,
                    type(exc).__name__, CLAIM_RETRY_SECONDS)
        raise self.retry(exc=exc, countdown=CLAIM_RETRY_SECONDS, max_retries=CLAIM_RETRIES) from None
    finally:
        _busy.clear()
    if outcome == "interrupted":
        with get_sessionmaker()() as session:
            run_id = session.get(Evaluation, evaluation_id).run_id
        send_evaluations(run_id, [evaluation_id])
    return outcome


def send_evaluations(run_id: str, evaluation_ids: list[str] | None = None) -> None:
    """Send evaluations of `run_id` now: those given (one handed back by a stopping worker), else those that
    waited for the run to succeed. On any error a reaper sends them later."""
    try:
        with get_sessionmaker()() as session:
            device_request = session.get(Run, run_id).device_request
            for evaluation_id in evaluation_ids or waiting_for_run(session, run_id):
                send_evaluation(session, celery_app, get_settings(), evaluation_id, device_request)
                log.info("run %s: evaluation %s sent", run_id, evaluation_id)
    except Exception as exc:
        log.warning("run %s: could not send its evaluations (%s); a reaper will", run_id, one_line(exc))


def resend(run_id: str) -> None:
    """Send a handed-back run's message again at once, for another worker (else a reaper does it later)."""
    settings = get_settings()
    try:
        with get_sessionmaker()() as session:
            device_request = session.get(Run, run_id).device_request
            task_id = enqueue_training(celery_app, run_id, settings, device_request)
            set_task_id(session, run_id, task_id)
        log.info("run %s: message sent again for another worker (task %s)", run_id, task_id)
    except Exception as exc:  # the reaper re-sends queued runs whose message is old or missing
        log.warning("run %s: could not send it again (%s); a reaper will", run_id, one_line(exc))


@worker_shutting_down.connect
def stop_training(sig: str = "", how: str = "", **_: Any) -> None:
    """SIGTERM (warm shutdown): the run in training stops at its next batch and is handed back.

    Runs in the main thread's signal handler. An idle worker on a polled broker (the SQLAlchemy transport)
    exits at once: Celery's blocking loop would otherwise finish two 2-second drain cycles first. The
    SystemExit makes Celery stop the worker as for any warm shutdown (its steps stop, unacked messages
    go back to the queue).
    """
    STOPPING.set()
    log.info("worker stopping (%s %s shutdown): the run in training, if any, goes back to the queue", sig, how)
    if how == "Warm" and _polling_broker.is_set() and not _busy.is_set():
        raise SystemExit(0)



def _nudge_registry() -> None:
    if _registry is not None:
        _registry.nudge()


def _consumed_queues(sender: Any) -> tuple[str, ...]:
    """The queue names the worker consumes (sender: its consumer)."""
    queues = getattr(getattr(sender, "task_consumer", None), "queues", None) or []
    return tuple(sorted(q.name for q in queues))


@worker_ready.connect
def start_reaper(sender: Any = None, **_: Any) -> None:
    """Once the worker consumes, start this process's reaper thread and its registry heartbeat."""
    global _reaper, _registry
    settings = get_settings()
    transport = getattr(getattr(sender, "connection", None), "transport", None)  # sender: the consumer
    if transport is not None and getattr(transport, "driver_type", "") == "sql":
        _polling_broker.set()
    if _reaper is None or not _reaper.alive:
        _reaper = Reaper(celery_app, settings, get_sessionmaker()).start()
    name = getattr(sender, "hostname", None) or worker_name()
    queues = _consumed_queues(sender)
    if _registry is None or not _registry.alive:
        info = WorkerInfo(name=name, host=socket.gethostname(), pid=os.getpid(), queues=queues,
                          device=describe_device(os.environ.get(DEVICE_ENV) or None), started_at=utcnow())
        _registry = WorkerHeartbeat(get_sessionmaker(), info, settings.heartbeat_seconds,
                                    lambda: current_run).start()
    if settings.heartbeat_seconds * 2 > settings.lease_seconds:
        log.warning("INKWELL_HEARTBEAT_SECONDS (%g) should be at most half of INKWELL_LEASE_SECONDS (%g): "
                    "a slow heartbeat lets a live run's lease expire", settings.heartbeat_seconds,
                    settings.lease_seconds)
    log.info("inkwell worker %s ready: queue %s, device %s, lease %.0f s, heartbeat %.0f s, reaper every %.0f s",
             name, ",".join(queues) or "?", _registry.info.device, settings.lease_seconds,
             settings.heartbeat_seconds, _reaper.interval)


@worker_shutdown.connect
def stop_reaper(**_: Any) -> None:
    """Stop the reaper thread when the worker shuts down, and take this worker out of the registry."""
    if _reaper is not None:
        _reaper.stop()
    if _registry is not None:
        _registry.stop()
