"""ArtifactStore: keys from validated ids only; a local cache keyed by object version, on both backends."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from core.objectstore import StoreUnavailable
from core.storage import (
    ArtifactStore,
    checkpoint_key,
    dataset_key,
    plot_key,
    run_key,
    run_of_key,
    validate_run_id,
)
from tests.fixtures.seaweedfs import seaweedfs  # noqa: F401 - the fixture
from tests.support import free_port


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path, monkeypatch) -> ArtifactStore:
    """An artifact store of each backend with a private cache folder."""
    if request.param == "local":
        return ArtifactStore(tmp_path / "store", tmp_path / "cache")
    server = request.getfixturevalue("seaweedfs")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return ArtifactStore(f"s3://inkwell-{uuid.uuid4().hex[:10]}/art", tmp_path / "cache", server.endpoint_url)


def test_keys_are_built_from_validated_parts() -> None:
    run_id = uuid.uuid4().hex
    assert checkpoint_key(run_id) == f"runs/{run_id}/checkpoint.pt"
    assert plot_key(run_id, "loss") == plot_key(run_id, "loss.png") == f"runs/{run_id}/loss.png"
    assert dataset_key("a" * 64) == f"datasets/{'a' * 64}.tar"
    assert run_of_key(checkpoint_key(run_id)) == run_id and run_of_key("datasets/x.tar") is None
    for bad in ("../x", "a/b", ".hidden", "a..b", ""):
        with pytest.raises(ValueError):
            run_key(run_id, bad)
    for bad in ("A" * 64, "a" * 63, "../" + "a" * 61):
        with pytest.raises(ValueError):
            dataset_key(bad)


@pytest.mark.parametrize("bad", ["../" + "a" * 29, "A" * 32, "abc", uuid.uuid4().hex + "/..", str(uuid.uuid4())])
def test_run_ids_are_validated(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path / "store", tmp_path / "cache")
    with pytest.raises(ValueError):
        validate_run_id(bad)
    with pytest.raises(ValueError):
        store.work_dir(bad)
    with pytest.raises(ValueError):
        checkpoint_key(bad)
    assert not (tmp_path / "cache").exists()  # nothing was created for a refused id


def test_a_replaced_object_is_a_new_cached_file(store: ArtifactStore) -> None:
    run_id = uuid.uuid4().hex
    assert store.cached_checkpoint(run_id) is None
    store.objects.put_bytes(checkpoint_key(run_id), b"first")
    first = store.cached_checkpoint(run_id)
    assert first is not None and first.read_bytes() == b"first"
    assert store.cached_checkpoint(run_id) == first  # unchanged: the same file, not fetched again
    store.objects.put_bytes(checkpoint_key(run_id), b"second version")
    second = store.cached_checkpoint(run_id)
    assert second is not None and second.read_bytes() == b"second version"
    if not store.is_local:
        assert second != first and not first.exists()  # the old version's copy was dropped
        assert second.is_relative_to(store.cache_dir)
    store.objects.delete(checkpoint_key(run_id))
    assert store.cached_checkpoint(run_id) is None


def test_the_store_is_the_truth_for_a_resumed_checkpoint(store: ArtifactStore) -> None:
    run_id = uuid.uuid4().hex
    work = store.work_dir(run_id)
    assert work.is_dir() and work.is_relative_to(store.cache_dir)
    local = work / "checkpoint.pt"
    local.write_bytes(b"left over from an earlier attempt on this machine")
    assert store.fetch_checkpoint(run_id, local) is False
    assert not local.exists()
    store.objects.put_bytes(checkpoint_key(run_id), b"epoch 3")
    assert store.fetch_checkpoint(run_id, local) is True and local.read_bytes() == b"epoch 3"
    store.forget_run(run_id)
    assert not work.exists()


def test_datasets_are_fetched_once_by_hash(store: ArtifactStore) -> None:
    digest = "b" * 64
    store.objects.put_bytes(dataset_key(digest), b"tar bytes")
    path = store.fetch_dataset(digest)
    assert path.read_bytes() == b"tar bytes" and path.is_relative_to(store.cache_dir)
    store.objects.put_bytes(dataset_key(digest), b"changed")  # content-addressed: never re-read
    assert store.fetch_dataset(digest).read_bytes() == b"tar bytes"


def test_streams_come_from_the_store(store: ArtifactStore) -> None:
    key = plot_key(uuid.uuid4().hex, "loss")
    store.objects.put_bytes(key, b"\x89PNG" + os.urandom(3000))
    assert b"".join(store.open_stream(key)) == store.objects.get_bytes(key)


def test_an_unreachable_store_is_opened_on_first_use_and_again_later(tmp_path: Path, monkeypatch,
                                                                      seaweedfs) -> None:  # noqa: F811
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    dead = ArtifactStore("s3://inkwell-dead/x", tmp_path / "cache", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(StoreUnavailable):
        dead.objects  # noqa: B018 - opening it is the point
    with pytest.raises(StoreUnavailable):
        dead.cached_checkpoint(uuid.uuid4().hex)
    dead.endpoint_url = seaweedfs.endpoint_url  # the store is back (here: found at its address)
    assert dead.cached_checkpoint(uuid.uuid4().hex) is None
