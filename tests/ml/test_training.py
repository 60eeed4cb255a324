"""fit(): both models train on real data, write per-epoch checkpoints, resume exactly, and stop on cancel."""

from __future__ import annotations

import pytest
import torch

from ml.checkpoint import load_checkpoint
from ml.config import TrainConfig
from ml.errors import Cancelled, CheckpointError, DataError
from ml.training import fit


def cnn_config(shared_data, **kw) -> TrainConfig:
    values = {"learning_rate": 0.001, "epochs": 2, "batch_size": 32, "limit": 400, **kw}
    return TrainConfig.for_model("cnn", f"idx:{shared_data / 'mnist-8k'}", **values)


def s2s_config(shared_data, **kw) -> TrainConfig:
    values = {"epochs": 1, "batch_size": 64, "limit": 192, "hidden_size": 32, "attention": True, **kw}
    return TrainConfig.for_model("seq2seq", f"pairs:{shared_data / 'spa-eng'}", **values)


def test_cnn_fit_reports_each_epoch_and_writes_a_checkpoint(shared_data, tmp_path):
    seen = []
    result = fit(cnn_config(shared_data), data_dir=shared_data, out_dir=tmp_path, on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2] == [r.epoch for r in result.history]
    assert all(r.train_loss > 0 and 0 <= r.val_metric <= 1 and r.seconds > 0 for r in seen)
    assert seen[1].train_loss < seen[0].train_loss  # it learns
    assert result.metric == "accuracy" and 0 <= result.test_metric <= 1
    saved = load_checkpoint(result.checkpoint)
    assert saved["epoch"] == 2 and saved["model"] == "cnn"
    assert saved["meta"]["classes"] == [str(i) for i in range(10)]
    assert saved["test"]["accuracy"] == pytest.approx(result.test_metric)
    assert len(saved["history"]) == 2 and "optimizer" in saved and "rng" in saved


def test_cnn_learns_real_digits(shared_data, tmp_path):
    result = fit(cnn_config(shared_data, limit=1200, epochs=3, batch_size=16), data_dir=shared_data, out_dir=tmp_path)
    assert result.history[-1].val_metric > 0.75
    assert result.test_metric > 0.75


def test_resume_continues_exactly_where_training_stopped(shared_data, tmp_path):
    straight = fit(cnn_config(shared_data), data_dir=shared_data, out_dir=tmp_path / "a")
    fit(cnn_config(shared_data, epochs=1), data_dir=shared_data, out_dir=tmp_path / "b")
    resumed = fit(cnn_config(shared_data), data_dir=shared_data, out_dir=tmp_path / "b")
    assert resumed.resumed_from == 1
    assert [h.train_loss for h in resumed.history] == pytest.approx([h.train_loss for h in straight.history])
    a = load_checkpoint(straight.checkpoint)["state_dict"]
    b = load_checkpoint(resumed.checkpoint)["state_dict"]
    for name in a:
        torch.testing.assert_close(a[name], b[name])


def test_resume_refuses_a_checkpoint_of_another_configuration(shared_data, tmp_path):
    fit(cnn_config(shared_data, epochs=1), data_dir=shared_data, out_dir=tmp_path)
    with pytest.raises(CheckpointError):
        fit(cnn_config(shared_data, learning_rate=0.01), data_dir=shared_data, out_dir=tmp_path)


def test_cancel_stops_between_batches_and_keeps_finished_epochs(shared_data, tmp_path):
    calls = {"n": 0}
    n_batches = 400 // 32 + 1

    def should_cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > n_batches + 3  # during epoch 2

    with pytest.raises(Cancelled):
        fit(cnn_config(shared_data, epochs=3), data_dir=shared_data, out_dir=tmp_path, should_cancel=should_cancel)
    assert calls["n"] == n_batches + 4
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_seq2seq_fit_reports_error_rate_and_saves_vocabularies(shared_data, tmp_path):
    seen = []
    result = fit(s2s_config(shared_data), data_dir=shared_data, out_dir=tmp_path, on_epoch=seen.append)
    assert result.metric == "error_rate" and len(seen) == 1
    assert seen[0].as_json().keys() == {"epoch", "train_loss", "val_error_rate", "seconds"}
    assert 0 <= seen[0].val_metric and result.test_metric >= 0
    meta = load_checkpoint(result.checkpoint)["meta"]
    assert meta["src_vocab"][:4] == meta["tgt_vocab"][:4] and len(meta["src_vocab"]) > 20


def test_model_and_dataset_kinds_must_match(shared_data, tmp_path):
    bad = TrainConfig.for_model("cnn", f"pairs:{shared_data / 'spa-eng'}")
    with pytest.raises(DataError, match="text pairs"):
        fit(bad, data_dir=shared_data, out_dir=tmp_path)
