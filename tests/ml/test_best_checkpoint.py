"""best.pt: the weights of the epoch with the best validation metric, kept beside the last checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.config import TrainConfig
from ml.inference import load_predictor
from ml.kinds.cnn import build
from ml.recipes import ImageRecipe
from ml.training import fit, improves

DATA = "mnist-8k"


def _config(**kw) -> TrainConfig:
    return TrainConfig.for_model("cnn", f"idx:{DATA}", **{"epochs": 4, "batch_size": 64, "limit": 300,
                                                        "learning_rate": 0.01, **kw})


@pytest.mark.parametrize(("value", "best", "higher", "expected"), [
    (0.5, None, True, True), (0.5, 0.5, True, False), (0.6, 0.5, True, True), (0.4, 0.5, True, False),
    (0.4, 0.5, False, True), (0.5, 0.5, False, False), (math.nan, None, True, False), (math.nan, 0.1, False, False),
    (math.inf, None, True, False),
])
def test_only_a_strictly_better_finite_value_is_a_new_best(value, best, higher, expected):
    assert improves(value, best, higher) is expected


def test_best_checkpoint_holds_the_weights_of_the_best_validation_epoch(shared_data, tmp_path):
    result = fit(_config(), data_dir=shared_data, out_dir=tmp_path / "run")
    vals = [h.val_metric for h in result.history]
    best_epoch = vals.index(max(vals)) + 1  # index() finds the earliest of equal values
    assert result.best_epoch == best_epoch
    best = load_checkpoint(result.best_checkpoint)
    assert best["epoch"] == best_epoch and best["val"]["accuracy"] == max(vals)
    assert load_checkpoint(result.checkpoint)["best"] == {"epoch": best_epoch, "value": max(vals)}
    # Its weights score exactly the recorded validation accuracy again, and it loads for serving.
    recipe = ImageRecipe(_config(), shared_data, torch.device("cpu"), build)
    model = load_predictor(result.best_checkpoint, device="cpu").model
    assert recipe.evaluate(model, "val") == max(vals)
    assert recipe.evaluate(model, "test") == result.best_test_metric
    assert load_checkpoint(result.best_checkpoint)["test"]["accuracy"] == result.best_test_metric
    if best_epoch == len(vals):
        assert result.best_test_metric == result.test_metric


def test_a_resumed_run_keeps_the_same_best_epoch_as_a_straight_one(shared_data, tmp_path):
    straight = fit(_config(), data_dir=shared_data, out_dir=tmp_path / "straight")
    out = tmp_path / "resumed"
    fit(_config(epochs=2), data_dir=shared_data, out_dir=out)
    resumed = fit(_config(), data_dir=shared_data, out_dir=out)
    assert resumed.resumed_from == 2
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.best_test_metric == straight.best_test_metric


def test_a_stale_best_file_is_not_trusted_after_a_resume(shared_data, tmp_path):
    out = tmp_path / "run"
    first = fit(_config(epochs=1), data_dir=shared_data, out_dir=out)
    stale = load_checkpoint(first.best_checkpoint)
    stale["epoch"] = 99  # as if it belonged to another epoch than the checkpoint records
    save_checkpoint(first.best_checkpoint, {k: v for k, v in stale.items() if k not in ("format", "version")})
    resumed = fit(_config(epochs=2), data_dir=shared_data, out_dir=out)
    if resumed.best_epoch == 1:  # epoch 2 was no better: no best file holds epoch 1 any more
        assert resumed.best_checkpoint is None and resumed.best_test_metric is None
    else:
        assert load_checkpoint(resumed.best_checkpoint)["epoch"] == resumed.best_epoch
