"""PairRecipe's training batches (slices of a random permutation, as the assignment's) and MaskDropout's draws."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ml.config import TrainConfig
from ml.data.text import PAD
from ml.kinds import get_kind
from ml.models.seq2seq import MaskDropout
from ml.recipes import PairRecipe


@pytest.fixture(scope="module")
def task(shared_data: Path) -> PairRecipe:
    config = TrainConfig.for_model("seq2seq", "pairs:spa-eng", limit=3000)
    return get_kind("seq2seq").recipe(config, shared_data, torch.device("cpu"))


def _rows(batch: tuple[torch.Tensor, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    src, src_len, _, tgt_out = batch
    pairs = zip(src, src_len, tgt_out, strict=True)
    return [(tuple(s[:n].tolist()), tuple(t[t != PAD].tolist())) for s, n, t in pairs]


def test_each_pair_once_in_slices_of_one_random_permutation(task: PairRecipe) -> None:
    """The assignment's batches: a seeded permutation cut into batches, each trimmed to its longest row."""
    batches = list(task.batches(64, torch.Generator().manual_seed(0)))
    order = torch.randperm(task.n_train, generator=torch.Generator().manual_seed(0))  # (N,)
    assert [len(b[0]) for b in batches] == [64] * (task.n_train // 64) + [task.n_train % 64]
    for idx, (src, src_len, tgt_in, tgt_out) in zip(order.split(64), batches, strict=True):
        assert torch.equal(src_len, task.src_len[idx])  # exactly these rows, in this order
        assert src.size(1) == int(src_len.max())  # padded to this batch's longest source only
        assert torch.equal(src, task.src[idx, : src.size(1)])
        assert torch.equal(tgt_in, task.tgt_in[idx, : tgt_in.size(1)])
        assert torch.equal(tgt_out, task.tgt_out[idx, : tgt_out.size(1)])
        assert int((tgt_out != PAD).sum(1).max()) == tgt_out.size(1)  # and its longest target (+EOS)
    rows = [r for b in batches for r in _rows(b)]
    expected = [(tuple(task.src[i, : task.src_len[i]].tolist()), tuple(t[t != PAD].tolist()))
                for i, t in enumerate(task.tgt_out)]
    assert sorted(rows) == sorted(expected)


def test_batches_mix_lengths_as_shuffled_pairs_do(task: PairRecipe) -> None:
    """Not bucketed: most batches hold several source lengths (the encoder gets padded batches)."""
    batches = list(task.batches(64, torch.Generator().manual_seed(1)))
    mixed = [int(src_len.unique().numel()) > 1 for _, src_len, _, _ in batches]
    assert sum(mixed) >= 0.9 * len(batches)
    assert sum(bool((src_len < src.size(1)).any()) for src, src_len, _, _ in batches) >= 0.9 * len(batches)


def test_batches_change_between_epochs_and_are_reproducible(task: PairRecipe) -> None:
    gen = torch.Generator().manual_seed(3)
    first, second = list(task.batches(64, gen)), list(task.batches(64, gen))
    assert [_rows(b) for b in first] != [_rows(b) for b in second]
    again = list(task.batches(64, torch.Generator().manual_seed(3)))
    assert [_rows(b) for b in again] == [_rows(b) for b in first]  # seeded: reproducible


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("shape", [(7,), (3, 5, 7), (64, 19, 128)])
def test_mask_dropout_rate_scale_and_gradient(p: float, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    drop = MaskDropout(p)
    x = torch.rand(shape) + 0.5  # never 0 itself
    x.requires_grad_(True)
    y = drop(x)
    kept = y != 0
    assert y.shape == x.shape
    torch.testing.assert_close(y[kept], x[kept] / (1 - p), rtol=1e-4, atol=0)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p), rtol=1e-4, atol=0)
    # the drop rate over many draws (independent across calls and positions)
    big = MaskDropout(p)(torch.ones(400_003))
    assert abs((big == 0).float().mean().item() - p) < 0.005
    neighbours = (big[:400_000] == 0).view(-1, 4).float()  # four elements share one 64-bit draw
    assert abs(torch.corrcoef(neighbours.T)[0, 1:].abs().max().item()) < 0.01
    assert not torch.equal(MaskDropout(p)(torch.ones(1000)), MaskDropout(p)(torch.ones(1000)))


def test_mask_dropout_keeps_dtype_and_is_identity_when_off() -> None:
    x = torch.ones(1000, dtype=torch.bfloat16)
    assert MaskDropout(0.3)(x).dtype == torch.bfloat16
    assert torch.equal(MaskDropout(0.3).eval()(x), x)
    assert torch.equal(MaskDropout(0.0)(x), x)
