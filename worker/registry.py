"""This worker's row in the worker registry (core/workers.py), kept fresh by a background thread.

The thread writes the row at once, then every `heartbeat_seconds` and whenever `nudge()` is called (the task
started or ended, so `current_run` shows at once); on `stop()` it deletes the row. Database errors are logged
and retried at the next beat: the registry is for people and dashboards, training never waits on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core.errors import one_line
from core.workers import WorkerInfo, forget_stale_workers, record_worker, remove_worker

log = logging.getLogger("inkwell.worker.registry")

FORGET_AFTER_SECONDS = 3600.0  # rows of workers that died without stopping are deleted after an hour


class WorkerHeartbeat:
    """A daemon thread keeping `info`'s row fresh with `current_run()`; `stop()` deletes the row."""

    def __init__(self, factory: sessionmaker[Session], info: WorkerInfo, interval: float,
                 current_run: Callable[[], str | None]) -> None:
        self.factory, self.info, self.interval, self.current_run = factory, info, float(interval), current_run
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="inkwell-registry", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> WorkerHeartbeat:
        self._thread.start()
        return self

    def nudge(self) -> None:
        """Write the row now (the current run changed) instead of at the next beat."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and delete this worker's row (a clean stop: it is no longer listed)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        try:
            with self.factory() as session:
                remove_worker(session, self.info.name)
        except Exception as exc:  # the row then ages out of GET /workers
            log.warning("registry: could not remove worker %s (%s)", self.info.name, one_line(exc, with_type=True))

    def _loop(self) -> None:
        with self.factory() as session:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    record_worker(session, self.info, self.current_run())
                    forget_stale_workers(session, FORGET_AFTER_SECONDS)
                except Exception as exc:  # e.g. the database is down: try again next beat
                    session.rollback()
                    log.warning("registry: heartbeat failed (%s)", one_line(exc, with_type=True))
                self._wake.wait(self.interval)
