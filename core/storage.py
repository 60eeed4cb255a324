"""Run artifacts and datasets in the object store, and this process's local cache of them.

Every key is built here from a validated run id or sha256, never from a client's string:

    runs/<run_id>/checkpoint.pt      the run's checkpoint (replaced after every epoch): the last weights
    runs/<run_id>/best.pt            the weights of its best validation epoch (replaced on each new best)
    runs/<run_id>/<plot>.png         its curves
    datasets/<sha256>.tar            an uploaded dataset (core/dataset_files.py makes the canonical tar)

The store is opened on first use (an S3 store that cannot be reached at startup is tried again on the next
call, so the API starts and answers 503 instead of refusing to start). Objects are fetched into
`cache_dir` under names that hold their version, so a replaced checkpoint is a new file and a reader never
sees a half-written one.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from core.objectstore import ObjectMissing, ObjectStore, open_object_store
from core.objectstore_local import LocalObjectStore
from core.settings import Settings, artifacts_location
from ml.config import CHECKPOINT_NAME, CHECKPOINTS

RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex
SHA256 = re.compile(r"^[0-9a-f]{64}$")
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_run_id(run_id: str) -> str:
    """`run_id` if it is a 32-character lowercase hex uuid; ValueError otherwise."""
    if not isinstance(run_id, str) or RUN_ID.fullmatch(run_id) is None:
        raise ValueError(f"invalid run id {str(run_id)[:40]!r}: expected 32 lowercase hex characters")
    return run_id


def validate_sha256(digest: str) -> str:
    """`digest` if it is 64 lowercase hex characters; ValueError otherwise."""
    if not isinstance(digest, str) or SHA256.fullmatch(digest) is None:
        raise ValueError(f"invalid sha256 {str(digest)[:70]!r}: expected 64 lowercase hex characters")
    return digest


def validate_file_name(name: str) -> str:
    """`name` if it is one plain file name (letters, digits, `_ . -`, no `..`); ValueError otherwise."""
    if not isinstance(name, str) or FILE_NAME.fullmatch(name) is None or ".." in name:
        raise ValueError(f"invalid file name {str(name)[:40]!r}: use letters, digits, '_', '.', '-'")
    return name


def run_key(run_id: str, name: str) -> str:
    """The key of the run's file `name`."""
    return f"runs/{validate_run_id(run_id)}/{validate_file_name(name)}"


def checkpoint_key(run_id: str) -> str:
    """The key of the run's checkpoint."""
    return run_key(run_id, CHECKPOINT_NAME)


def checkpoint_key_for(run_id: str, which: str = "last") -> str:
    """The key of the run's "best" (best.pt) or "last" (checkpoint.pt) checkpoint."""
    if which not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {str(which)[:20]!r}; choose one of {', '.join(CHECKPOINTS)}")
    return run_key(run_id, CHECKPOINTS[which])


def plot_key(run_id: str, name: str) -> str:
    """The key of the run's plot `name` (`.png` added unless `name` has it)."""
    return run_key(run_id, name if name.endswith(".png") else f"{name}.png")


def dataset_key(sha256: str) -> str:
    """The key of an uploaded dataset's canonical archive."""
    return f"datasets/{validate_sha256(sha256)}.tar"


def run_of_key(key: str) -> str | None:
    """The run id a `runs/<id>/...` key belongs to, else None."""
    parts = key.split("/")
    return parts[1] if len(parts) == 3 and parts[0] == "runs" and RUN_ID.fullmatch(parts[1]) else None


def _version_tag(version: str) -> str:
    """A file-name-safe tag of an object version (an ETag has quotes, a local version dashes)."""
    return hashlib.sha1(version.encode()).hexdigest()[:16]


class ArtifactStore:
    """The object store named by a URL (opened on first use) plus a local cache folder."""

    def __init__(self, url: str | Path, cache_dir: str | Path, endpoint_url: str | None = None) -> None:
        self.url = str(url)
        self.endpoint_url = endpoint_url
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self._objects: ObjectStore | None = None
        self._lock = threading.Lock()

    @property
    def objects(self) -> ObjectStore:
        """The backend (opened now if it was not yet: StoreUnavailable when it cannot be reached)."""
        found = self._objects
        if found is not None:
            return found
        with self._lock:
            if self._objects is None:
                self._objects = open_object_store(self.url, self.endpoint_url)
            return self._objects

    @property
    def is_local(self) -> bool:
        """Whether the store is a local folder (no copy into the cache is needed to read an object)."""
        return isinstance(self.objects, LocalObjectStore)

    def local_path(self, key: str) -> Path | None:
        """The file an object is stored in when the store is a local folder, else None."""
        objects = self.objects
        return objects.root / key if isinstance(objects, LocalObjectStore) else None

    # -- the worker's side -------------------------------------------------------------------------------------
    def work_dir(self, run_id: str) -> Path:
        """This process's private folder for a run it trains (created)."""
        path = self.cache_dir / "work" / validate_run_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def fetch_checkpoint(self, run_id: str, dest: Path) -> bool:
        """Copy the run's stored checkpoint to `dest` (True), or remove `dest` when the store has none (False):
        the store is the truth, so a stale local copy from an earlier attempt on this machine is dropped."""
        try:
            self.objects.get_file(checkpoint_key(run_id), dest)
        except ObjectMissing:
            dest.unlink(missing_ok=True)
            return False
        return True

    def fetch_dataset(self, sha256: str) -> Path:
        """The stored archive of a dataset, downloaded into the cache once (by hash); returns the tar file."""
        folder = self.cache_dir / "datasets"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{validate_sha256(sha256)}.tar"
        if not path.is_file():
            self.objects.get_file(dataset_key(sha256), path)
        return path

    # -- the API's side ----------------------------------------------------------------------------------------
    def cached_object(self, key: str) -> tuple[Path, str] | None:
        """(a local file holding the current version of `key`, that version), or None when there is no object.

        A local store's file is used in place; an S3 object is downloaded once per version into the cache
        (older versions of the same key are removed), so a replaced object is noticed by its new ETag.
        """
        version = self.objects.version(key)
        if version is None:
            return None
        local = self.local_path(key)
        if local is not None:
            return local, version
        folder = self.cache_dir / "objects" / Path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(key).name
        path = folder / f"{_version_tag(version)}-{name}"
        if not path.is_file():
            try:
                self.objects.get_file(key, path)
            except ObjectMissing:
                return None  # deleted between the check and the read
            for old in folder.glob(f"*-{name}"):
                if old != path:
                    old.unlink(missing_ok=True)
        return path, version

    def cached_checkpoint(self, run_id: str, which: str = "last") -> Path | None:
        """The run's current "last" (checkpoint.pt) or "best" (best.pt) checkpoint as a local file (see
        cached_object), or None when the store has no such file."""
        found = self.cached_object(checkpoint_key_for(run_id, which))
        return found[0] if found is not None else None

    def open_stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes in pieces (ObjectMissing before any piece when it is not there)."""
        return self.objects.open_stream(key)

    def forget_run(self, run_id: str) -> None:
        """Remove this process's cached and working files of a run."""
        for folder in (self.cache_dir / "work" / validate_run_id(run_id), self.cache_dir / "objects" / "runs" / run_id):
            shutil.rmtree(folder, ignore_errors=True)


def open_artifacts(settings: Settings) -> ArtifactStore:
    """The artifact store and cache the settings name (INKWELL_ARTIFACTS_URL / _DIR, _S3_ENDPOINT_URL, _CACHE_DIR)."""
    return ArtifactStore(artifacts_location(settings), settings.cache_dir, settings.s3_endpoint_url)
