"""Seq2seq training epoch: inkwell's path against a decoder that steps one character at a time.

Target: inkwell's epoch (`PairRecipe` batches + `Seq2Seq.forward`: the padded batch's encoder in one fused
call, the decoder over the whole target in one call) is at least 3x faster than the assignment's
formulation: random batches of 64 from an index permutation, the encoder on a packed padded batch, and the
decoder LSTM called once per target character with attention at each step. Both start from the same
weights, with Adam at the same rate, and see the same batches (`PairRecipe.batches` cuts the same seeded
permutation as `random_batches`).

Two more passes give the breakdown: the reference with the model's dropout (`MaskDropout`) instead of
torch's, and the whole-sequence decoder on the reference's packed encoder. Neighbouring ratios isolate the
dropout implementation, stepping vs one decoder call, and the packed vs the unpacked (gated) encoder.

    .venv/bin/python -m benchmarks.seq2seq_training --repeats 2
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from benchmarks.common import apply_threads, base_parser, emit, machine_info, ratio, summary, timed
from ml.config import TrainConfig
from ml.data.text import PAD
from ml.kinds import get_kind
from ml.models.attention import BilinearAttention
from ml.models.seq2seq import Encoded, Seq2Seq
from ml.recipes import PairRecipe

TARGET_SPEEDUP = 3.0
Batch = tuple[Tensor, Tensor, Tensor, Tensor]  # src (B, S), src_len (B,), tgt_in (B, T), tgt_out (B, T)
LossFn = Callable[[Seq2Seq, Batch], Tensor]
Pass = tuple[Callable[[], Iterator[Batch]], LossFn]  # a timed pass: its batches and its loss


def _attend(att: BilinearAttention, q: Tensor, memory: Tensor, mask: Tensor) -> Tensor:
    """Luong 'general' attention for one decoder step, written out: q (B, 1, H) -> (B, 1, H)."""
    scores = torch.bmm(F.linear(q, att.query.weight), memory.transpose(1, 2))  # (B, 1, S)
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))  # (B, 1, S)
    context = torch.bmm(torch.softmax(scores, dim=-1), memory)  # (B, 1, H)
    return torch.tanh(att.out(torch.cat([q, context], dim=-1)))  # (B, 1, H)


def packed_encode(model: Seq2Seq, src: Tensor, src_len: Tensor, dropout: Callable[[Tensor], Tensor]) -> Encoded:
    """The assignment's encoder with `model`'s weights: the bi-LSTM on a packed batch (`enforce_sorted=False`)."""
    steps_src = src.size(1)
    emb = dropout(model.src_embedding(src))  # (B, S, H)
    packed = pack_padded_sequence(emb, src_len.cpu(), batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = model.encoder(packed)  # h_n, c_n: (2, B, H/2)
    memory, _ = pad_packed_sequence(out, batch_first=True, total_length=steps_src)  # (B, S, H)
    mask = torch.arange(steps_src, device=src.device).unsqueeze(0) < src_len.to(src.device).unsqueeze(1)  # (B, S)
    state = (torch.cat([h_n[0], h_n[1]], -1).unsqueeze(0), torch.cat([c_n[0], c_n[1]], -1).unsqueeze(0))
    return Encoded(memory=memory, mask=mask, state=state)


def reference_logits(
    model: Seq2Seq, src: Tensor, src_len: Tensor, tgt_in: Tensor,
    dropout: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The assignment's formulation with `model`'s weights: packed encoder, one decoder call per character.

    Dropout is torch's own (F.dropout, following `model.training`) unless `dropout` is given (e.g. the
    model's, for the breakdown). Returns logits (B, T, V).
    """
    p, train = model.dropout_p, model.training
    if dropout is None:
        def dropout(x: Tensor) -> Tensor:
            return F.dropout(x, p, train)
    encoded = packed_encode(model, src, src_len, dropout)
    memory, mask, state = encoded.memory, encoded.mask, encoded.state
    logits = []
    for t in range(tgt_in.size(1)):
        x = dropout(model.tgt_embedding(tgt_in[:, t : t + 1]))  # (B, 1, H)
        q, state = model.decoder(x, state)  # (B, 1, H)
        if model.attention is not None:
            q = _attend(model.attention, q, memory, mask)  # (B, 1, H)
        q = dropout(q)  # (B, 1, H)
        logits.append(F.linear(q, model.tgt_embedding.weight, model.out_bias))  # (B, 1, V)
    return torch.cat(logits, dim=1)  # (B, T, V)


def packed_whole_sequence_logits(model: Seq2Seq, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> Tensor:
    """`Seq2Seq.forward` with the packed encoder instead of the model's own: logits (B, T, V)."""
    encoded = packed_encode(model, src, src_len, model.dropout)
    logits, _, _ = model.decode(tgt_in, encoded.state, encoded)  # (B, T, V)
    return logits


def _ce(logits: Tensor, tgt_out: Tensor) -> Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=PAD)


