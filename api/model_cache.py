"""A small thread-safe LRU of loaded predictors, reloading a checkpoint whose file has changed."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ml.errors import CheckpointError
from ml.inference import Predictor, load_predictor

# What identifies one version of a checkpoint file: modification time (ns), size and inode.
Signature = tuple[int, int, int]


def file_signature(path: Path) -> Signature:
    """(mtime_ns, size, inode) of `path`; CheckpointError when the file is gone."""
    try:
        st = os.stat(path)
    except OSError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


class ModelCache:
    """LRU of at most `size` predictors keyed by (run_id, checkpoint path, file version).

    `get` loads a checkpoint once even when many threads ask for it at the same time (one lock per
    key), and loads it again when the file was replaced (a new signature drops the old entry).
    """

    def __init__(self, size: int, loader: Callable[[Path], Predictor] = load_predictor) -> None:
        if size < 1:
            raise ValueError("the model cache needs room for at least one model")
        self.size = size
        self._loader = loader
        self._entries: OrderedDict[tuple[str, str], tuple[Signature, Predictor]] = OrderedDict()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()  # guards _entries and _key_locks
        self.loads = 0  # how many times a checkpoint was read (for tests and metrics)

    def _cached(self, key: tuple[str, str], signature: Signature) -> Predictor | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != signature:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def get(self, run_id: str, path: Path | str) -> Predictor:
        """The predictor of `run_id` loaded from `path` (from the cache while the file is unchanged)."""
        path = Path(path)
        key = (run_id, str(path))
        signature = file_signature(path)
        found = self._cached(key, signature)
        if found is not None:
            return found
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            signature = file_signature(path)
            found = self._cached(key, signature)  # another thread may have loaded it meanwhile
            if found is not None:
                return found
            predictor = self._loader(path)
            with self._lock:
                self.loads += 1
                self._entries[key] = (signature, predictor)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    old, _ = self._entries.popitem(last=False)
                    if old != key:
                        self._key_locks.pop(old, None)
            return predictor

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
