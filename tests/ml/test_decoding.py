"""Greedy decoding, beam search and translate(), checked against teacher forcing and exhaustive search."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml.data.text import EOS, PAD, SOS, PairSplits, Vocab, load_pairs, normalize, pad_batch
from ml.decoding import Hypothesis, beam_search, greedy_decode, translate
from ml.errors import InputError
from ml.models.seq2seq import Seq2Seq
from tests.ml.small_seq2seq import train_small_seq2seq


@pytest.fixture(scope="module")
def data(shared_data: Path) -> PairSplits:
    return load_pairs("pairs:spa-eng", shared_data, limit=512)


@pytest.fixture(scope="module")
def trained(data: PairSplits) -> Seq2Seq:
    return train_small_seq2seq(data, hidden_size=64, steps=100)


@pytest.fixture(scope="module")
def untrained(data: PairSplits) -> Seq2Seq:
    torch.manual_seed(3)
    return Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), hidden_size=32, attention=False).eval()


@pytest.fixture(scope="module")
def sources(data: PairSplits) -> list[str]:
    return [s for s, _ in data.val[:40]]


def teacher_forced(
    model: Seq2Seq, vocab: Vocab, source: str, tokens: list[int]
) -> tuple[list[float], np.ndarray]:
    """Per-step log-probs of `tokens` and the attention, from one forward pass on the sentence alone."""
    src, src_len = pad_batch([vocab.encode(source)])
    tgt_in = torch.tensor([[SOS, *tokens[:-1]]])
    with torch.no_grad():
        enc = model.encode(src, src_len)
        logits, _, attn = model.decode(tgt_in, enc.state, enc)  # (1, T, V)
    logp = F.log_softmax(logits[0].double(), dim=-1)  # (T, V)
    steps = [logp[t, tok].item() for t, tok in enumerate(tokens)]
    return steps, None if attn is None else attn[0].numpy()


def assert_same(a: list[list[Hypothesis]], b: list[list[Hypothesis]]) -> None:
    assert len(a) == len(b)
    for ha, hb in zip(a, b, strict=True):
        assert [h.text for h in ha] == [h.text for h in hb]
        assert [h.tokens for h in ha] == [h.tokens for h in hb]
        assert np.allclose([h.log_prob for h in ha], [h.log_prob for h in hb], atol=1e-4)


def test_beam_of_one_equals_greedy(trained: Seq2Seq, data: PairSplits) -> None:
    texts = [s for s, _ in data.val[:64]]
    greedy = translate(trained, data.src_vocab, data.tgt_vocab, texts, max_length=30)
    beam = translate(
        trained, data.src_vocab, data.tgt_vocab, texts, decoding="beam", beam_size=1, max_length=30
    )
    assert_same(greedy, beam)
    assert len({h[0].text for h in greedy}) > 5  # the model does not say the same thing to everything


@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_results_do_not_depend_on_batching(trained: Seq2Seq, data: PairSplits, sources, decoding) -> None:
    args = dict(decoding=decoding, beam_size=4, n_best=2, max_length=25)
    together = translate(trained, data.src_vocab, data.tgt_vocab, sources, batch_size=64, **args)
    alone = translate(trained, data.src_vocab, data.tgt_vocab, sources, batch_size=1, **args)
    in_threes = translate(trained, data.src_vocab, data.tgt_vocab, sources, batch_size=3, **args)
    reversed_ = translate(trained, data.src_vocab, data.tgt_vocab, sources[::-1], batch_size=7, **args)[::-1]
    assert_same(together, alone)
    assert_same(together, in_threes)
    assert_same(together, reversed_)


def test_padding_does_not_change_a_sentence(trained: Seq2Seq, data: PairSplits, sources) -> None:
    short, long = min(sources, key=len), max(sources, key=len)
    src1, len1 = pad_batch([data.src_vocab.encode(short)])
    src2, len2 = pad_batch([data.src_vocab.encode(long), data.src_vocab.encode(short)])
    with torch.inference_mode():
        for search in (greedy_decode, lambda *a: [h[0] for h in beam_search(*a, beam_size=3)]):
            alone = search(trained, src1, len1, data.tgt_vocab)[0]
            padded = search(trained, src2, len2, data.tgt_vocab)[1]
            assert alone.tokens == padded.tokens
            assert alone.log_prob == pytest.approx(padded.log_prob, abs=1e-4)
            assert np.allclose(alone.attention, padded.attention, atol=1e-5)


def test_log_prob_equals_teacher_forcing(
    trained: Seq2Seq, untrained: Seq2Seq, data: PairSplits, sources
) -> None:
    for model in (trained, untrained):
        greedy = translate(model, data.src_vocab, data.tgt_vocab, sources[:12], max_length=20)
        beam = translate(model, data.src_vocab, data.tgt_vocab, sources[:12], "beam", 4, 3, 20, alpha=0.5)
        for source, g, b in zip(sources, greedy, beam, strict=False):
            for is_greedy, hyp in [(True, g[0]), *((False, h) for h in b)]:
                steps, attn = teacher_forced(model, data.src_vocab, source, hyp.tokens)
                assert hyp.log_prob == pytest.approx(sum(steps), abs=1e-3)
                if is_greedy:
                    assert hyp.score == hyp.log_prob
                else:
                    assert hyp.score == pytest.approx(hyp.log_prob / len(hyp.tokens) ** 0.5, abs=1e-4)
                if model.use_attention:
                    assert np.allclose(hyp.attention, attn, atol=1e-5)
                else:
                    assert hyp.attention is None


def test_greedy_picks_the_argmax_each_step(trained: Seq2Seq, data: PairSplits, sources) -> None:
    results = translate(trained, data.src_vocab, data.tgt_vocab, sources[:10])
    for source, [hyp] in zip(sources[:10], results, strict=True):
        src, src_len = pad_batch([data.src_vocab.encode(source)])
        tgt_in = torch.tensor([[SOS, *hyp.tokens[:-1]]])
        with torch.no_grad():
            logits = trained(src, src_len, tgt_in)[0]  # (T, V)
        assert logits.argmax(-1).tolist() == hyp.tokens


def test_n_best_sorted_distinct_and_eos(trained: Seq2Seq, data: PairSplits, sources) -> None:
    results = translate(
        trained,
        data.src_vocab,
        data.tgt_vocab,
        sources,
        "beam",
        beam_size=5,
        n_best=3,
        max_length=25,
        alpha=0.7,
    )
    for hyps in results:
        assert len(hyps) == 3
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 3
        for h in hyps:
            assert h.text == data.tgt_vocab.decode(h.tokens)
            assert EOS not in h.tokens[:-1] and PAD not in h.tokens
            assert len(h.tokens) <= 25
            if h.tokens[-1] == EOS:
                assert len(h.text) == len(h.tokens) - 1
    ended = sum(h.tokens[-1] == EOS for hyps in results for h in hyps)
    assert ended > 0.8 * 3 * len(sources)


@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_max_length_cuts_hypotheses(trained: Seq2Seq, data: PairSplits, sources, decoding: str) -> None:
    results = translate(trained, data.src_vocab, data.tgt_vocab, sources, decoding, beam_size=3, max_length=4)
    for source, [h] in zip(sources, results, strict=True):
        assert 1 <= len(h.tokens) <= 4
        if EOS not in h.tokens:
            assert len(h.tokens) == 4 and h.text == data.tgt_vocab.decode(h.tokens)
        assert h.attention.shape == (len(h.tokens), len(source))


def test_attention_rows_sum_to_one(trained: Seq2Seq, data: PairSplits, sources) -> None:
    src, src_len = pad_batch([data.src_vocab.encode(s) for s in sources[:16]])
    assert len(set(src_len.tolist())) > 1
    with torch.inference_mode():
        greedy = greedy_decode(trained, src, src_len, data.tgt_vocab)
        beams = beam_search(trained, src, src_len, data.tgt_vocab, beam_size=4, n_best=2)
    for i, source in enumerate(sources[:16]):
        for h in [greedy[i], *beams[i]]:
            # cropped to the real source: rows summing to 1 there means padded positions got 0
            assert h.attention.shape == (len(h.tokens), len(source))
            assert np.allclose(h.attention.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("alpha", "n_best"), [(0.0, 1), (0.0, 4), (1.0, 1), (1.0, 3)])
def test_beam_as_wide_as_the_vocab_is_exhaustive(trained: Seq2Seq, data: PairSplits, sources, alpha, n_best):
    """With max_length=2 and beam_size=V, beam search must return the true n best of all hypotheses."""
    vocab_size = len(data.tgt_vocab)
    for source in sources[:3]:
        src, src_len = pad_batch([data.src_vocab.encode(source)])
        firsts = [a for a in range(vocab_size) if a != EOS]
        with torch.no_grad():
            enc = trained.encode(src, src_len)
            step0 = F.log_softmax(trained.decode(torch.tensor([[SOS]]), enc.state, enc)[0][0, 0], -1)  # (V,)
            rows = enc.repeat_interleave(len(firsts))
            tgt_in = torch.tensor([[SOS, a] for a in firsts])  # (V-1, 2)
            step1 = F.log_softmax(trained.decode(tgt_in, rows.state, rows)[0][:, 1], -1)  # (V-1, V)
        every = [((EOS,), step0[EOS].item())]
        for (i, a), b in itertools.product(enumerate(firsts), range(vocab_size)):
            every.append(((a, b), step0[a].item() + step1[i, b].item()))
        every.sort(key=lambda tl: tl[1] / len(tl[0]) ** alpha, reverse=True)
        with torch.inference_mode():
            [found] = beam_search(
                trained,
                src,
                src_len,
                data.tgt_vocab,
                beam_size=vocab_size,
                n_best=n_best,
                max_length=2,
                alpha=alpha,
            )
        assert [tuple(h.tokens) for h in found] == [toks for toks, _ in every[:n_best]]
        assert np.allclose([h.log_prob for h in found], [lp for _, lp in every[:n_best]], atol=1e-4)


def test_wider_beam_finds_likelier_translations(trained: Seq2Seq, data: PairSplits, sources) -> None:
    greedy = translate(trained, data.src_vocab, data.tgt_vocab, sources, max_length=30)
    beam = translate(trained, data.src_vocab, data.tgt_vocab, sources, "beam", beam_size=8, max_length=30)
    g = np.array([h[0].log_prob for h in greedy])
    b = np.array([h[0].log_prob for h in beam])
    assert b.mean() > g.mean()
    assert (b >= g - 1e-4).mean() > 0.9


def test_translate_rejects_bad_input(trained: Seq2Seq, data: PairSplits) -> None:
    with pytest.raises(InputError, match="text 2"):
        translate(trained, data.src_vocab, data.tgt_vocab, ["hola .", "¿¡ 123 ,,"])
    with pytest.raises(InputError, match="decoding"):
        translate(trained, data.src_vocab, data.tgt_vocab, ["hola ."], decoding="sampling")
    small = Vocab.build(["ab"])
    model = Seq2Seq(len(small), len(data.tgt_vocab), hidden_size=8)
    with pytest.raises(InputError, match="no characters the model knows"):
        translate(model, small, data.tgt_vocab, ["xyz ."])
    with pytest.raises(ValueError):
        src, src_len = pad_batch([data.src_vocab.encode("hola .")])
        beam_search(trained, src, src_len, data.tgt_vocab, beam_size=2, n_best=3)
    with pytest.raises(ValueError):
        greedy_decode(trained, src, src_len, data.tgt_vocab, max_length=0)
    assert translate(trained, data.src_vocab, data.tgt_vocab, []) == []


def test_translate_normalises_and_restores_training_mode(trained: Seq2Seq, data: PairSplits) -> None:
    trained.train()
    try:
        raw = ["¿Cómo estás?", "¡Tom está aquí!"]
        first = translate(trained, data.src_vocab, data.tgt_vocab, raw)
        assert trained.training  # mode restored
        second = translate(trained, data.src_vocab, data.tgt_vocab, [normalize(t) for t in raw])
        assert_same(first, second)  # same answer both times: dropout was off
    finally:
        trained.eval()
