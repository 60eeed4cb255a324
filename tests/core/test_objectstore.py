"""The artifact store (core/objectstore.py) on both backends: a local folder, and S3 on a real SeaweedFS
server (tests/fixtures/seaweedfs.py) with a fresh bucket per test."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from core.objectstore import ObjectMissing, ObjectStore, ObjectStoreError, StoreUnavailable, open_object_store
from core.objectstore_local import LocalObjectStore
from core.objectstore_s3 import S3ObjectStore
from tests.fixtures.seaweedfs import SeaweedFS, seaweedfs  # noqa: F401 - the fixture
from tests.support import free_port

BAD_KEYS = ["../x", "a/../../x", "/abs", "a\\b", "a\x00b", "", "a//b", "a/./b", "a/"]


def new_bucket() -> str:
    return f"inkwell-{uuid.uuid4().hex[:16]}"


def s3_client(server: SeaweedFS):
    return boto3.session.Session(aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
                                 region_name=server.region).client("s3", endpoint_url=server.endpoint_url)


@pytest.fixture
def s3_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A store of each backend, empty: a temp folder, or a new bucket (under a prefix) on SeaweedFS."""
    if request.param == "local":
        return open_object_store(str(tmp_path / "artifacts"))
    server: SeaweedFS = request.getfixturevalue("s3_env")
    return open_object_store(f"s3://{new_bucket()}/inkwell/artifacts", endpoint_url=server.endpoint_url)


def test_bytes_round_trip(store: ObjectStore) -> None:
    store.put_bytes("runs/abc/metrics.json", b'{"loss": 1.5}')
    assert store.get_bytes("runs/abc/metrics.json") == b'{"loss": 1.5}'
    assert store.exists("runs/abc/metrics.json")
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""


