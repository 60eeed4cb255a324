"""What the service needs from fit(): configs that name a dataset (resumable wherever the data lives) and
a guard around every checkpoint write."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import pytest

from ml.checkpoint import load_checkpoint
from ml.config import TrainConfig
from ml.training import fit


def _config(**kw) -> TrainConfig:
    return TrainConfig.for_model("cnn", "mnist-8k", **{"epochs": 2, "batch_size": 64, "limit": 256, **kw})


def test_a_run_named_by_its_dataset_resumes_on_a_machine_whose_data_is_elsewhere(shared_data, tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    for root in (here, there):
        shutil.copytree(shared_data / "mnist-8k", root / "mnist-8k")
    out = tmp_path / "run"
    first = fit(_config(epochs=1), data_dir=here, out_dir=out, dataset_spec=f"idx:{here / 'mnist-8k'}")
    assert load_checkpoint(first.checkpoint)["config"]["data"] == "mnist-8k"  # no path in the checkpoint
    resumed = fit(_config(), data_dir=there, out_dir=out, dataset_spec=f"idx:{there / 'mnist-8k'}")
    assert resumed.resumed_from == 1 and [h.epoch for h in resumed.history] == [1, 2]
    straight = fit(_config(), data_dir=here, out_dir=tmp_path / "straight", dataset_spec=f"idx:{here / 'mnist-8k'}")
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in straight.history])


def test_every_checkpoint_write_happens_inside_the_guard_and_a_refusal_stops_training(shared_data, tmp_path):
    entered: list[int] = []
    saved: list[str] = []
    spec = f"idx:{shared_data / 'mnist-8k'}"

    @contextmanager
    def guard():
        entered.append(len(entered))
        yield
        assert len(saved) == len(entered) - 1  # on_saved runs after the guarded write, not inside it

    result = fit(_config(), data_dir=shared_data, out_dir=tmp_path / "a", dataset_spec=spec, write_guard=guard,
                 on_saved=lambda path: saved.append(path.name))
    assert len(entered) == len(saved)  # every file written was written inside the guard
    assert saved.count("checkpoint.pt") == 3  # two epochs and the final test metric
    assert saved[0] == "best.pt" and saved[-2:] == ["checkpoint.pt", "best.pt"]  # best first, its test metric last
    assert load_checkpoint(result.checkpoint)["test"]["accuracy"] == result.test_metric
    assert load_checkpoint(result.best_checkpoint)["test"]["accuracy"] == result.best_test_metric

    class Refused(RuntimeError):
        pass

    @contextmanager
    def refusing():
        raise Refused("lease lost")
        yield  # pragma: no cover

    with pytest.raises(Refused):
        fit(_config(), data_dir=shared_data, out_dir=tmp_path / "b", dataset_spec=spec, write_guard=refusing)
    assert not (tmp_path / "b" / "checkpoint.pt").exists()
    assert list((tmp_path / "b").glob("*.tmp")) == []
