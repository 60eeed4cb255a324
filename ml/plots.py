"""PNG curves of training runs: loss, validation metric, and a sweep of several runs overlaid.

A history is a list of per-epoch dicts such as {"epoch": 1, "train_loss": 0.4, "val_accuracy": 0.9}.
Drawing uses matplotlib's object API (Figure + Agg canvas), never pyplot, so it is safe in threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ml.errors import InputError

History = Sequence[Mapping[str, Any]]
METRICS = {
    "accuracy": ("val_accuracy", "validation accuracy"),
    "error_rate": ("val_error_rate", "validation error rate"),
}
EMPTY_MESSAGE = "no epochs yet"


def _new_figure(width: float = 6.4, height: float = 4.0, dpi: int = 100) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _empty_figure(title: str, message: str = EMPTY_MESSAGE) -> Figure:
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, color="0.4", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _series(history: History, key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the entries that hold a finite `key` (the epoch defaults to the position)."""
    xs, ys = [], []
    for i, row in enumerate(history, start=1):
        value = row.get(key)
        if value is None or not math.isfinite(float(value)):
            continue
        xs.append(float(row.get("epoch", i)))
        ys.append(float(value))
    return xs, ys


def _metric(metric: str) -> tuple[str, str]:
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return METRICS[metric]


def _draw(ax: Axes, xs: list[float], ys: list[float], label: str | None = None, color: Any = None) -> None:
    """A line with markers (so that one-epoch histories still show a point)."""
    ax.plot(xs, ys, marker="o", markersize=4 if len(xs) < 40 else 0, label=label, color=color)


def _style(ax: Axes, ylabel: str, title: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)


def loss_curve_figure(history: History, title: str = "training loss") -> Figure:
    """The training loss per epoch (a "no epochs yet" figure when the history is empty)."""
    xs, ys = _series(history, "train_loss")
    if not xs:
        return _empty_figure(title)
    fig = _new_figure()
    ax = fig.add_subplot()
    _draw(ax, xs, ys)
    _style(ax, "training loss", title)
    return fig


def validation_curve_figure(history: History, metric: str, title: str | None = None) -> Figure:
    """The validation metric ("accuracy" or "error_rate") per epoch."""
    key, label = _metric(metric)
    title = title or label
    xs, ys = _series(history, key)
    if not xs:
        return _empty_figure(title)
    fig = _new_figure()
    ax = fig.add_subplot()
    _draw(ax, xs, ys, color="tab:orange")
    _style(ax, label, title)
    return fig


def sweep_figure(runs: Mapping[str, History], metric: str, title: str | None = None) -> Figure:
    """Two panels (training loss, validation metric) with one coloured curve per run label."""
    key, label = _metric(metric)
    title = title or f"sweep: training loss and {label}"
    if not any(_series(h, "train_loss")[0] or _series(h, key)[0] for h in runs.values()):
        return _empty_figure(title)
    fig = _new_figure(width=11.0, height=4.4)
    loss_ax, metric_ax = fig.subplots(1, 2)
    for i, (run_label, history) in enumerate(runs.items()):
        color = f"C{i % 10}"
        _draw(loss_ax, *_series(history, "train_loss"), label=run_label, color=color)
        _draw(metric_ax, *_series(history, key), label=run_label, color=color)
    _style(loss_ax, "training loss", "training loss")
    _style(metric_ax, label, label)
    metric_ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curve_png(history: History, title: str = "training loss") -> bytes:
    """PNG of the training loss per epoch (a PNG saying "no epochs yet" when the history is empty)."""
    return figure_png(loss_curve_figure(history, title))


def validation_curve_png(history: History, metric: str, title: str | None = None) -> bytes:
    """PNG of the validation metric per epoch: "accuracy" -> val_accuracy, "error_rate" -> val_error_rate."""
    return figure_png(validation_curve_figure(history, metric, title))


def sweep_png(runs: Mapping[str, History], metric: str, title: str | None = None) -> bytes:
    """PNG of several runs overlaid (one colour per label): training loss and validation metric panels."""
    return figure_png(sweep_figure(runs, metric, title))