def random_batches(task: PairRecipe, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """The assignment's batches: slices of a random permutation, each padded to its own longest row."""
    order = torch.randperm(task.n_train, generator=generator)  # (N,)
    for start in range(0, task.n_train, batch_size):
        idx = order[start : start + batch_size]  # (B,)
        s_max, t_max = int(task.src_len[idx].max()), int(task.tgt_len[idx].max())
        yield task.src[idx, :s_max], task.src_len[idx], task.tgt_in[idx, :t_max], task.tgt_out[idx, :t_max]


def run_epoch(
    model: Seq2Seq, batches: Iterator[Batch], loss_fn: LossFn, lr: float,
    max_batches: int | None,
) -> tuple[float, int]:
    """One training pass (fresh Adam): (mean loss, batches done)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total, count = torch.zeros(()), 0
    for batch in batches:
        if max_batches is not None and count >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        count += 1
    return float(total) / max(count, 1), count


# The timed passes: (batches, loss). Each ratio between neighbours isolates one difference.
PATHS = ("reference_stepping", "stepping_model_dropout", "whole_sequence_packed", "inkwell")


def _passes(task: PairRecipe, batch_size: int, seed: int) -> dict[str, Pass]:
    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    def rand() -> Iterator[Batch]:
        return random_batches(task, batch_size, gen())

    def model_loss(m: Seq2Seq, b: Batch) -> Tensor:
        return task.loss(m, b)

    return {
        # the assignment's step: random batches, packed encoder, decoder stepped, torch's dropout
        "reference_stepping": (rand, lambda m, b: _ce(reference_logits(m, b[0], b[1], b[2]), b[3])),
        # the same, with the model's dropout (MaskDropout): isolates the dropout implementation
        "stepping_model_dropout": (
            rand, lambda m, b: _ce(reference_logits(m, b[0], b[1], b[2], dropout=m.dropout), b[3])),
        # the same random batches, the decoder over the whole sequence in one call, the encoder still packed
        "whole_sequence_packed": (
            rand, lambda m, b: _ce(packed_whole_sequence_logits(m, b[0], b[1], b[2]), b[3])),
        # inkwell: PairRecipe's batches (the same permutation) + Seq2Seq.forward (the padded batch unpacked)
        "inkwell": (lambda: task.batches(batch_size, gen()), model_loss),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0], repeats=2)
    p.add_argument("--no-attention", action="store_true", help="time the model without attention")
    p.add_argument("--max-batches", type=int, help="time only this many batches per pass (default: all)")
    args = p.parse_args(argv)
    apply_threads(args.threads)
    info = machine_info()
    config = TrainConfig.for_model("seq2seq", f"pairs:{args.data_dir / 'spa-eng'}",
                                   attention=not args.no_attention, seed=args.seed)
    task = get_kind("seq2seq").recipe(config, args.data_dir, torch.device("cpu"))
    torch.manual_seed(args.seed)
    initial = task.build_model().state_dict()
    model = task.build_model()
    passes = _passes(task, config.batch_size, args.seed)
    for batches, loss_fn in passes.values():  # warm-up, untimed: first calls allocate and pick kernels
        run_epoch(model, batches(), loss_fn, config.learning_rate, 3)
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    final: dict[str, dict[str, Any]] = {}
    for rep in range(args.repeats):
        for name in PATHS if rep % 2 == 0 else PATHS[::-1]:  # alternate the order against drift
            batches, loss_fn = passes[name]
            model.load_state_dict(copy.deepcopy(initial))  # every pass starts from the same weights
            torch.manual_seed(args.seed + rep)
            seconds, (loss, n) = timed(lambda b=batches, f=loss_fn: run_epoch(
                model, b(), f, config.learning_rate, args.max_batches))
            times[name].append(seconds)
            final[name] = {"mean_train_loss": round(loss, 4), "batches": n}

    med = {name: summary(ts) for name, ts in times.items()}
    m = {name: s["median_s"] for name, s in med.items()}
    ref, whole = m["reference_stepping"], m["whole_sequence_packed"]
    speedup = ratio(ref, m["inkwell"])
    result = {
        "benchmark": "seq2seq_training_epoch",
        "machine": info,
        "setup": {"attention": config.attention, "batch_size": config.batch_size,
                  "hidden_size": config.hidden_size, "dropout": config.dropout, "optimizer": "adam",
                  "learning_rate": config.learning_rate,
                  "train_pairs": task.n_train, "max_length": config.max_length, "repeats": args.repeats,
                  "full_epochs": args.max_batches is None, "max_batches": args.max_batches,
                  "timed": "training batches only (no validation); each pass from the same initial weights"},
        "times": med,
        "last_pass": final,
        "ratios": {
            "reference_over_inkwell": speedup,
            "breakdown": {  # their product is reference_over_inkwell
                "torch_dropout_over_model_dropout": ratio(ref, m["stepping_model_dropout"]),
                "stepping_over_whole_sequence": ratio(m["stepping_model_dropout"], whole),
                "packed_over_unpacked_encoder": ratio(whole, m["inkwell"]),
            },
        },
        "targets": {"speedup_at_least": TARGET_SPEEDUP, "met": speedup >= TARGET_SPEEDUP},
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