def test_file_round_trip_3mb(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    src = tmp_path / "checkpoint.pt"
    src.write_bytes(data)
    store.put_file("runs/abc/checkpoint.pt", src)
    dest = tmp_path / "out" / "checkpoint.pt"
    dest.parent.mkdir()
    dest.write_bytes(b"old content")
    store.get_file("runs/abc/checkpoint.pt", dest)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["checkpoint.pt"]  # no temp file left behind


def test_version_changes_when_replaced(store: ObjectStore) -> None:
    assert store.version("runs/abc/checkpoint.pt") is None
    store.put_bytes("runs/abc/checkpoint.pt", b"epoch 1")
    first = store.version("runs/abc/checkpoint.pt")
    assert first
    assert store.version("runs/abc/checkpoint.pt") == first  # stable while unchanged
    store.put_bytes("runs/abc/checkpoint.pt", b"epoch 2")  # same size: only the content differs
    second = store.version("runs/abc/checkpoint.pt")
    assert second and second != first
    assert store.get_bytes("runs/abc/checkpoint.pt") == b"epoch 2"


def test_missing_key(store: ObjectStore, tmp_path: Path) -> None:
    for read in (lambda: store.get_bytes("runs/none/x.pt"), lambda: store.get_file("runs/none/x.pt", tmp_path / "x"),
                 lambda: store.open_stream("runs/none/x.pt")):
        with pytest.raises(ObjectMissing, match="runs/none/x.pt"):
            read()
    assert not (tmp_path / "x").exists()
    assert not store.exists("runs/none/x.pt")
    assert issubclass(ObjectMissing, ObjectStoreError)


def test_list_by_prefix(store: ObjectStore) -> None:
    for key in ("runs/aa/checkpoint.pt", "runs/aa/plots/loss.png", "runs/ab/checkpoint.pt", "datasets/x.zip"):
        store.put_bytes(key, key.encode())
    assert store.list("runs/aa/") == ["runs/aa/checkpoint.pt", "runs/aa/plots/loss.png"]
    assert store.list("runs/a") == ["runs/aa/checkpoint.pt", "runs/aa/plots/loss.png", "runs/ab/checkpoint.pt"]
    assert store.list("runs/aa/plots/lo") == ["runs/aa/plots/loss.png"]
    assert store.list() == ["datasets/x.zip", "runs/aa/checkpoint.pt", "runs/aa/plots/loss.png",
                            "runs/ab/checkpoint.pt"]
    assert store.list("nothing/") == []


def test_delete(store: ObjectStore) -> None:
    store.put_bytes("runs/aa/checkpoint.pt", b"x")
    store.put_bytes("runs/aa/keep.png", b"y")
    store.delete("runs/aa/checkpoint.pt")
    assert not store.exists("runs/aa/checkpoint.pt")
    assert store.version("runs/aa/checkpoint.pt") is None
    assert store.list("runs/") == ["runs/aa/keep.png"]
    store.delete("runs/aa/checkpoint.pt")  # deleting again is no error, as in S3
    with pytest.raises(ObjectMissing):
        store.get_bytes("runs/aa/checkpoint.pt")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(store: ObjectStore, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for call in (lambda: store.put_bytes(key, b"x"), lambda: store.put_file(key, src),
                 lambda: store.get_bytes(key), lambda: store.version(key), lambda: store.delete(key),
                 lambda: store.exists(key), lambda: store.open_stream(key)):
        with pytest.raises(ValueError, match="invalid object key"):
            call()
    assert store.list() == []
    assert [p.name for p in tmp_path.iterdir()] in (["f"], ["f", "artifacts"], ["artifacts", "f"])


def test_streaming_download_equals_upload(store: ObjectStore) -> None:
    data = os.urandom(1024 * 1024 + 123)
    store.put_bytes("runs/aa/checkpoint.pt", data)
    pieces = list(store.open_stream("runs/aa/checkpoint.pt", chunk=64 * 1024))
    assert b"".join(pieces) == data
    assert len(pieces) > 1 and all(len(p) <= 64 * 1024 for p in pieces)


def test_local_url_forms(tmp_path: Path) -> None:
    by_path = open_object_store(str(tmp_path / "a"))
    by_url = open_object_store((tmp_path / "a").as_uri())
    assert isinstance(by_path, LocalObjectStore) and isinstance(by_url, LocalObjectStore)
    by_path.put_bytes("k/v", b"1")
    assert by_url.get_bytes("k/v") == b"1"
    assert (tmp_path / "a" / "k" / "v").read_bytes() == b"1"
    with pytest.raises(ObjectStoreError):
        open_object_store("ftp://host/x")


def test_local_symlink_out_of_the_store_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    store = open_object_store(str(tmp_path / "store"))
    (tmp_path / "store" / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="outside the store"):
        store.get_bytes("link/secret")


def test_s3_bucket_is_created_if_missing(s3_env: SeaweedFS) -> None:
    bucket = new_bucket()
    client = s3_client(s3_env)
    with pytest.raises(ClientError):
        client.head_bucket(Bucket=bucket)
    store = open_object_store(f"s3://{bucket}", endpoint_url=s3_env.endpoint_url)
    assert isinstance(store, S3ObjectStore)
    client.head_bucket(Bucket=bucket)  # there before anything is written
    store.put_bytes("runs/aa/x", b"1")
    assert client.get_object(Bucket=bucket, Key="runs/aa/x")["Body"].read() == b"1"  # no prefix: key as is
    again = open_object_store(f"s3://{bucket}/", endpoint_url=s3_env.endpoint_url)  # an existing bucket is fine
    assert again.get_bytes("runs/aa/x") == b"1"


def test_s3_prefix_keeps_stores_apart(s3_env: SeaweedFS) -> None:
    bucket = new_bucket()
    one = open_object_store(f"s3://{bucket}/one", endpoint_url=s3_env.endpoint_url)
    two = open_object_store(f"s3://{bucket}/two/", endpoint_url=s3_env.endpoint_url)
    one.put_bytes("k", b"1")
    assert two.list() == [] and not two.exists("k")
    assert one.list() == ["k"]
    assert [o["Key"] for o in s3_client(s3_env).list_objects_v2(Bucket=bucket)["Contents"]] == ["one/k"]


def test_s3_unreachable_endpoint_is_store_unavailable(s3_env: SeaweedFS) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    began = time.monotonic()
    with pytest.raises(StoreUnavailable, match="127.0.0.1") as caught:
        open_object_store(f"s3://{new_bucket()}/x", endpoint_url=closed)
    assert time.monotonic() - began < 10
    assert "\n" not in str(caught.value)

    store = S3ObjectStore(new_bucket(), "x", endpoint_url=closed, ensure_bucket=False)
    began = time.monotonic()
    for call in (lambda: store.get_bytes("k"), lambda: store.put_bytes("k", b"1"), lambda: store.version("k"),
                 lambda: store.list()):
        with pytest.raises(StoreUnavailable):
            call()
    assert time.monotonic() - began < 30
    assert issubclass(StoreUnavailable, ObjectStoreError)


def test_seaweedfs_started_quickly(seaweedfs: SeaweedFS) -> None:  # noqa: F811 - the fixture
    assert seaweedfs.startup_seconds is not None and seaweedfs.startup_seconds < 60
    print(f"SeaweedFS started in {seaweedfs.startup_seconds:.1f} s")
