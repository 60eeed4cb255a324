"""The report's images: the best-rate CNN run's conv1 activation maps of the first test image (rendered once
per run, kept in memory) and the decoding plot (test error rate vs beam size, greedy as dashed lines)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sqlalchemy.orm import Session
from starlette.datastructures import State

from api.report_decoding import BEAM_SIZES
from api.report_schemas import ActivationsSection, DecodingSection
from core.datasets import materialize
from core.models import Run
from core.runs import get_run
from ml.activations import activation_png
from ml.data.catalog import resolve_dataset
from ml.data.images import load_images
from ml.errors import DataError
from ml.inference import Classifier, load_predictor
from ml.plots import figure_png

CACHED_RUNS = 16
_lock = threading.Lock()


class NotReady(RuntimeError):
    """The image cannot be drawn yet: the message says what is missing (answered 409)."""


def _cache(state: State) -> OrderedDict[str, bytes]:
    with _lock:
        cache = getattr(state, "report_activation_pngs", None)
        if cache is None:
            cache = OrderedDict()
            state.report_activation_pngs = cache
        return cache


def first_test_image(state: State, run: Run) -> torch.Tensor:
    """(1, 28, 28): the first image of the test split of the run's dataset (an upload by its exact bytes)."""
    settings = state.settings
    try:
        if run.dataset_sha256:
            spec = materialize(state.store, run.dataset_sha256, "images")
        else:
            spec = resolve_dataset(run.dataset, "images", settings.data_dir, download=False)
        splits = load_images(spec, settings.data_dir, seed=int((run.config or {}).get("seed", 42)), download=False)
    except (DataError, ValueError) as exc:
        raise NotReady(f"the test images of {run.dataset!r} cannot be read here: {exc}") from None
    if len(splits.test.images) == 0:
        raise NotReady(f"dataset {run.dataset!r} has no test images")
    return splits.test.images[0]


def activations_png(state: State, session: Session, section: ActivationsSection) -> bytes:
    if not section.ready or section.run_id is None:
        raise NotReady(section.missing or "the activation maps are not ready")
    cache = _cache(state)
    with _lock:
        if section.run_id in cache:
            cache.move_to_end(section.run_id)
            return cache[section.run_id]
    run = get_run(session, section.run_id)
    session.close()  # the drawing below takes a while: hold no pooled connection
    path = state.store.cached_checkpoint(run.id, "last") if run is not None else None
    if run is None or path is None:
        raise NotReady(f"run {section.run_id} has no checkpoint in the artifact store")
    image = first_test_image(state, run)
    classifier = load_predictor(path, "cpu")
    if not isinstance(classifier, Classifier):
        raise NotReady(f"run {run.id} is not an image classifier")
    maps = classifier.activations(image, section.layer)
    title = f"{section.layer} activation maps: run {run.id[:8]}, first test image of {run.dataset}"
    data = activation_png(image, maps, section.layer, title=title)
    with _lock:
        cache[run.id] = data
        while len(cache) > CACHED_RUNS:
            cache.popitem(last=False)
    return data


def draw_decoding(ax: Axes, section: DecodingSection) -> None:
    """Test error rate vs beam size, one line per run; each run's greedy error rate as a dashed line."""
    for i, run in enumerate(section.runs):
        color = f"C{i}"
        label = f"{'with' if run.attention else 'without'} attention ({run.run_id[:8]})"
        points = [(row.beam_size, row.cells[i].error_rate) for row in section.beam
                  if row.cells[i].error_rate is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=f"beam, {label}")
        greedy = section.greedy[i].error_rate if i < len(section.greedy) else None
        if greedy is not None:
            ax.axhline(greedy, color=color, linestyle="--", label=f"greedy, {label}")
    ax.set_xticks(list(BEAM_SIZES))
    ax.set_xlabel("beam size (length penalty 0)")
    ax.set_ylabel("test error rate")
    ax.set_title("greedy vs beam-search decoding (test split)")
    ax.grid(True, alpha=0.3)
    if section.runs:
        ax.legend(fontsize=8)


def decoding_figure(section: DecodingSection) -> Figure:
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    draw_decoding(fig.add_subplot(), section)
    fig.tight_layout()
    return fig


def decoding_png(section: DecodingSection) -> bytes:
    if not section.ready:
        raise NotReady(section.missing or "the decoding results are not ready")
    return figure_png(decoding_figure(section))
