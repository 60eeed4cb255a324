"""The benchmarks' reference loops compute what inkwell computes, and their plumbing runs.

No timing is asserted here: the speed targets are measured by hand (see docs/benchmarks.md).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from benchmarks import cnn_epoch, common, decoding, seq2seq_training
from benchmarks.seq2seq_training import random_batches, reference_logits
from ml.config import TrainConfig
from ml.data.text import EOS, PAD, SOS, PairSplits, Vocab, load_pairs
from ml.decoding import translate
from ml.kinds import get_kind
from ml.models.seq2seq import Seq2Seq
from ml.recipes import PairRecipe
from ml.training import fit
from tests.ml.small_seq2seq import train_small_seq2seq


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> object:
    """One intra-op thread: far faster than two on a 2-core machine that others share."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair_task(shared_data: Path) -> PairRecipe:
    config = TrainConfig.for_model("seq2seq", "pairs:spa-eng", attention=True, limit=300, hidden_size=32)
    return get_kind("seq2seq").recipe(config, shared_data, torch.device("cpu"))


@pytest.fixture(scope="module")
def data(shared_data: Path) -> PairSplits:
    return load_pairs("pairs:spa-eng", shared_data, limit=512)


@pytest.fixture(scope="module")
def trained(data: PairSplits) -> Seq2Seq:
    return train_small_seq2seq(data, hidden_size=48, steps=60)


