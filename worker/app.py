"""The worker's Celery app: the shared configuration from core.queue plus the training task and reaper."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import Task
from celery.signals import worker_ready, worker_shutdown

from core.db import get_sessionmaker
from core.queue import TRAIN_TASK, make_celery
from core.settings import get_settings
from worker.reaper import Reaper
from worker.tasks import train_run

log = logging.getLogger("inkwell.worker")

celery_app = make_celery()
_reaper: Reaper | None = None


def worker_name() -> str:
    """This process's Celery node name, also written to runs.worker: inkwell-<host>-<pid>@<host>."""
    host = socket.gethostname()
    return f"inkwell-{host}-{os.getpid()}@{host}"


@celery_app.task(name=TRAIN_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def train_run_task(self: Task, run_id: str) -> str:
    """Claim and train `run_id` (see worker.tasks.train_run); never raises for a problem of the run."""
    return train_run(run_id, worker=self.request.hostname or worker_name())


@worker_ready.connect
def start_reaper(sender: Any = None, **_: Any) -> None:
    """Once the worker consumes, start this process's reaper thread."""
    global _reaper
    settings = get_settings()
    if _reaper is None or not _reaper.alive:
        _reaper = Reaper(celery_app, settings, get_sessionmaker()).start()
    log.info("inkwell worker %s ready: queue %r, lease %.0f s, heartbeat %.0f s, reaper every %.0f s",
             getattr(sender, "hostname", None) or worker_name(), settings.train_queue, settings.lease_seconds,
             settings.heartbeat_seconds, _reaper.interval)


@worker_shutdown.connect
def stop_reaper(**_: Any) -> None:
    """Stop the reaper thread when the worker shuts down."""
    if _reaper is not None:
        _reaper.stop()
