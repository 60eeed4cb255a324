"""PairRecipe's training batches (one source length each, similar target lengths) and MaskDropout's draws."""

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


def test_each_pair_once_one_source_length_per_batch(task: PairRecipe) -> None:
    batches = list(task.batches(64, torch.Generator().manual_seed(0)))
    rows = [r for b in batches for r in _rows(b)]
    expected = [(tuple(task.src[i, : task.src_len[i]].tolist()), tuple(t[t != PAD].tolist()))
                for i, t in enumerate(task.tgt_out)]
    assert sorted(rows) == sorted(expected)
    for src, src_len, tgt_in, tgt_out in batches:
        assert bool((src_len == src.size(1)).all())  # no source padding
        assert tgt_in.shape == tgt_out.shape and int((tgt_out != PAD).sum(1).max()) == tgt_out.size(1)
        assert len(src) <= 64


def test_batches_of_one_source_length_split_the_target_lengths_in_ranges(task: PairRecipe) -> None:
    by_source: dict[int, list[tuple[int, int]]] = {}
    for src, _, _, tgt_out in task.batches(64, torch.Generator().manual_seed(1)):
        lengths = (tgt_out != PAD).sum(1)  # (B,)
        by_source.setdefault(src.size(1), []).append((int(lengths.min()), int(lengths.max())))
    for ranges in by_source.values():
        ranges.sort()
        for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False):
            assert hi <= lo  # sorted by target length before splitting: ranges do not interleave
    # fewer decoder steps than batches cut from the same source-length groups without that sort
    steps = sum(len(b[0]) * b[2].size(1) for b in task.batches(64, torch.Generator().manual_seed(1)))
    unsorted = 0
    for length in task.src_len.unique().tolist():
        idx = torch.nonzero(task.src_len == length).flatten()
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(2))]
        unsorted += sum(len(part) * int(task.tgt_len[part].max()) for part in idx.split(64))
    assert steps < 0.95 * unsorted


def test_batches_change_between_epochs_and_come_in_random_length_order(task: PairRecipe) -> None:
    gen = torch.Generator().manual_seed(3)
    first, second = list(task.batches(64, gen)), list(task.batches(64, gen))
    assert [_rows(b) for b in first] != [_rows(b) for b in second]
    lengths = [b[0].size(1) for b in first]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)
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
