"""Keeping a claimed run's lease alive from a background thread while the main thread trains."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core.runs import heartbeat

log = logging.getLogger("inkwell.worker.lease")


class LeaseKeeper:
    """Renews `worker`'s lease on `run_id` every `interval` seconds until stopped.

    When a renewal finds the run no longer running under this worker (the lease expired and the run
    was requeued or taken by another worker, or it was finished elsewhere), `lost` becomes true and the
    thread ends: training must stop without touching the run's status. Database errors are logged and
    retried at the next beat (the lease simply runs down if they last).
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        run_id: str,
        worker: str,
        lease_seconds: float,
        interval: float,
        beat: Callable[..., bool] = heartbeat,
    ) -> None:
        """`beat(session, id, worker, lease_seconds)` renews the lease (core.runs.heartbeat for a run;
        core.evaluations.heartbeat_evaluation for an evaluation)."""
        self.factory, self.run_id, self.worker, self.beat = factory, run_id, worker, beat
        self.lease_seconds, self.interval = float(lease_seconds), float(interval)
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{run_id[:8]}", daemon=True)

    @property
    def lost(self) -> bool:
        """True once a heartbeat found that this worker no longer holds the run."""
        return self._lost.is_set()

    def mark_lost(self) -> None:
        """A fenced write found the run no longer ours: stop renewing and let training stop."""
        self._lost.set()
        self._stop.set()

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop renewing (the lease then runs out unless the run was finished) and join the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _loop(self) -> None:
        with self.factory() as session:
            while not self._stop.wait(self.interval):
                try:
                    alive = self.beat(session, self.run_id, self.worker, self.lease_seconds)
                except Exception as exc:  # the database may be briefly unreachable: try again next beat
                    session.rollback()
                    log.warning("run %s: heartbeat failed (%s: %s); retrying", self.run_id,
                                type(exc).__name__, exc)
                    continue
                if not alive:
                    self._lost.set()
                    log.warning("run %s: lease lost, %s no longer holds it; training stops", self.run_id,
                                self.worker)
                    return
