"""Dataset names → spec strings: folders inside the data dir only, never paths."""

from __future__ import annotations

from ml.data.specs import folder_kind, model_for_spec, spec_for_name


def test_names_resolve_to_specs_by_what_the_folder_holds(shared_data):
    assert spec_for_name("mnist-8k", shared_data) == f"idx:{shared_data / 'mnist-8k'}"
    assert spec_for_name("spa-eng", shared_data) == f"pairs:{shared_data / 'spa-eng'}"
    assert spec_for_name("kmnist", shared_data) == "kmnist"
    assert folder_kind(shared_data / "mnist-8k") == "images" and folder_kind(shared_data / "spa-eng") == "pairs"
    assert model_for_spec(spec_for_name("spa-eng", shared_data)) == "seq2seq"
    assert model_for_spec(spec_for_name("mnist-8k", shared_data)) == "cnn"


def test_paths_unknown_and_absurd_names_resolve_to_nothing(shared_data, tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("../data", "/etc", "spa-eng/../mnist-8k", ".hidden", "", "a" * 5000, "nosuch"):
        assert spec_for_name(name, shared_data) is None, name
    assert spec_for_name("empty", tmp_path) is None
    assert folder_kind(tmp_path / "missing") is None
