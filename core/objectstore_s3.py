"""The S3 backend of the artifact store (AWS S3 or any S3-compatible server: SeaweedFS, MinIO, Ceph…).

boto3, the AWS SDK, is the client: maintained by AWS, it reads the standard AWS_* variables and config
files itself, and botocore's timeouts and retries bound how long an unreachable store can hold a caller.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from core.objectstore import (
    DEFAULT_CHUNK,
    ObjectMissing,
    ObjectStore,
    ObjectStoreError,
    StoreUnavailable,
    validate_key,
    validate_prefix,
)

# Small bounds: a store that does not answer costs a caller a few seconds, not minutes.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


class S3ObjectStore(ObjectStore):
    """Objects in `bucket` under `prefix/`.

    A PUT is atomic in S3: an object becomes visible only once its whole body has been received, and a
    replaced object is swapped at once, so readers never see a partial checkpoint. Writes use single PUTs
    (objects up to 5 GB). The version is the object's ETag.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 ensure_bucket: bool = True) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/") + (f" at {endpoint_url}" if endpoint_url else "")
        if self.prefix:
            validate_prefix(self.prefix)
        config = CLIENT_CONFIG
        if endpoint_url:  # S3-compatible servers on a plain host name or IP address want path-style URLs
            config = config.merge(Config(s3={"addressing_style": "path"}))
        self.client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
        if ensure_bucket:
            self.ensure_bucket()

    def _key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """botocore's exceptions as ObjectStoreError subclasses with one-line messages."""
        what = f"{action} {key!r} in {self.url}" if key is not None else f"{action} {self.url}"
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if key is not None and code in MISSING_CODES:
                raise ObjectMissing(f"no object {key!r} in {self.url}") from exc
            message = f"cannot {what}: {code or status} {error.get('Message', '')}".strip()
            if code in UNAVAILABLE_CODES or status >= 500:
                raise StoreUnavailable(message) from exc
            raise ObjectStoreError(message) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ObjectStoreError(f"cannot {what}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                                   f"AWS_SECRET_ACCESS_KEY)") from exc
        except BotoCoreError as exc:  # connection refused, timeouts, broken streams
            raise StoreUnavailable(f"cannot {what}: {' '.join(str(exc).split())}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists (racing creators are fine)."""
        with self._errors("reach bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            region = self.client.meta.region_name
            extra = {}
            if region and region != "us-east-1":
                extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.client.create_bucket(Bucket=self.bucket, **extra)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    def put_file(self, key: str, path: str | Path) -> None:
        name = self._key(key)
        with open(path, "rb") as body, self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=body)

    def put_bytes(self, key: str, data: bytes) -> None:
        name = self._key(key)
        with self._errors("write", key):
            self.client.put_object(Bucket=self.bucket, Key=name, Body=data)

    def get_file(self, key: str, dest_path: str | Path) -> None:
        dest = Path(dest_path)
        pieces = self.open_stream(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                for piece in pieces:
                    out.write(piece)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self.open_stream(key))

    def version(self, key: str) -> str | None:
        name = self._key(key)
        try:
            with self._errors("check", key):
                head = self.client.head_object(Bucket=self.bucket, Key=name)
        except ObjectMissing:
            return None
        return str(head["ETag"]).strip('"')

    def exists(self, key: str) -> bool:
        return self.version(key) is not None

    def delete(self, key: str) -> None:
        name = self._key(key)
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        with self._errors(f"list {prefix!r} in"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                              Prefix=base + prefix):
                keys.extend(item["Key"][len(base):] for item in page.get("Contents", []))
        return sorted(keys)

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        name = self._key(key)
        with self._errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=name)["Body"]

        def pieces() -> Iterator[bytes]:
            try:
                with self._errors("read", key):
                    yield from body.iter_chunks(chunk)
            finally:
                body.close()

        return pieces()
