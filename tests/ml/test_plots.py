"""Training curves: valid PNGs, and figures that hold exactly the history's numbers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from ml.errors import InputError
from ml.plots import (
    loss_curve_figure,
    loss_curve_png,
    sweep_figure,
    sweep_png,
    validation_curve_figure,
    validation_curve_png,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_history(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    loss = np.sort(rng.uniform(0.05, 2.0, n))[::-1]
    acc = np.sort(rng.uniform(0.5, 0.99, n))
    return [
        {"epoch": i + 1, "train_loss": float(loss[i]), "val_accuracy": float(acc[i]), "val_error_rate": 1 - acc[i]}
        for i in range(n)
    ]


def open_png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_SIGNATURE)
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def texts(fig) -> str:
    return " | ".join(t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text")))


def test_loss_curve_holds_the_history() -> None:
    history = make_history(6, seed=1)
    fig = loss_curve_figure(history)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [h["epoch"] for h in history])
    np.testing.assert_allclose(line.get_ydata(), [h["train_loss"] for h in history])
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel()
    im = open_png(loss_curve_png(history))
    assert im.size[0] >= 400 and im.size[1] >= 250


@pytest.mark.parametrize(("metric", "key", "words"), [("accuracy", "val_accuracy", "accuracy"),
                                                     ("error_rate", "val_error_rate", "error rate")])  # fmt: skip
def test_validation_curve_picks_the_metric(metric: str, key: str, words: str) -> None:
    history = make_history(5, seed=2)
    fig = validation_curve_figure(history, metric)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [h[key] for h in history])
    assert words in ax.get_ylabel() and "validation" in ax.get_ylabel()
    open_png(validation_curve_png(history, metric))


def test_entries_without_the_value_are_skipped() -> None:
    history = [{"epoch": 1, "train_loss": 0.9}, {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.8},
               {"epoch": 3, "train_loss": float("nan"), "val_accuracy": 0.85}]  # fmt: skip
    (loss_line,) = loss_curve_figure(history).axes[0].get_lines()
    np.testing.assert_allclose(loss_line.get_xdata(), [1, 2])
    (acc_line,) = validation_curve_figure(history, "accuracy").axes[0].get_lines()
    np.testing.assert_allclose(acc_line.get_xdata(), [2, 3])


def test_one_epoch_shows_a_marker() -> None:
    history = make_history(1, seed=3)
    for fig in (loss_curve_figure(history), validation_curve_figure(history, "accuracy")):
        (line,) = fig.axes[0].get_lines()
        assert len(line.get_xdata()) == 1
        assert line.get_marker() not in (None, "", "None", " ") and line.get_markersize() > 0
    open_png(loss_curve_png(history))


@pytest.mark.parametrize(
    "make",
    [
        lambda: loss_curve_png([]),
        lambda: validation_curve_png([], "error_rate"),
        lambda: sweep_png({}, "accuracy"),
        lambda: sweep_png({"a": [], "b": []}, "accuracy"),
    ],
)
def test_empty_history_gives_a_png(make) -> None:
    im = open_png(make())
    assert im.size[0] > 100 and im.size[1] > 100


def test_empty_figures_say_so() -> None:
    for fig in (loss_curve_figure([]), validation_curve_figure([], "accuracy"), sweep_figure({}, "error_rate")):
        assert "no epochs yet" in texts(fig)
        assert all(not ax.get_lines() for ax in fig.axes)


def test_sweep_overlays_runs_in_distinct_colours() -> None:
    runs = {"lr=0.0005": make_history(4, seed=4), "lr=0.001": make_history(4, seed=5), "lr=0.01": make_history(1, 6)}
    fig = sweep_figure(runs, "error_rate")
    loss_ax, metric_ax = fig.axes[:2]
    assert "loss" in loss_ax.get_ylabel() and "error rate" in metric_ax.get_ylabel()
    for ax, key in ((loss_ax, "train_loss"), (metric_ax, "val_error_rate")):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == list(runs)
        for line, history in zip(lines, runs.values(), strict=True):
            np.testing.assert_allclose(line.get_ydata(), [h[key] for h in history])
    colours = [to_rgba(line.get_color()) for line in loss_ax.get_lines()]
    assert len(set(colours)) == len(runs)
    # the same label has the same colour in both panels
    assert colours == [to_rgba(line.get_color()) for line in metric_ax.get_lines()]
    legend = metric_ax.get_legend()
    assert legend is not None and [t.get_text() for t in legend.get_texts()] == list(runs)
    im = open_png(sweep_png(runs, "error_rate"))
    assert im.size[0] > im.size[1]  # two panels side by side


def test_unknown_metric() -> None:
    with pytest.raises(InputError, match="accuracy, error_rate"):
        validation_curve_png(make_history(2, seed=7), "bleu")
    with pytest.raises(InputError):
        sweep_png({"a": make_history(2, seed=7)}, "loss")


def test_different_histories_draw_different_pictures() -> None:
    a = np.asarray(open_png(loss_curve_png(make_history(5, seed=8))).convert("L"), dtype=float)
    b = np.asarray(open_png(loss_curve_png(make_history(5, seed=9))).convert("L"), dtype=float)
    assert a.shape == b.shape and np.abs(a - b).mean() > 0.1
