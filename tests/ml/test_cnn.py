"""The assignment's CNN: shapes, parameter count, activations and a few real training steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ml.data.images import load_images
from ml.models.cnn import CNN


@pytest.fixture(scope="module")
def digits(shared_data: Path):
    return load_images("idx:mnist-8k", shared_data, seed=0).train


@pytest.mark.parametrize("n_classes", [10, 3])
def test_forward_shape_and_log_probs(n_classes: int) -> None:
    torch.manual_seed(0)
    model = CNN(n_classes=n_classes).eval()
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    assert out.shape == (5, n_classes)
    torch.testing.assert_close(out.exp().sum(dim=1), torch.ones(5))
    assert (out <= 0).all()


def test_parameter_count_matches_formula() -> None:
    n_classes = 7
    conv1 = 8 * (1 * 5 * 5) + 8
    conv2 = 16 * (8 * 3 * 3) + 16
    flat = 16 * 6 * 6  # 28 -pool-> 14 -conv3-> 12 -pool-> 6
    fc = (flat * 600 + 600) + (600 * 120 + 120) + (120 * n_classes + n_classes)
    model = CNN(n_classes=n_classes)
    assert sum(p.numel() for p in model.parameters()) == conv1 + conv2 + fc
    assert flat == 576


def test_activations_match_manual_convolutions() -> None:
    torch.manual_seed(1)
    model = CNN()
    x = torch.rand(3, 1, 28, 28)
    acts = model.activations(x)
    assert set(acts) == {"conv1", "conv2"}
    assert acts["conv1"].shape == (3, 8, 28, 28)
    assert acts["conv2"].shape == (3, 16, 12, 12)
    a1 = F.relu(F.conv2d(x, model.conv1.weight, model.conv1.bias, padding=2))
    a2 = F.relu(F.conv2d(F.max_pool2d(a1, 2), model.conv2.weight, model.conv2.bias))
    torch.testing.assert_close(acts["conv1"], a1)
    torch.testing.assert_close(acts["conv2"], a2)
    assert (acts["conv1"] >= 0).all() and (acts["conv2"] > 0).any()


def test_forward_agrees_with_activations_path() -> None:
    """In eval mode the logits equal the linear head applied to pooled conv2 activations."""
    torch.manual_seed(2)
    model = CNN().eval()
    x = torch.rand(4, 1, 28, 28)
    pooled = F.max_pool2d(model.activations(x)["conv2"], 2).flatten(1)  # (4, 576)
    h = F.relu(model.fc2(F.relu(model.fc1(pooled))))
    torch.testing.assert_close(model(x), F.log_softmax(model.out(h), dim=-1))


def test_dropout_only_in_training() -> None:
    torch.manual_seed(3)
    model = CNN(dropout=0.5)
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_a_few_adam_steps_reduce_loss_on_real_digits(digits) -> None:
    torch.manual_seed(4)
    model = CNN()
    x, y = digits.images[:64], digits.labels[:64]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.eval()
    with torch.no_grad():
        before = F.nll_loss(model(x), y).item()
    model.train()
    for _ in range(15):
        opt.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        opt.step()
    assert model.conv1.weight.grad is not None and model.conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        after = F.nll_loss(model(x), y).item()
    assert after < 0.7 * before