def test_random_batches_cover_each_pair_once_trimmed_to_their_longest(pair_task: PairRecipe) -> None:
    batches = list(random_batches(pair_task, 64, torch.Generator().manual_seed(5)))
    assert [len(b[0]) for b in batches] == [64] * (300 // 64) + [300 % 64]
    rows = []
    for src, src_len, tgt_in, tgt_out in batches:
        assert src.size(1) == int(src_len.max())  # padded to this batch's longest source only
        assert (tgt_out != PAD).sum(1).max() == tgt_in.size(1)  # and its longest target (+EOS)
        for s, n, t in zip(src, src_len, tgt_out, strict=True):
            rows.append((tuple(s[:n].tolist()), tuple(t[t != PAD].tolist())))
    expected = [(tuple(pair_task.src[i, : pair_task.src_len[i]].tolist()),
                 tuple(pair_task.tgt_out[i][pair_task.tgt_out[i] != PAD].tolist())) for i in range(300)]
    assert sorted(rows) == sorted(expected)
    assert rows != expected  # shuffled, not in file order


@pytest.mark.parametrize("attention", [True, False])
def test_stepping_reference_matches_whole_sequence_forward(pair_task: PairRecipe, attention: bool) -> None:
    torch.manual_seed(1)
    vocab_sizes = len(pair_task.src_vocab), len(pair_task.tgt_vocab)
    model = Seq2Seq(*vocab_sizes, hidden_size=32, attention=attention).eval()
    src, src_len, tgt_in, tgt_out = next(random_batches(pair_task, 48, torch.Generator().manual_seed(2)))
    assert bool((src_len < src.size(1)).any())  # padded: the reference packs it
    ref = reference_logits(model, src, src_len, tgt_in)  # (B, T, V)
    ref_loss = F.cross_entropy(ref.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
    ref_grads = torch.autograd.grad(ref_loss, list(model.parameters()))
    out = model(src, src_len, tgt_in)  # (B, T, V)
    loss = F.cross_entropy(out.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert ref.shape == out.shape == (48, tgt_in.size(1), len(pair_task.tgt_vocab))
    torch.testing.assert_close(ref, out, atol=1e-5, rtol=1e-4)
    for a, b in zip(ref_grads, grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


def test_reference_dropout_follows_training_mode(pair_task: PairRecipe) -> None:
    torch.manual_seed(1)
    model = Seq2Seq(len(pair_task.src_vocab), len(pair_task.tgt_vocab), hidden_size=32, dropout=0.5).train()
    src, src_len, tgt_in, _ = next(random_batches(pair_task, 8, torch.Generator().manual_seed(2)))
    a, b = reference_logits(model, src, src_len, tgt_in), reference_logits(model, src, src_len, tgt_in)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(reference_logits(model, src, src_len, tgt_in), model(src, src_len, tgt_in))


def test_reference_greedy_and_beam_agree_with_batched_search(trained: Seq2Seq, data: PairSplits) -> None:
    texts = [s for s, _ in data.val[:24]]
    batched = translate(trained, data.src_vocab, data.tgt_vocab, texts, "greedy", max_length=25)
    greedy = decoding.reference_greedy(trained, data.src_vocab, data.tgt_vocab, texts, 25)
    assert greedy == [h[0].text for h in batched]
    beams = translate(trained, data.src_vocab, data.tgt_vocab, texts, "beam", beam_size=4, max_length=25)
    ref = decoding.reference_beam(trained, data.src_vocab, data.tgt_vocab, texts, beam_size=4, max_length=25)
    assert [t for t, _ in ref] == [h[0].text for h in beams]
    for (_, lp), hyps in zip(ref, beams, strict=True):
        assert lp == pytest.approx(hyps[0].log_prob, abs=1e-4)
    # beam search finds at least the greedy path's probability
    assert sum(lp for _, lp in ref) >= sum(h[0].log_prob for h in batched) - 1e-4


def test_reference_beam_of_one_is_greedy(trained: Seq2Seq, data: PairSplits) -> None:
    texts = [s for s, _ in data.val[24:36]]
    greedy = decoding.reference_greedy(trained, data.src_vocab, data.tgt_vocab, texts, 25)
    beam_of_one = decoding.reference_beam(trained, data.src_vocab, data.tgt_vocab, texts, 1, 25)
    assert [t for t, _ in beam_of_one] == greedy


class MarkovStub:
    """A stand-in model whose next-token logits depend only on the step and the previous token (a table)."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # (steps, V, V)

    def eval(self) -> MarkovStub:
        return self

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(state=0)

    def decode(self, prev: torch.Tensor, state: int, encoded: object) -> tuple[torch.Tensor, int, None]:
        return self.table[state, int(prev[0, 0])].view(1, 1, -1), state + 1, None  # (1, 1, V)


def _exhaustive_best(log_probs: torch.Tensor, symbols: list[int], max_length: int) -> tuple[list[int], float]:
    """The most likely output: a sequence ending at its first EOS, or any sequence of max_length tokens."""
    best: tuple[list[int], float] = ([], float("-inf"))
    for n in range(1, max_length + 1):
        for seq in itertools.product(symbols, repeat=n):
            if EOS in seq[:-1] or (n < max_length and seq[-1] != EOS):
                continue
            prev, total = SOS, 0.0
            for t, tok in enumerate(seq):
                total += float(log_probs[t, prev, tok])
                prev = tok
            if total > best[1]:
                best = (list(seq), total)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_reference_search_on_a_markov_table_matches_exhaustive_search(seed: int) -> None:
    vocab = Vocab(["<pad>", "<sos>", "<eos>", "<unk>", "a", "b", "c"])
    gen = torch.Generator().manual_seed(seed)
    table = 2.0 * torch.randn(4, 7, 7, generator=gen)  # (steps, prev, next)
    table[:, :, [PAD, SOS]] = -1e9  # never emitted
    stub, log_probs = MarkovStub(table), torch.log_softmax(table, dim=-1)
    symbols = [EOS, 3, 4, 5, 6]
    tokens, best_lp = _exhaustive_best(log_probs, symbols, max_length=4)
    # a beam wide enough to keep every live prefix is exact
    [(text, lp)] = decoding.reference_beam(stub, vocab, vocab, ["ab"], beam_size=200, max_length=4)  # type: ignore[arg-type]
    assert text == vocab.decode(tokens)
    assert lp == pytest.approx(best_lp, abs=1e-5)
    # greedy follows the argmax chain
    prev, chain = SOS, []
    for t in range(4):
        prev = int(log_probs[t, prev].argmax())
        chain.append(prev)
        if prev == EOS:
            break
    assert decoding.reference_greedy(stub, vocab, vocab, ["ab"], 4) == [vocab.decode(chain)]  # type: ignore[arg-type]


def test_cnn_paths_feed_every_training_image_once(shared_data: Path) -> None:
    task = get_kind("cnn").recipe(TrainConfig.for_model("cnn", "idx:mnist-8k"), shared_data, torch.device("cpu"))
    images, labels = task.splits["train"]
    loader = cnn_epoch.reference_loader(images, labels, 8, seed=3)
    for batches in (list(loader), list(task.batches(8, torch.Generator().manual_seed(3)))):
        assert len(batches) == len(labels) // 8 == 800
        assert all(x.shape == (8, 1, 28, 28) for x, _ in batches)
        assert torch.equal(torch.cat([y for _, y in batches]).sort().values, labels.sort().values)
        assert torch.cat([x for x, _ in batches]).sum().item() == pytest.approx(images.sum().item(), rel=1e-5)
    model = task.build_model()
    loss, steps = cnn_epoch.train_epoch(model, batches[:20], lr=0.0005)
    assert steps == 20 and 0 < loss < 5


def test_interleaved_epochs_train_each_path_as_a_plain_epoch_would(shared_data: Path) -> None:
    task = get_kind("cnn").recipe(TrainConfig.for_model("cnn", "idx:mnist-8k", dropout=0.0, limit=400), shared_data,
                     torch.device("cpu"))
    torch.manual_seed(0)
    initial = task.build_model().state_dict()

    def fresh() -> torch.nn.Module:
        model = task.build_model()
        model.load_state_dict(initial)
        return model

    data = {"a": list(task.batches(8, torch.Generator().manual_seed(1))),  # 50 batches
            "b": list(task.batches(16, torch.Generator().manual_seed(2)))[:13]}
    woven = cnn_epoch.interleaved_epochs({k: (lambda v=v: v) for k, v in data.items()}, fresh, 0.001, chunk=7)
    for name, batches in data.items():
        seconds, loss, steps = woven[name]
        plain_loss, plain_steps = cnn_epoch.train_epoch(fresh(), batches, 0.001)
        assert steps == plain_steps == len(batches) and seconds > 0
        assert loss == pytest.approx(plain_loss, rel=1e-5)


def test_seq2seq_benchmark_runs_and_reports(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = seq2seq_training.main(["--data-dir", str(shared_data), "--repeats", "1", "--max-batches", "2"])
    assert {p["batches"] for p in result["last_pass"].values()} == {2}
    assert result["setup"]["full_epochs"] is False and result["setup"]["train_pairs"] > 10_000
    r = result["ratios"]
    ref, ink = result["times"]["reference_stepping"]["median_s"], result["times"]["inkwell"]["median_s"]
    assert r["reference_over_inkwell"] == pytest.approx(ref / ink, rel=1e-2)
    product = 1.0
    for part in r["breakdown"].values():
        product *= part
    assert product == pytest.approx(r["reference_over_inkwell"], rel=1e-2)
    assert result["targets"]["met"] == (r["reference_over_inkwell"] >= 3.0)
    assert '"benchmark": "seq2seq_training_epoch"' in capsys.readouterr().out


def test_decoding_benchmark_runs_and_reports(shared_data: Path, tmp_path: Path) -> None:
    config = TrainConfig.for_model("seq2seq", "pairs:spa-eng", attention=True, epochs=1, limit=200,
                                   hidden_size=32)
    fit(config, data_dir=shared_data, out_dir=tmp_path)
    result = decoding.main(["--data-dir", str(shared_data), "--checkpoint", str(tmp_path / "checkpoint.pt"),
                            "--sentences", "12", "--repeats", "1", "--max-length", "15"])
    assert result["setup"]["sentences"] == 12 and result["setup"]["model"]["source"] == "checkpoint"
    times = {k: v["median_s"] for k, v in result["times"].items()}
    assert result["ratios"]["greedy_reference_over_batched"] == pytest.approx(
        times["reference_greedy"] / times["batched_greedy"], rel=1e-2)
    assert 0 <= result["agreement_percent"]["greedy_same_text"] <= 100
    assert result["targets"]["beam_met"] == (result["ratios"]["beam_reference_over_batched"] >= 10.0)


def test_machine_info_and_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    info = common.machine_info()
    assert info["torch_threads"] == torch.get_num_threads() and info["cores"] >= 1 and info["cpu_model"]
    monkeypatch.setenv("INKWELL_TEST_DATA", str(tmp_path))
    assert common.default_data_dir() == tmp_path.resolve()
    assert common.ratio(6.0, 2.0) == 3.0 and common.summary([3.0, 1.0, 2.0])["median_s"] == 2.0
