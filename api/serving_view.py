"""Which run answers a request and its loaded model, held in memory between checks.

A request shape is (endpoint, run_id asked for, model asked for, checkpoint asked for: "best" | "last"): best
and last are different files and different models, remembered apart. A "best" request of a run without
best.pt is answered by its last checkpoint, and `Served.checkpoint` says so.

Resolving the serving run costs a database query (promoted / best run) and a stat of its checkpoint file;
done per request it was most of /predict's work. `ServingView` remembers each answer for
INKWELL_SERVING_REFRESH_SECONDS: within that time a request is answered from memory on the event loop,
after it the next request checks again (database and file), so a promotion, a new best run or a replaced
checkpoint made by any process is seen within that bound. Changes made through this process (promotion)
call `invalidate()` and take effect at once. A refresh of 0 checks on every request.

Only successes are remembered: a 404 / 409 is worked out again on the next request. When an answer goes
stale under load, one request checks again while the others keep getting the answer being checked (for at
most the time that check takes), instead of every waiting request querying the database at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from api.model_cache import ModelCache
from api.selection import checkpoint_for, select_run
from core.objectstore import StoreUnavailable
from core.storage import ArtifactStore
from ml.errors import CheckpointError
from ml.inference import Predictor
from ml.kinds import ModelKind

Key = tuple[str, str | None, str | None, str]  # endpoint, run_id asked for, model asked for, checkpoint asked for
MAX_ENTRIES = 256  # distinct (endpoint, run_id, model, checkpoint) answers remembered; the oldest is dropped
CHECK_TIMEOUT = 10.0  # a check in flight longer than this is presumed lost and another request checks


@dataclass(frozen=True)
class Served:
    """The answer for one request shape: the run, its kind, its loaded model and which checkpoint that is."""

    run_id: str
    kind: ModelKind
    predictor: Predictor
    checked_at: float
    checkpoint: str = "last"  # the checkpoint that answers: "best" or "last" (a run without best.pt: last)
    epoch: int | None = None  # the epoch of its weights, as the checkpoint records it


class ServingView:
    def __init__(self, sessions: sessionmaker[Session], store: ArtifactStore, models: ModelCache,
                 refresh_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.sessions, self.store, self.models = sessions, store, models
        self.refresh_seconds, self.clock = refresh_seconds, clock
        self._entries: OrderedDict[Key, Served] = OrderedDict()
        self._checking: dict[Key, float] = {}  # keys being checked again, and since when
        self._lock = threading.Lock()
        self.checks = 0  # how many times the database and the checkpoint were consulted (tests, /metrics)

    def cached(self, endpoint: str, run_id: str | None, model: str | None, checkpoint: str = "best",
               ) -> Served | None:
        """The remembered answer while it is fresh, else None: then the caller must call `load`.

        A stale answer is still returned while another caller's `load` of it is in flight. Cheap: no I/O.
        """
        key = (endpoint, run_id, model, checkpoint)
        now = self.clock()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now - found.checked_at < self.refresh_seconds:
                return found
            since = self._checking.get(key)
            if since is not None and now - since < CHECK_TIMEOUT:
                return found  # someone is checking it right now
            self._checking[key] = now  # this caller checks
            return None

    def load(self, endpoint: str, run_id: str | None, model: str | None, checkpoint: str = "best") -> Served:
        """Work the answer out (database, checkpoint file, model cache) and remember it.

        Raises what api.selection raises (HTTPException 404 / 409 / 422) and CheckpointError for a
        checkpoint that does not hold the run's kind. Blocking: call it from a worker thread.
        """
        key = (endpoint, run_id, model, checkpoint)
        checked_at = self.clock()
        try:
            with self.sessions() as session:
                run, kind = select_run(session, endpoint, run_id, model)
            path, answered = checkpoint_for(self.store, run, checkpoint)
            loaded = self.models.get_loaded(run.id, path)
            predictor = loaded.predictor
            if predictor.kind != run.model:
                raise CheckpointError(
                    f"run {run.id} is recorded as {run.model} but its checkpoint holds a {predictor.kind}"
                )
        except StoreUnavailable:
            with self._lock:  # the artifact store is down: keep answering with the model already loaded
                self._checking.pop(key, None)
                kept = self._entries.get(key)
            if kept is None:
                raise
            return kept
        except BaseException:
            with self._lock:  # what was remembered no longer holds: the next request sees the error too
                self._entries.pop(key, None)
                self._checking.pop(key, None)
            raise
        served = Served(run.id, kind, predictor, checked_at, answered, loaded.epoch)
        with self._lock:
            self.checks += 1
            self._checking.pop(key, None)
            self._entries[key] = served
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return served

    def invalidate(self) -> None:
        """Forget every answer: the next request of each shape checks the database again."""
        with self._lock:
            self._entries.clear()
            self._checking.clear()
