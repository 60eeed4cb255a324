"""Dataset names → spec strings: folders inside the data dir only, never paths."""

from __future__ import annotations

import pytest

from ml.data.catalog import list_datasets, resolve_dataset
from ml.data.specs import data_kind_of_spec, folder_kind, spec_for_name
from ml.errors import DataError


def test_names_resolve_to_specs_by_what_the_folder_holds(shared_data):
    assert spec_for_name("mnist-8k", shared_data) == f"idx:{shared_data / 'mnist-8k'}"
    assert spec_for_name("spa-eng", shared_data) == f"pairs:{shared_data / 'spa-eng'}"
    assert spec_for_name("kmnist", shared_data) == "kmnist"
    assert folder_kind(shared_data / "mnist-8k") == "images" and folder_kind(shared_data / "spa-eng") == "pairs"
    assert data_kind_of_spec(spec_for_name("spa-eng", shared_data)) == "pairs"
    assert data_kind_of_spec(spec_for_name("mnist-8k", shared_data)) == "images"
    assert data_kind_of_spec("kmnist") == "images"


def test_catalog_lists_builtins_then_folders_and_resolves_by_data_kind(shared_data, tmp_path):
    entries = {e.name: e for e in list_datasets(shared_data)}
    assert [n for n in entries][:3] == ["kmnist", "mnist", "fashion-mnist"]
    assert all(entries[n].builtin for n in ("kmnist", "mnist", "fashion-mnist"))
    assert (entries["mnist-8k"].data_kind, entries["mnist-8k"].builtin) == ("images", False)
    assert entries["spa-eng"].data_kind == "pairs" and entries["spa-eng"].available
    assert not any(e.available for e in list_datasets(tmp_path))  # nothing downloaded there
    assert resolve_dataset("spa-eng", "pairs", shared_data) == f"pairs:{shared_data / 'spa-eng'}"
    with pytest.raises(DataError, match="holds text pairs, not images"):
        resolve_dataset("spa-eng", "images", shared_data)
    with pytest.raises(DataError, match=r"unknown dataset 'nosuch'; available datasets: kmnist \(images\)"):
        resolve_dataset("nosuch", "images", shared_data)


def test_paths_unknown_and_absurd_names_resolve_to_nothing(shared_data, tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("../data", "/etc", "spa-eng/../mnist-8k", ".hidden", "", "a" * 5000, "nosuch"):
        assert spec_for_name(name, shared_data) is None, name
    assert spec_for_name("empty", tmp_path) is None
    assert folder_kind(tmp_path / "missing") is None
