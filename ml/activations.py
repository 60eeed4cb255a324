"""Activation maps of the CNN's conv layers, as arrays and as one PNG grid.

Drawing uses matplotlib's object API (Figure + Agg canvas), never pyplot, so it is safe in threads.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from ml.errors import InputError

LAYERS = ("conv1", "conv2")
GRID_COLUMNS = 4


def _as_batch(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(1, 28, 28) or (28, 28) -> (1, 1, 28, 28) float32."""
    t = torch.as_tensor(image, dtype=torch.float32).detach().cpu()
    if t.dim() == 2:
        t = t.unsqueeze(0)  # (1, H, W)
    if t.dim() != 3 or t.shape[0] != 1:
        raise InputError(f"expected one image of shape (1, 28, 28) or (28, 28), got {tuple(t.shape)}")
    return t.unsqueeze(0)  # (1, 1, H, W)


def activation_maps(model: nn.Module, image: torch.Tensor | np.ndarray, layer: str) -> np.ndarray:
    """Feature maps (C, H, W) of `layer` (after ReLU, before pooling) for one image."""
    if layer not in LAYERS:
        raise InputError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    x = _as_batch(image)  # (1, 1, 28, 28)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            maps = model.activations(x.to(device))[layer]  # (1, C, H, W)
    finally:
        model.train(was_training)
    return maps[0].cpu().numpy()  # (C, H, W)


def _grid_shape(n_maps: int) -> tuple[int, int]:
    """(rows, cols): 8 -> 2x4, 16 -> 4x4; wider grids for more maps."""
    cols = GRID_COLUMNS if n_maps <= GRID_COLUMNS**2 else math.ceil(math.sqrt(n_maps))
    cols = min(cols, max(n_maps, 1))
    return math.ceil(n_maps / cols), cols


def activation_png(
    image: torch.Tensor | np.ndarray,
    maps: np.ndarray,
    layer: str,
    title: str | None = None,
    dpi: int = 100,
) -> bytes:
    """PNG: the input image on the left, a grid of the maps (C, H, W) on the right, each titled "ch i"."""
    picture = _as_batch(image)[0, 0].detach().cpu().numpy()  # (H, W)
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] < 1:
        raise InputError(f"expected maps of shape (C, H, W), got {maps.shape}")
    rows, cols = _grid_shape(maps.shape[0])
    fig = Figure(figsize=(2.0 + 1.6 * cols, 0.6 + 1.6 * max(rows, 2)), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(rows, cols + 2, width_ratios=[2.0, 0.15] + [1.0] * cols)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0)
    ax.set_title("input")
    ax.axis("off")
    top = float(maps.max()) if maps.max() > 0 else 1.0  # one colour scale for all maps of the layer
    for c in range(maps.shape[0]):
        ax = fig.add_subplot(grid[c // cols, 2 + c % cols])
        ax.imshow(maps[c], cmap="viridis", vmin=0.0, vmax=top)
        ax.set_title(f"ch {c}", fontsize=9)
        ax.axis("off")
    fig.suptitle(title or f"{layer}: {maps.shape[0]} maps of {maps.shape[1]}x{maps.shape[2]}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
