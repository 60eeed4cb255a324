"""A small thread-safe LRU of loaded predictors (with the epoch of their weights), reloading a checkpoint whose
file has changed."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml.errors import CheckpointError
from ml.inference import Predictor, load_with_checkpoint

# What identifies one version of a checkpoint file: modification time (ns), size and inode.
Signature = tuple[int, int, int]


def file_signature(path: Path) -> Signature:
    """(mtime_ns, size, inode) of `path`; CheckpointError when the file is gone."""
    try:
        st = os.stat(path)
    except OSError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    return st.st_mtime_ns, st.st_size, st.st_ino


@dataclass(frozen=True)
class Loaded:
    """A loaded predictor and the epoch its weights are from (None only from a loader that does not say)."""

    predictor: Predictor
    epoch: int | None


def load_served(path: Path | str, device: str | None = None) -> Loaded:
    """The predictor of a checkpoint written by `fit` and the epoch the checkpoint records, from one read of
    the file (ml.inference.load_with_checkpoint); CheckpointError when it is unusable."""
    predictor, data = load_with_checkpoint(path, device)
    epoch = data.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"checkpoint {path} records no epoch")
    return Loaded(predictor, epoch)


class ModelCache:
    """LRU of at most `size` predictors keyed by (run_id, checkpoint path, file version).

    `get` loads a checkpoint once even when many threads ask for it at the same time (one lock per
    key), and loads it again when the file was replaced (a new signature drops the old entry). `loader`
    returns a `Loaded` (the default, `load_served`) or a bare predictor (its epoch is then unknown).
    """

    def __init__(self, size: int, loader: Callable[[Path], Loaded | Predictor] = load_served) -> None:
        if size < 1:
            raise ValueError("the model cache needs room for at least one model")
        self.size = size
        self._loader = loader
        self._entries: OrderedDict[tuple[str, str], tuple[Signature, Loaded]] = OrderedDict()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()  # guards _entries and _key_locks
        self.loads = 0  # how many times a checkpoint was read (for tests and metrics)

    def _cached(self, key: tuple[str, str], signature: Signature) -> Loaded | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != signature:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def get(self, run_id: str, path: Path | str) -> Predictor:
        """The predictor of `run_id` loaded from `path` (from the cache while the file is unchanged)."""
        return self.get_loaded(run_id, path).predictor

    def get_loaded(self, run_id: str, path: Path | str) -> Loaded:
        """The same, with the epoch the checkpoint records."""
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
            made = self._loader(path)
            loaded = made if isinstance(made, Loaded) else Loaded(made, None)
            with self._lock:
                self.loads += 1
                self._entries[key] = (signature, loaded)
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    old, _ = self._entries.popitem(last=False)
                    if old != key:
                        self._key_locks.pop(old, None)
            return loaded

    def clear(self) -> None:
        """Forget every loaded model."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
