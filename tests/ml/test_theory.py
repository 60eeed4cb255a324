"""Tests for ml/theory.py against torch's own layers and direct loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ml.errors import InputError
from ml.theory import (
    cnn_param_count,
    conv2d_params,
    conv_as_matrix,
    conv_output_size,
    fc_replacement_param_count,
    linear_params,
    self_attention_1x1,
)

# ---------------------------------------------------------------- conv as a matrix


@pytest.mark.parametrize("seed", range(12))
def test_conv_as_matrix_matches_conv2d(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c_in, c_out = (int(n) for n in torch.randint(1, 4, (2,), generator=g))
    k_h, k_w = (int(n) for n in torch.randint(1, 4, (2,), generator=g))
    h, w = (int(n) for n in torch.randint(4, 9, (2,), generator=g))
    stride, padding = seed % 3 + 1, seed // 3 % 3
    weights = torch.randn(c_out, c_in, k_h, k_w, generator=g, dtype=torch.float64)
    x = torch.randn(2, c_in, h, w, generator=g, dtype=torch.float64)

    m = conv_as_matrix(weights, (c_in, h, w), stride=stride, padding=padding)
    expected = F.conv2d(x, weights, stride=stride, padding=padding)  # (2, C_out, H_out, W_out)
    got = x.reshape(2, -1) @ m.T  # (2, C_out*H_out*W_out)
    assert m.shape == (expected[0].numel(), c_in * h * w)
    assert torch.allclose(got, expected.reshape(2, -1), atol=1e-12)


def test_conv_as_matrix_shape_formula() -> None:
    weights = torch.randn(5, 3, 3, 2)
    m = conv_as_matrix(weights, (3, 11, 9), stride=2, padding=1)
    h_out = math.floor((11 + 2 - 3) / 2) + 1
    w_out = math.floor((9 + 2 - 2) / 2) + 1
    assert m.shape == (5 * h_out * w_out, 3 * 11 * 9)


def test_conv_as_matrix_hand_example() -> None:
    # 3x3 input, 2x2 kernel [[a, b], [c, d]], stride 1, no padding: 4 outputs, each row the kernel
    # laid over the flattened input at the window's position.
    a, b, c, d = 1.0, 2.0, 3.0, 4.0
    weights = torch.tensor([[[[a, b], [c, d]]]])
    expected = torch.tensor(
        [
            [a, b, 0, c, d, 0, 0, 0, 0],
            [0, a, b, 0, c, d, 0, 0, 0],
            [0, 0, 0, a, b, 0, c, d, 0],
            [0, 0, 0, 0, a, b, 0, c, d],
        ]
    )
    assert torch.equal(conv_as_matrix(weights, (1, 3, 3)), expected)


def test_conv_as_matrix_padding_hand_example() -> None:
    # 1x2 input, 3x3 kernel, padding 1: output is 1x2. The kernel's top and bottom rows (9s) and the
    # outer taps of its middle row [5, 6, 7] fall on padding, so y0 = 6 x0 + 7 x1 and y1 = 5 x0 + 6 x1.
    weights = torch.tensor([[[[9.0, 9.0, 9.0], [5.0, 6.0, 7.0], [9.0, 9.0, 9.0]]]])
    m = conv_as_matrix(weights, (1, 1, 2), padding=1)
    assert torch.equal(m, torch.tensor([[6.0, 7.0], [5.0, 6.0]]))


def test_conv_as_matrix_rejects_bad_shapes() -> None:
    with pytest.raises(InputError):
        conv_as_matrix(torch.randn(2, 3, 3, 3), (2, 8, 8))
    with pytest.raises(InputError):
        conv_as_matrix(torch.randn(2, 1, 5, 5), (1, 3, 3))


# ---------------------------------------------------------------- parameter counts


def test_layer_formulas_match_torch() -> None:
    for c_in, c_out, k_h, k_w in [(1, 8, 5, 5), (8, 16, 3, 3), (3, 7, 2, 4)]:
        for bias in (True, False):
            layer = nn.Conv2d(c_in, c_out, (k_h, k_w), bias=bias)
            assert conv2d_params(c_in, c_out, k_h, k_w, bias) == sum(p.numel() for p in layer.parameters())
    for n_in, n_out in [(576, 600), (3, 1)]:
        for bias in (True, False):
            layer = nn.Linear(n_in, n_out, bias=bias)
            assert linear_params(n_in, n_out, bias) == sum(p.numel() for p in layer.parameters())


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding"), [(28, 5, 1, 2), (14, 3, 1, 0), (9, 2, 2, 0)]
)
def test_conv_output_size_matches_torch(size: int, kernel: int, stride: int, padding: int) -> None:
    x, w = torch.zeros(1, 1, size, size), torch.zeros(1, 1, kernel, kernel)
    out = F.conv2d(x, w, stride=stride, padding=padding)  # (1, 1, H_out, W_out)
    assert conv_output_size(size, kernel, stride, padding) == out.shape[-1]


def _count(layers: list[nn.Module]) -> list[int]:
    return [sum(p.numel() for p in layer.parameters()) for layer in layers]


def _reference_cnn(n_classes: int) -> tuple[nn.Sequential, list[nn.Module]]:
    convs = [nn.Conv2d(1, 8, 5, padding=2), nn.Conv2d(8, 16, 3)]
    fcs = [nn.Linear(576, 600), nn.Linear(600, 120), nn.Linear(120, n_classes)]
    net = nn.Sequential(
        convs[0], nn.ReLU(), nn.MaxPool2d(2), convs[1], nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        fcs[0], nn.ReLU(), nn.Dropout(0.3), fcs[1], nn.ReLU(), fcs[2],
    )  # fmt: skip
    return net, convs + fcs


@pytest.mark.parametrize("n_classes", [10, 47])
def test_cnn_param_count_matches_torch(n_classes: int) -> None:
    net, layers = _reference_cnn(n_classes)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, n_classes)  # 576 really is the flattened size
    counts = cnn_param_count(n_classes)
    assert [counts[k] for k in ("conv1", "conv2", "fc1", "fc2", "fc3")] == _count(layers)
    assert counts["total"] == sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("n_classes", [10, 47])
def test_fc_replacement_param_count_matches_torch(n_classes: int) -> None:
    conv1, conv2 = nn.Conv2d(1, 8, 5, padding=2), nn.Conv2d(8, 16, 3)
    h1 = conv1(torch.zeros(1, 1, 28, 28))  # (1, 8, 28, 28)
    h2 = conv2(F.max_pool2d(h1, 2))  # (1, 16, 12, 12)
    fc_convs = [nn.Linear(28 * 28, h1.numel()), nn.Linear(h1.numel() // 4, h2.numel())]
    _, layers = _reference_cnn(n_classes)
    layers = fc_convs + layers[2:]
    net = nn.Sequential(
        nn.Flatten(), fc_convs[0], nn.ReLU(), nn.Unflatten(1, (8, 28, 28)), nn.MaxPool2d(2), nn.Flatten(),
        fc_convs[1], nn.ReLU(), nn.Unflatten(1, (16, 12, 12)), nn.MaxPool2d(2), nn.Flatten(), *layers[2:],
    )  # fmt: skip
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, n_classes)
    counts = fc_replacement_param_count(n_classes)
    assert [counts[k] for k in ("conv1", "conv2", "fc1", "fc2", "fc3")] == _count(layers)
    assert counts["total"] == sum(p.numel() for p in net.parameters())


def test_conv_network_is_far_smaller() -> None:
    conv, fc = cnn_param_count(), fc_replacement_param_count()
    assert conv["conv1"] + conv["conv2"] < 2000
    assert fc["conv1"] + fc["conv2"] > 1000 * (conv["conv1"] + conv["conv2"])
    assert fc["total"] > 20 * conv["total"]


# ---------------------------------------------------------------- self-attention


def _attention_loop(values: list[float]) -> tuple[list[list[float]], list[float]]:
    """Softmax of x_i * x_j over j, written out with math.exp (row max subtracted)."""
    p, out = [], []
    for xi in values:
        scores = [xi * xj for xj in values]
        top = max(scores)
        exps = [math.exp(s - top) for s in scores]
        row = [e / sum(exps) for e in exps]
        p.append(row)
        out.append(sum(pij * xj for pij, xj in zip(row, values, strict=True)))
    return p, out


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (4, 4), (3, 5)])
def test_self_attention_matches_loop(shape: tuple[int, int]) -> None:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float64) * 2
    p, out = self_attention_1x1(x)
    p_ref, out_ref = _attention_loop(x.reshape(-1).tolist())
    assert p.shape == (x.numel(), x.numel()) and out.shape == x.shape
    assert torch.allclose(p, torch.tensor(p_ref, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out, torch.tensor(out_ref, dtype=torch.float64).reshape(shape), atol=1e-12)
    assert torch.allclose(p.sum(dim=1), torch.ones(x.numel(), dtype=torch.float64))


def test_self_attention_is_stable_for_large_values() -> None:
    x = torch.tensor([[100.0, -100.0], [50.0, 99.0]])
    p, out = self_attention_1x1(x)
    assert not torch.isnan(p).any() and not torch.isnan(out).any()
    assert torch.allclose(p.sum(dim=1), torch.ones(4))
    p_ref, out_ref = _attention_loop(x.reshape(-1).tolist())
    assert torch.allclose(p, torch.tensor(p_ref), atol=1e-6)
    assert torch.allclose(out, torch.tensor(out_ref).reshape(2, 2), atol=1e-4)


def test_self_attention_accepts_integer_input() -> None:
    p, out = self_attention_1x1(torch.tensor([[1, 0], [2, 1]]))
    p_ref, out_ref = _attention_loop([1.0, 0.0, 2.0, 1.0])
    assert torch.allclose(p, torch.tensor(p_ref)) and torch.allclose(out.reshape(-1), torch.tensor(out_ref))


def test_parameter_count_formula_matches_the_projects_cnn():
    from ml.models.cnn import CNN

    for n_classes in (10, 47):
        assert cnn_param_count(n_classes)["total"] == sum(p.numel() for p in CNN(n_classes).parameters())
