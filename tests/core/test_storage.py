"""ArtifactStore: run folders from validated ids only; resolve() never leaves the root."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from core.storage import ArtifactStore, validate_run_id


def test_paths_live_under_the_run_folder(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "art")
    run_id = uuid.uuid4().hex
    assert store.checkpoint_path(run_id).parent == store.run_dir(run_id)
    assert not (tmp_path / "art" / "runs").exists()  # reads create no folders
    folder = store.run_dir(run_id, create=True)
    assert folder == (tmp_path / "art" / "runs" / run_id).resolve() and folder.is_dir()
    assert store.plot_path(run_id, "loss") == folder / "loss.png"
    assert store.plot_path(run_id, "val.png") == folder / "val.png"
    rel = store.relative(store.checkpoint_path(run_id))
    assert rel == f"runs/{run_id}/{store.checkpoint_path(run_id).name}"
    assert store.resolve(rel) == store.checkpoint_path(run_id)


@pytest.mark.parametrize("bad", ["../x", "a/../../x", "/etc/passwd", "runs/../../x", "", "..", "a\x00b",
                                 "..\\..\\x", "."])
def test_resolve_refuses_escapes(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        ArtifactStore(tmp_path).resolve(bad)


def test_resolve_refuses_symlinks_out_of_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    os.symlink(outside, root / "link")
    with pytest.raises(ValueError):
        ArtifactStore(root).resolve("link/secret.txt")
    with pytest.raises(ValueError):
        ArtifactStore(root).relative(outside / "secret.txt")


BAD_IDS = ["../" + "a" * 29, "A" * 32, "abc", uuid.uuid4().hex + "/..", str(uuid.uuid4())]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_run_ids_and_names_are_validated(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ValueError):
        validate_run_id(bad)
    with pytest.raises(ValueError):
        store.run_dir(bad)
    for name in ("../x", "a/b", ".hidden", "a..b", ""):
        with pytest.raises(ValueError):
            store.plot_path(uuid.uuid4().hex, name)
    assert list(tmp_path.iterdir()) == []  # nothing was created for a refused id or name
