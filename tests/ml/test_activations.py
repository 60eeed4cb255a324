"""Activation maps as arrays and as a PNG grid, for a real digit."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ml.activations import activation_maps, activation_png
from ml.data.idx import read_idx
from ml.errors import InputError
from ml.models.cnn import CNN


@pytest.fixture(scope="module")
def digit(shared_data: Path) -> torch.Tensor:
    images = read_idx(shared_data / "mnist-8k" / "mnist8k-images-idx3-ubyte.gz")
    return torch.from_numpy(images[11]).float().div(256).unsqueeze(0)  # (1, 28, 28)


@pytest.fixture()
def model() -> CNN:
    torch.manual_seed(0)
    return CNN()


@pytest.mark.parametrize(("layer", "shape"), [("conv1", (8, 28, 28)), ("conv2", (16, 12, 12))])
def test_maps_match_model_activations(model: CNN, digit: torch.Tensor, layer: str, shape: tuple) -> None:
    maps = activation_maps(model, digit, layer)
    assert isinstance(maps, np.ndarray) and maps.shape == shape
    with torch.no_grad():
        expected = model.activations(digit.unsqueeze(0))[layer][0].numpy()
    np.testing.assert_allclose(maps, expected, rtol=1e-6, atol=1e-6)
    # (28, 28) input gives the same maps
    np.testing.assert_allclose(activation_maps(model, digit[0], layer), maps, rtol=1e-6, atol=1e-6)


def test_conv1_maps_equal_a_manual_convolution(model: CNN, digit: torch.Tensor) -> None:
    maps = activation_maps(model, digit, "conv1")
    manual = F.relu(F.conv2d(digit.unsqueeze(0), model.conv1.weight, model.conv1.bias, padding=2))[0]
    np.testing.assert_allclose(maps, manual.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert maps.min() >= 0


def test_model_mode_is_restored_and_no_grad(model: CNN, digit: torch.Tensor) -> None:
    model.train()
    maps = activation_maps(model, digit, "conv2")
    assert model.training
    assert maps.dtype == np.float32
    assert torch.is_grad_enabled()  # the no-grad block does not leak
    model.eval()
    activation_maps(model, digit, "conv2")
    assert not model.training


@pytest.mark.parametrize("layer", ["fc1", "conv3", ""])
def test_invalid_layer(model: CNN, digit: torch.Tensor, layer: str) -> None:
    with pytest.raises(InputError, match="conv1, conv2"):
        activation_maps(model, digit, layer)


def test_invalid_image_shape(model: CNN) -> None:
    with pytest.raises(InputError, match="one image"):
        activation_maps(model, torch.zeros(2, 1, 28, 28), "conv1")


@pytest.mark.parametrize(("layer", "grid"), [("conv1", (2, 4)), ("conv2", (4, 4))])
def test_png_grid(model: CNN, digit: torch.Tensor, layer: str, grid: tuple[int, int]) -> None:
    maps = activation_maps(model, digit, layer)
    data = activation_png(digit, maps, layer, title=f"digit, {layer}")
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(data))
    im.load()
    width, height = im.size
    rows, cols = grid
    assert 300 <= width <= 1500 and 200 <= height <= 1200
    assert width > height  # the input on the left, the grid to its right
    # more rows of maps make a taller picture
    if rows == 4:
        small = Image.open(io.BytesIO(activation_png(digit, maps[:8], layer)))
        assert height > small.size[1]
    # the picture is not blank: several distinct colours (viridis maps, grey input, titles)
    assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50


def test_png_rejects_bad_maps(digit: torch.Tensor) -> None:
    with pytest.raises(InputError, match=r"\(C, H, W\)"):
        activation_png(digit, np.zeros((28, 28)), "conv1")
