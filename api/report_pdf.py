"""The whole report as one PDF (matplotlib's PdfPages): one page per section, in api.report_schemas.SECTIONS
order; a section that is not ready is a page saying which request produces it."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from api.report_images import draw_decoding
from api.report_schemas import SECTIONS, AttentionSection, CurvesSection, DecodingSection, Report, SweepSection
from api.report_schemas import TheorySection as Theory
from ml.plots import loss_curve_figure, validation_curve_figure

PAGE = (11.69, 8.27)  # A4 landscape, inches
TITLES = {"sweep": "1. CNN learning-rate sweep", "curves": "2. Training curves of the best rate",
          "activations": "3. conv1 activation maps", "attention": "4. seq2seq: without vs with attention",
          "decoding": "5. Greedy vs beam-search decoding", "theory": "6. Theory"}


def _page(title: str) -> Figure:
    fig = Figure(figsize=PAGE)
    fig.suptitle(title, fontsize=16, x=0.03, ha="left")
    return fig


def _fmt(value: float | int | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _text(fig: Figure, lines: Sequence[str], top: float = 0.88) -> None:
    fig.text(0.05, top, "\n".join(lines), va="top", ha="left", fontsize=11, family="monospace", wrap=True)


def _table(fig: Figure, rect: tuple[float, float, float, float], header: list[str], rows: list[list[str]]) -> None:
    """A table filling `rect` (left, bottom, width, height in figure fractions)."""
    ax = fig.add_axes(rect)
    ax.axis("off")
    table = ax.table(cellText=rows or [["–"] * len(header)], colLabels=header, bbox=(0, 0, 1, 1), cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)


def _sweep(fig: Figure, s: SweepSection) -> None:
    rows = [[_fmt(r.learning_rate), r.run_id[:12], r.status, f"{r.epochs_done}/{r.epochs_total}",
             _fmt(r.final_train_loss), _fmt(r.best_val_accuracy), _fmt(r.best_epoch), _fmt(r.test_accuracy)]
            for r in s.rows]
    _text(fig, [f"sweep {s.sweep_id} on {s.dataset}", f"best rate: {_fmt(s.best_rate)} (run {s.best_run_id})"])
    height = min(0.7, 0.05 * (len(rows) + 1))
    _table(fig, (0.05, 0.75 - height, 0.9, height), ["learning rate", "run", "status", "epochs", "final train loss",
                                          "best val accuracy", "best epoch", "test accuracy"], rows)


def _curves(fig: Figure, s: CurvesSection) -> None:
    history = [{"epoch": e.epoch, "train_loss": e.train_loss, "val_accuracy": e.val_accuracy} for e in s.epochs]
    for i, made in enumerate((loss_curve_figure(history), validation_curve_figure(history, "accuracy"))):
        _paste(fig, (0.05 + 0.47 * i, 0.1, 0.44, 0.72), _rendered(made))
    _text(fig, [f"run {s.run_id}, learning rate {_fmt(s.learning_rate)}"], top=0.9)


def _rendered(made: Figure) -> np.ndarray:
    buffer = io.BytesIO()
    made.savefig(buffer, format="png", dpi=110)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def _paste(fig: Figure, rect: tuple[float, float, float, float], picture: np.ndarray) -> None:
    ax = fig.add_axes(rect)
    ax.imshow(picture)
    ax.axis("off")


def _attention(fig: Figure, s: AttentionSection) -> None:
    ax = fig.add_axes((0.07, 0.38, 0.86, 0.48))
    rows = []
    for label, run in (("without attention", s.without_attention), ("with attention", s.with_attention)):
        if run is None:
            continue
        ax.plot([e.epoch for e in run.curve], [e.val_error_rate for e in run.curve], marker=".", label=label)
        rows.append([label, run.run_id[:12], run.dataset, _fmt(run.best_val_error_rate), _fmt(run.best_epoch),
                     _fmt(run.test_error_rate)])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error rate")
    ax.grid(True, alpha=0.3)
    ax.legend()
    _table(fig, (0.05, 0.1, 0.9, 0.15), ["model", "run", "dataset", "best val error rate", "best epoch",
                                           "test error rate"], rows)


def _decoding(fig: Figure, s: DecodingSection) -> None:
    draw_decoding(fig.add_axes((0.07, 0.5, 0.86, 0.38)), s)
    header = ["decoding", *(f"{'with' if r.attention else 'without'} attention" for r in s.runs)]
    rows = [["greedy", *(_fmt(c.error_rate) for c in s.greedy)]]
    rows += [[f"beam {row.beam_size}", *(_fmt(c.error_rate) for c in row.cells)] for row in s.beam]
    _table(fig, (0.25, 0.03, 0.5, 0.38), header, rows)


def _theory(fig: Figure, s: Theory) -> None:
    ex, c1 = s.conv_example, s.cnn_conv1
    lines = [
        f"Convolution as a matrix: input {tuple(ex.input_shape)}, kernel {tuple(ex.kernel_shape)} [[a, b], [c, d]], "
        f"stride {ex.stride}, padding {ex.padding}",
        f"  matrix {ex.matrix_shape[0]} x {ex.matrix_shape[1]}, {ex.nonzeros} non-zeros, sparsity {ex.sparsity:.3f}",
        *("    [" + " ".join(f"{v:>2}" for v in row) + " ]" for row in ex.matrix or []),
        f"The CNN's conv1 (kernel {tuple(c1.kernel_shape)}, padding {c1.padding}, input {tuple(c1.input_shape)}):",
        f"  matrix {c1.matrix_shape[0]} x {c1.matrix_shape[1]}, {c1.nonzeros} non-zeros, sparsity {c1.sparsity:.4f}",
        "",
        "Parameters          " + "".join(f"{k:>12}" for k in s.cnn_parameters),
        "  CNN               " + "".join(f"{v:>12,}" for v in s.cnn_parameters.values()),
        "  fully connected   " + "".join(f"{v:>12,}" for v in s.fc_parameters.values()),
        f"  the fully-connected replacement needs {s.ratio:.1f}x the parameters",
    ]
    _text(fig, lines)


DRAW: dict[str, Callable[[Figure, object], None]] = {
    "sweep": _sweep, "curves": _curves, "attention": _attention, "decoding": _decoding,
    "theory": _theory,  # type: ignore[dict-item]
}


def report_pdf(report: Report, activations: bytes | None, activations_note: str | None) -> bytes:
    """The PDF; `activations` is the activation-maps PNG (None: `activations_note` says why there is none)."""
    buffer = io.BytesIO()
    with PdfPages(buffer, metadata={"Title": "inkwell: the assignment's report"}) as pdf:
        for name in SECTIONS:
            section = getattr(report, name)
            fig = _page(TITLES[name])
            if not section.ready:
                _text(fig, ["Not ready yet. What produces it:", "", section.missing or "?", "",
                            f"(or {report.reproduce}: queues everything the report still needs)"])
            elif name == "activations":
                if activations is not None:
                    _paste(fig, (0.05, 0.05, 0.9, 0.82), np.asarray(Image.open(io.BytesIO(activations)).convert("RGB")))
                else:
                    _text(fig, ["The activation maps cannot be drawn:", activations_note or "?"])
            else:
                DRAW[name](fig, section)
            pdf.savefig(fig)
    return buffer.getvalue()
