"""Seq2Seq and BilinearAttention: shapes, whole-sequence vs step-by-step decoding, padding, tied weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ml.data.text import PAD, PairSplits, load_pairs, pad_batch
from ml.models.attention import BilinearAttention
from ml.models.seq2seq import MaskDropout, Seq2Seq


@pytest.fixture(scope="module")
def data(shared_data: Path) -> PairSplits:
    return load_pairs("pairs:spa-eng", shared_data, limit=64)


def make_batch(data: PairSplits, n: int = 6, offset: int = 0) -> tuple[torch.Tensor, ...]:
    pairs = data.train[offset : offset + n]
    src, src_len = pad_batch([data.src_vocab.encode(s) for s, _ in pairs])  # (B, S), (B,)
    tgt_in, tgt_len = pad_batch([data.tgt_vocab.encode(t) for _, t in pairs], add_sos=True)  # (B, T)
    return src, src_len, tgt_in, tgt_len


def new_model(data: PairSplits, attention: bool, hidden: int = 32, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), hidden_size=hidden, attention=attention)


@pytest.mark.parametrize("attention", [False, True])
def test_shapes(data: PairSplits, attention: bool) -> None:
    model = new_model(data, attention).eval()
    src, src_len, tgt_in, _ = make_batch(data)
    b, s = src.shape
    enc = model.encode(src, src_len)
    assert enc.memory.shape == (b, s, 32)
    assert enc.mask.dtype == torch.bool and enc.mask.tolist() == (src != PAD).tolist()
    assert enc.state[0].shape == (1, b, 32) and enc.state[1].shape == (1, b, 32)
    logits, state, attn = model.decode(tgt_in, enc.state, enc)
    assert logits.shape == (b, tgt_in.size(1), len(data.tgt_vocab))
    assert state[0].shape == (1, b, 32)
    assert (attn is None) == (not attention)
    if attention:
        assert attn.shape == (b, tgt_in.size(1), s)
    assert torch.equal(model(src, src_len, tgt_in), logits)


@pytest.mark.parametrize("attention", [False, True])
def test_whole_sequence_equals_step_by_step(data: PairSplits, attention: bool) -> None:
    model = new_model(data, attention).eval()
    src, src_len, tgt_in, _ = make_batch(data, n=8)
    with torch.no_grad():
        enc = model.encode(src, src_len)
        whole, whole_state, whole_attn = model.decode(tgt_in, enc.state, enc)
        state, steps, attns = enc.state, [], []
        for t in range(tgt_in.size(1)):
            logits, state, attn = model.decode(tgt_in[:, t : t + 1], state, enc)  # (B, 1, V)
            steps.append(logits)
            attns.append(attn)
    assert torch.allclose(whole, torch.cat(steps, dim=1), atol=1e-5)
    assert torch.allclose(whole_state[0], state[0], atol=1e-5)
    if attention:
        assert torch.allclose(whole_attn, torch.cat(attns, dim=1), atol=1e-5)


@pytest.mark.parametrize("attention", [False, True])
def test_encode_does_not_depend_on_padding(data: PairSplits, attention: bool) -> None:
    model = new_model(data, attention).eval()
    pairs = sorted(data.train[:20], key=lambda p: len(p[0]))
    short, long = pairs[0][0], pairs[-1][0]
    assert len(short) < len(long)
    alone_src, alone_len = pad_batch([data.src_vocab.encode(short)])
    both_src, both_len = pad_batch([data.src_vocab.encode(long), data.src_vocab.encode(short)])
    with torch.no_grad():
        alone = model.encode(alone_src, alone_len)
        both = model.encode(both_src, both_len)
    n = len(short)
    assert torch.allclose(both.memory[1, :n], alone.memory[0], atol=1e-6)
    assert torch.all(both.memory[1, n:] == 0)
    assert torch.allclose(both.state[0][:, 1], alone.state[0][:, 0], atol=1e-6)
    assert torch.allclose(both.state[1][:, 1], alone.state[1][:, 0], atol=1e-6)


def test_final_state_is_forward_and_backward_ends(data: PairSplits) -> None:
    """h0 = [forward LSTM after the last real char ; backward LSTM after the first char]."""
    model = new_model(data, attention=False).eval()
    src, src_len, _, _ = make_batch(data, n=4)
    with torch.no_grad():
        enc = model.encode(src, src_len)
    half = 16
    for b in range(4):
        n = int(src_len[b])
        assert torch.allclose(enc.state[0][0, b, :half], enc.memory[b, n - 1, :half], atol=1e-6)
        assert torch.allclose(enc.state[0][0, b, half:], enc.memory[b, 0, half:], atol=1e-6)


def _packed_encoder(model: Seq2Seq, state_dict: dict[str, torch.Tensor] | None = None) -> torch.nn.LSTM:
    """A plain bidirectional nn.LSTM with the encoder's weights (from `state_dict` when given)."""
    h = model.hidden_size
    lstm = torch.nn.LSTM(h, h // 2, batch_first=True, bidirectional=True)
    source = state_dict if state_dict is not None else model.state_dict()
    lstm.load_state_dict({k.removeprefix("encoder."): v for k, v in source.items() if k.startswith("encoder.")})
    return lstm


def _packed_run(lstm: torch.nn.LSTM, emb: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """What the encoder computed before (and the assignment does): the bi-LSTM on a packed batch."""
    packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = lstm(packed)
    memory, _ = pad_packed_sequence(out, batch_first=True, total_length=emb.size(1))  # (B, S, H)
    return memory, torch.cat([h_n[0], h_n[1]], -1), torch.cat([c_n[0], c_n[1]], -1)  # (B, H) x2


def _random_batch(gen: torch.Generator, vocab: int, rows: int, steps: int, kind: str) -> tuple[torch.Tensor, ...]:
    lengths = torch.randint(1, steps + 1, (rows,), generator=gen)  # (B,)
    if kind == "mixed":
        lengths[0], lengths[-1] = steps, 1  # the longest row and a length-1 row
    elif kind == "ones":
        lengths[:] = 1
    elif kind == "one_length_short":  # every row one length, shorter than the padded width
        lengths[:] = max(steps - 3, 1)
    src = torch.randint(4, vocab, (rows, steps), generator=gen)  # (B, S)
    src[torch.arange(steps).unsqueeze(0) >= lengths.unsqueeze(1)] = PAD
    return src, lengths


@pytest.mark.parametrize("kind", ["mixed", "ones", "one_length_short", "no_padding"])
@pytest.mark.parametrize("hidden", [8, 32])
def test_padded_encoder_equals_the_packed_lstm(data: PairSplits, kind: str, hidden: int) -> None:
    """Unpacked, the padded batch gives the packed bi-LSTM's outputs and final (h, c), and its gradients."""
    model = Seq2Seq(len(data.src_vocab), len(data.tgt_vocab), hidden_size=hidden, dropout=0.0)
    lstm = _packed_encoder(model)
    gen = torch.Generator().manual_seed(hidden)
    for steps in (1, 2, 7, 19):
        src, lengths = _random_batch(gen, len(data.src_vocab), 23, steps, kind)
        if kind == "no_padding":
            lengths[:] = steps
            src[src == PAD] = 5
        enc = model.encode(src, lengths)
        memory, h, c = _packed_run(lstm, model.src_embedding(src), lengths)
        valid = enc.mask
        assert valid.tolist() == (torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)).tolist()
        torch.testing.assert_close(enc.memory[valid], memory[valid], atol=1e-6, rtol=1e-5)
        assert torch.all(enc.memory[~valid] == 0)
        torch.testing.assert_close(enc.state[0][0], h, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(enc.state[1][0], c, atol=1e-6, rtol=1e-5)
        # gradients: the same loss through both paths, to the encoder weights and to the embedding
        weights = torch.randn(3, *enc.memory.shape[:2], hidden, generator=gen)
        mine = (enc.memory * weights[0]).sum() + (enc.state[0][0] * weights[1, :, 0]).sum() \
            + (enc.state[1][0] * weights[2, :, 0]).sum()
        ref = (memory * weights[0]).sum() + (h * weights[1, :, 0]).sum() + (c * weights[2, :, 0]).sum()
        ref_params = [model.src_embedding.weight, *lstm.parameters()]
        mine_params = [model.src_embedding.weight, *model.encoder.parameters()]
        for a, b in zip(torch.autograd.grad(mine, mine_params), torch.autograd.grad(ref, ref_params), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_saved_model_loads_and_encodes_as_the_packed_encoder_did(data: PairSplits, tmp_path: Path) -> None:
    """Checkpoints keep their keys and shapes (one nn.LSTM, bidirectional), and give the same outputs."""
    model = new_model(data, attention=True).eval()
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("encoder.")}
    half, h = model.hidden_size // 2, model.hidden_size
    assert keys == {f"encoder.{name}{suffix}": shape for suffix in ("", "_reverse") for name, shape in [
        ("weight_ih_l0", (4 * half, h)), ("weight_hh_l0", (4 * half, half)),
        ("bias_ih_l0", (4 * half,)), ("bias_hh_l0", (4 * half,))]}
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    loaded = new_model(data, attention=True, seed=9).eval()
    loaded.load_state_dict(saved)  # strict
    src, src_len, tgt_in, _ = make_batch(data, n=16)
    assert len(set(src_len.tolist())) > 1
    with torch.no_grad():
        enc = loaded.encode(src, src_len)
        memory, h_n, c_n = _packed_run(_packed_encoder(loaded, saved), loaded.src_embedding(src), src_len)
        torch.testing.assert_close(enc.memory, memory, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(enc.state[0][0], h_n, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(enc.state[1][0], c_n, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(loaded(src, src_len, tgt_in), model(src, src_len, tgt_in))


def test_encode_refuses_lengths_outside_the_batch(data: PairSplits) -> None:
    model = new_model(data, attention=False).eval()
    src, src_len, _, _ = make_batch(data, n=3)
    for bad in (0, src.size(1) + 1):
        lengths = src_len.clone()
        lengths[1] = bad
        with pytest.raises(ValueError):
            model.encode(src, lengths)


def test_attention_matches_a_loop_and_masks_padding() -> None:
    torch.manual_seed(1)
    att = BilinearAttention(8)
    q = torch.randn(3, 4, 8)  # (B, T, H)
    h = torch.randn(3, 5, 8)  # (B, S, H)
    lengths = [5, 2, 3]
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, S)
    out, p = att(q, h, mask)
    assert out.shape == (3, 4, 8) and p.shape == (3, 4, 5)
    assert torch.allclose(p.sum(-1), torch.ones(3, 4), atol=1e-6)
    for b, n in enumerate(lengths):
        assert torch.all(p[b, :, n:] == 0)
        for t in range(4):
            z = att.query.weight @ q[b, t]
            scores = torch.stack([z @ h[b, i] for i in range(n)])
            weights = torch.exp(scores - scores.max())
            weights = weights / weights.sum()
            context = sum(weights[i] * h[b, i] for i in range(n))
            expected = torch.tanh(att.out.weight @ torch.cat([q[b, t], context]) + att.out.bias)
            assert torch.allclose(p[b, t, :n], weights, atol=1e-5)
            assert torch.allclose(out[b, t], expected, atol=1e-5)


def test_model_attention_rows_sum_to_one_and_pad_is_zero(data: PairSplits) -> None:
    model = new_model(data, attention=True).eval()
    src, src_len, tgt_in, _ = make_batch(data, n=8)
    assert len(set(src_len.tolist())) > 1  # some rows are padded
    with torch.no_grad():
        enc = model.encode(src, src_len)
        _, _, attn = model.decode(tgt_in, enc.state, enc)
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:2]), atol=1e-5)
    pad = ~enc.mask.unsqueeze(1).expand_as(attn)
    assert torch.all(attn[pad] == 0)


def test_output_layer_is_tied_to_target_embedding(data: PairSplits) -> None:
    model = new_model(data, attention=False).eval()
    shape = model.tgt_embedding.weight.shape
    out_shaped = [n for n, p in model.named_parameters() if p.shape == shape and not n.startswith("src_")]
    assert out_shaped == ["tgt_embedding.weight"]  # no separate output matrix: the embedding is reused
    vocab, src_vocab, h = len(data.tgt_vocab), len(data.src_vocab), 32
    # parameter count with no separate output matrix: embeddings, bi-LSTM (H/2 each way), LSTM, output bias
    encoder = 2 * (4 * (h // 2) * (h + h // 2) + 2 * 4 * (h // 2))
    decoder = 4 * h * (h + h) + 2 * 4 * h
    assert sum(p.numel() for p in model.parameters()) == src_vocab * h + encoder + vocab * h + decoder + vocab
    # logits really come from the embedding: changing the row of a token that is not an input
    # changes that token's logit column and nothing else
    src, src_len, tgt_in, _ = make_batch(data, n=2)
    row = next(i for i in range(4, vocab) if not (tgt_in == i).any())
    with torch.no_grad():
        before = model(src, src_len, tgt_in)
        model.tgt_embedding.weight[row] += 1.0
        after = model(src, src_len, tgt_in)
    changed = (after - before).abs().amax(dim=(0, 1)) > 0  # (V,)
    assert changed.nonzero().flatten().tolist() == [row]


def test_gradients_reach_the_tied_weight_from_both_uses(data: PairSplits) -> None:
    model = new_model(data, attention=True)
    src, src_len, tgt_in, _ = make_batch(data, n=4)
    logits = model(src, src_len, tgt_in)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_in.flatten(), ignore_index=PAD)
    loss.backward()
    grad = model.tgt_embedding.weight.grad
    unused = [i for i in range(len(data.tgt_vocab)) if not (tgt_in == i).any()]
    assert unused and grad[unused].abs().sum() > 0  # only the output layer can reach these rows
    assert all(p.grad is not None for p in model.parameters())


def test_dropout_only_in_training(data: PairSplits) -> None:
    model = new_model(data, attention=True)
    src, src_len, tgt_in, _ = make_batch(data)
    model.train()
    assert not torch.equal(model(src, src_len, tgt_in), model(src, src_len, tgt_in))
    model.eval()
    assert torch.equal(model(src, src_len, tgt_in), model(src, src_len, tgt_in))


def test_encoded_rows_can_be_repeated(data: PairSplits) -> None:
    model = new_model(data, attention=True).eval()
    src, src_len, _, _ = make_batch(data, n=3)
    enc = model.encode(src, src_len)
    rep = enc.repeat_interleave(4)
    assert rep.memory.shape[0] == 12 and rep.state[0].shape == (1, 12, 32)
    for i in range(12):
        assert torch.equal(rep.memory[i], enc.memory[i // 4])
        assert torch.equal(rep.mask[i], enc.mask[i // 4])
        assert torch.equal(rep.state[1][0, i], enc.state[1][0, i // 4])
    picked = enc.index_select(torch.tensor([2, 0]))
    assert torch.equal(picked.memory[0], enc.memory[2]) and torch.equal(
        picked.state[0][0, 1], enc.state[0][0, 0]
    )


def test_rebuild_from_constructor_arguments_and_odd_hidden_size(data: PairSplits) -> None:
    model = new_model(data, attention=True)
    twin = Seq2Seq(model.src_vocab_size, model.tgt_vocab_size, hidden_size=model.hidden_size,
                   attention=model.use_attention, dropout=model.dropout_p)
    twin.load_state_dict(model.state_dict())  # strict: the same parameters, shapes and names
    with pytest.raises(ValueError):
        Seq2Seq(10, 10, hidden_size=33)


def test_mask_dropout_drops_p_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = MaskDropout(0.3)
    x = torch.ones(200, 500)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    assert abs(y.mean().item() - 1.0) < 0.02
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError):
        MaskDropout(1.0)
