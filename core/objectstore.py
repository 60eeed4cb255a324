"""One artifact-store interface, two backends (a local folder, S3-compatible object storage), chosen by a URL.

Keys are relative POSIX paths such as `runs/<run_id>/checkpoint.pt`; every key is validated before it
touches a backend. An object is visible only once complete (see each backend's docstring). Every failure
is an `ObjectStoreError` with a one-line message: `ObjectMissing` for a key that is not there (a 404 for
the API), `StoreUnavailable` for a store that cannot be reached (a 503).

Torch-free and web-free: core/ code, usable by the API, the worker and the CLI alike.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_CHUNK = 1024 * 1024  # bytes per piece of open_stream()
MAX_KEY_LENGTH = 1024  # S3's limit on a key, in bytes
TEMP_PREFIX = ".objectstore-tmp-"  # the local backend's partial files; no key segment may start with it


class ObjectStoreError(Exception):
    """Any failure of the artifact store; the message is one readable line."""


class ObjectMissing(ObjectStoreError):
    """The key names no object (the API answers 404)."""


class StoreUnavailable(ObjectStoreError):
    """The store cannot be reached or answered with a server error (the API answers 503)."""


def validate_key(key: str) -> str:
    """`key` if it is a relative POSIX path of plain segments; ValueError otherwise.

    Refused: empty keys, a leading `/`, backslashes, NUL and other control characters, empty, `.` and
    `..` segments, segments starting with the local backend's temp-file prefix, keys over 1024 bytes.
    """
    shown = repr(str(key)[:80])
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {shown}: empty")
    if key.startswith("/"):
        raise ValueError(f"invalid object key {shown}: must be relative (no leading '/')")
    if "\\" in key or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise ValueError(f"invalid object key {shown}: backslashes and control characters are refused")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_LENGTH:
        raise ValueError(f"invalid object key {shown}: longer than {MAX_KEY_LENGTH} bytes")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"invalid object key {shown}: empty, '.' and '..' segments are refused")
        if part.startswith(TEMP_PREFIX):
            raise ValueError(f"invalid object key {shown}: {TEMP_PREFIX!r} is reserved")
    return key


def validate_prefix(prefix: str) -> str:
    """`prefix` for list(): "" (everything) or the start of a valid key, optionally ending in `/`."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or prefix.startswith("/"):
        raise ValueError(f"invalid object prefix {str(prefix)[:80]!r}: must be relative (no leading '/')")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class ObjectStore(abc.ABC):
    """Objects under string keys. Writes replace whole objects; readers never see a partial one."""

    url: str  # where the store is, for messages and logs (never holds credentials)

    @abc.abstractmethod
    def put_file(self, key: str, path: str | Path) -> None:
        """Store the file at `path` as `key` (replacing any object there)."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` as `key` (replacing any object there)."""

    @abc.abstractmethod
    def get_file(self, key: str, dest_path: str | Path) -> None:
        """Copy `key` to `dest_path` atomically (a temp file beside it, then a rename); ObjectMissing if absent."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The content of `key`; ObjectMissing if absent."""

    @abc.abstractmethod
    def version(self, key: str) -> str | None:
        """A token that changes whenever `key` is replaced (S3: the ETag), or None when there is no object."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error (as in S3)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """The keys that start with `prefix` (a plain string prefix, as in S3), sorted."""

    @abc.abstractmethod
    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """The content of `key` in pieces of at most `chunk` bytes, for streaming a download.

        The object is opened before this returns, so a missing key raises ObjectMissing here, before any
        response has started; a failure while reading raises from the iterator.
        """


def open_object_store(url: str, endpoint_url: str | None = None) -> ObjectStore:
    """The store a URL names: a local folder (a path or `file:///path`) or S3 (`s3://bucket/prefix`).

    For S3, `endpoint_url` is a non-AWS endpoint (INKWELL_S3_ENDPOINT_URL); credentials and region come
    from the standard AWS_* variables, which boto3 reads itself. The bucket is created if missing, so
    an unreachable endpoint raises StoreUnavailable here.
    """
    if not isinstance(url, str) or not url.strip():
        raise ObjectStoreError("empty artifact store URL: use a folder, file:///path or s3://bucket/prefix")
    url = url.strip()
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        from core.objectstore_s3 import S3ObjectStore

        if not parsed.netloc:
            raise ObjectStoreError(f"no bucket in {url!r}: use s3://bucket/prefix")
        return S3ObjectStore(parsed.netloc, parsed.path.strip("/"), endpoint_url=endpoint_url)

    from core.objectstore_local import LocalObjectStore

    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ObjectStoreError(f"file URL {url!r} names a host: use file:///absolute/path")
        return LocalObjectStore(unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, i.e. a plain path
        raise ObjectStoreError(f"unsupported artifact store URL {url!r}: use a folder, file:///path or s3://…")
    return LocalObjectStore(url)
