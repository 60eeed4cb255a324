"""The local-folder backend of the artifact store (the embedded default)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from core.objectstore import (
    DEFAULT_CHUNK,
    TEMP_PREFIX,
    ObjectMissing,
    ObjectStore,
    StoreUnavailable,
    validate_key,
    validate_prefix,
)


class LocalObjectStore(ObjectStore):
    """Objects as files under `root`, at the key's path.

    A write goes to a temp file in the object's own folder (same file system), is flushed to disk and then
    renamed over the object with `os.replace`, so readers see the old object or the new one, never a part.
    The version is `mtime_ns-size-inode`: a replace makes a new inode, so it changes even within one tick.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the artifact folder {self.root}: {exc.strerror or exc}") from exc

    def _path(self, key: str) -> Path:
        path = self.root / validate_key(key)
        # A symlink inside the store must not lead out of it.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"invalid object key {key[:80]!r}: leads outside the store")
        return path

    def _write(self, key: str, fill: Callable[[BinaryIO], None]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    fill(out)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {key!r} in {self.root}: {exc.strerror or exc}") from exc

    def put_file(self, key: str, path: str | Path) -> None:
        with open(path, "rb") as src:  # a missing source is the caller's error: FileNotFoundError as usual
            self._write(key, lambda out: shutil.copyfileobj(src, out, DEFAULT_CHUNK))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, lambda out: out.write(data))

    def _open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            return open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectMissing(f"no object {key!r} in {self.url}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {key!r} in {self.root}: {exc.strerror or exc}") from exc

    def get_file(self, key: str, dest_path: str | Path) -> None:
        dest = Path(dest_path)
        with self._open(key) as src:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, DEFAULT_CHUNK)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as src:
            return src.read()

    def version(self, key: str) -> str | None:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot stat {key!r} in {self.root}: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a folder is no object: nothing to delete
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete {key!r} in {self.root}: {exc.strerror or exc}") from exc
        for parent in path.parents:  # drop folders the delete left empty, as S3 has no folders
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        start = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        keys: list[str] = []
        for folder, dirs, files in os.walk(start):
            dirs[:] = [d for d in dirs if not d.startswith(TEMP_PREFIX)]
            base = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    continue
                key = name if base == "." else f"{base}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        src = self._open(key)

        def pieces() -> Iterator[bytes]:
            with src:
                while piece := src.read(chunk):
                    yield piece

        return pieces()
