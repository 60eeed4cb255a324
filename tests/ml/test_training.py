"""fit(): both models train on real data, write per-epoch checkpoints, resume exactly, and stop on cancel."""

from __future__ import annotations

import pytest
import torch

from ml.checkpoint import load_checkpoint
from ml.config import TrainConfig
from ml.data.images import load_images
from ml.data.text import load_pairs
from ml.errors import Cancelled, CheckpointError, DataError
from ml.inference import load_predictor
from ml.metrics import error_rate
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
    assert result.metric == "accuracy" and 0.2 < result.test_metric <= 1  # 2 epochs on 400 digits: above chance
    # The reported test accuracy is the saved model's, on the test split (the same first 400 digits).
    test = load_images(result.config.data, shared_data, seed=result.config.seed).test
    labels = test.labels[:400].tolist()
    predicted = [p.label for p in load_predictor(result.checkpoint, "cpu").predict(test.images[:400])]
    correct = sum(p == y for p, y in zip(predicted, labels, strict=True))
    assert result.test_metric == pytest.approx(correct / len(labels))
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
    config = s2s_config(shared_data, epochs=2)
    seen = []
    result = fit(config, data_dir=shared_data, out_dir=tmp_path, on_epoch=seen.append)
    assert result.metric == "error_rate" and [r.epoch for r in seen] == [1, 2]
    assert seen[0].as_json().keys() == {"epoch", "train_loss", "val_error_rate", "seconds"}
    assert seen[1].train_loss < seen[0].train_loss  # it learns
    # The error rates are the saved model's greedy transliterations scored against the references
    # (the rate is edit distance / target length, so a model this small can exceed 1; never 0).
    pairs = load_pairs(config.data, shared_data, direction=config.direction, max_length=config.max_length)
    model = load_predictor(result.checkpoint, "cpu")
    scores: dict[tuple, float] = {}  # by split contents (spa-eng has no test file: test = val)
    for split, reported in (("val", seen[-1].val_metric), ("test", result.test_metric)):
        chosen = tuple(getattr(pairs, split)[: config.limit])
        if chosen not in scores:
            outputs = [hyps[0].text for hyps in model.translate([src for src, _ in chosen])]
            scores[chosen] = error_rate(outputs, [tgt for _, tgt in chosen])
        assert reported == pytest.approx(scores[chosen]) and reported > 0, split
    saved = load_checkpoint(result.checkpoint)
    assert saved["test"] == {"error_rate": pytest.approx(result.test_metric)}
    meta = saved["meta"]
    assert meta["src_vocab"][:4] == meta["tgt_vocab"][:4] and len(meta["src_vocab"]) > 20
    assert meta["src_vocab"] == pairs.src_vocab.to_list() and meta["tgt_vocab"] == pairs.tgt_vocab.to_list()


def test_model_and_dataset_kinds_must_match(shared_data, tmp_path):
    bad = TrainConfig.for_model("cnn", f"pairs:{shared_data / 'spa-eng'}")
    with pytest.raises(DataError, match="text pairs"):
        fit(bad, data_dir=shared_data, out_dir=tmp_path)
