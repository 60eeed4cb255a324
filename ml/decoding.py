"""Search for translations with a trained `Seq2Seq`: batched greedy decoding and batched beam search.

Both work on a whole batch of sentences at once (the beam search on batch x beam rows), keep every tensor
on the model's device, and only turn results into Python objects after the step loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ml.data.text import EOS, PAD, SOS, Vocab, normalize, pad_batch
from ml.errors import InputError
from ml.models.seq2seq import Seq2Seq

DECODINGS = ("greedy", "beam")


@dataclass
class Hypothesis:
    text: str  # the translation, without EOS
    tokens: list[int]  # generated ids, ending with EOS when the search produced one
    log_prob: float  # sum of the model's log-probabilities of `tokens`
    score: float  # log_prob / len(tokens) ** alpha (greedy: log_prob)
    attention: np.ndarray | None  # (len(tokens), source length) or None without attention


def _first_eos_length(row: Sequence[int]) -> int:
    """Number of tokens up to and including the first EOS (all of them when there is none)."""
    for i, tok in enumerate(row):
        if tok == EOS:
            return i + 1
    return len(row)


@torch.inference_mode()
def greedy_decode(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, tgt_vocab: Vocab, max_length: int = 50,
    attention: bool = True,
) -> list[Hypothesis]:
    """Feed back the most likely token at each step, for all rows at once; one Hypothesis per row.

    With attention=False no attention history is kept (hypotheses carry attention=None)."""
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    batch = src.size(0)
    device = src.device
    encoded = model.encode(src, src_lengths)
    state = encoded.state
    prev = torch.full((batch, 1), SOS, dtype=torch.int64, device=device)  # (B, 1)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
    log_prob = torch.zeros(batch, device=device)  # (B,)
    tokens: list[Tensor] = []  # each (B,)
    attns: list[Tensor] = []  # each (B, S)
    for _ in range(max_length):
        logits, state, attn = model.decode(prev, state, encoded)  # (B, 1, V), state, (B, 1, S) | None
        step_lp, tok = F.log_softmax(logits[:, 0].float(), dim=-1).max(dim=-1)  # (B,), (B,)
        tok = tok.masked_fill(finished, PAD)  # (B,)
        log_prob = log_prob + step_lp.masked_fill(finished, 0.0)  # (B,)
        tokens.append(tok)
        if attn is not None and attention:
            attns.append(attn[:, 0])
        finished = finished | (tok == EOS)  # (B,)
        prev = tok.unsqueeze(1)  # (B, 1)
        if bool(finished.all()):
            break

    token_rows = torch.stack(tokens, dim=1).cpu().tolist()  # (B, steps)
    lp_rows = log_prob.cpu().tolist()
    attn_np = torch.stack(attns, dim=1).float().cpu().numpy() if attns else None  # (B, steps, S)
    src_lens = src_lengths.cpu().tolist()
    hyps = []
    for b in range(batch):
        n = _first_eos_length(token_rows[b])
        toks = token_rows[b][:n]
        hyps.append(
            Hypothesis(
                text=tgt_vocab.decode(toks),
                tokens=toks,
                log_prob=lp_rows[b],
                score=lp_rows[b],
                attention=None if attn_np is None else attn_np[b, :n, : src_lens[b]].copy(),
            )
        )
    return hyps


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    tgt_vocab: Vocab,
    beam_size: int = 5,
    n_best: int = 1,
    max_length: int = 50,
    alpha: float = 0.0,
    attention: bool = True,
) -> list[list[Hypothesis]]:
    """Beam search on batch x beam rows; per sentence the `n_best` hypotheses by score, best first.

    attention=False keeps no attention history: (steps x batch x beam x source) floats less.

    score = log_prob / length ** alpha, where length counts the EOS. A candidate ending in EOS among the
    `beam_size` best of a step is kept aside; the live beams are the best candidates not ending in EOS.
    A sentence is done when it has `n_best` finished hypotheses that no live beam can beat; the search
    stops when all are done or after `max_length` steps (then unfinished beams count too).
    """
    if beam_size < 1 or max_length < 1:
        raise ValueError("beam_size and max_length must be >= 1")
    if not 1 <= n_best <= beam_size:
        raise ValueError("n_best must be between 1 and beam_size")
    batch, k = src.size(0), beam_size
    device = src.device
    vocab_size = model.tgt_vocab_size
    n_cand = min(2 * k, k * vocab_size)

    encoded = model.encode(src, src_lengths).repeat_interleave(k)  # B*K rows
    state = encoded.state
    row_base = (torch.arange(batch, device=device) * k).unsqueeze(1)  # (B, 1)
    scores = torch.full((batch, k), float("-inf"), device=device)  # (B, K) log-prob of live beams
    scores[:, 0] = 0.0  # one live beam per sentence at the start, so beams do not repeat each other
    prev = torch.full((batch * k, 1), SOS, dtype=torch.int64, device=device)  # (B*K, 1)
    cand_rank = torch.arange(n_cand, device=device).unsqueeze(0)  # (1, 2K)
    best_finished = torch.full((batch, n_best), float("-inf"), device=device)  # (B, n_best)
    done = torch.zeros(batch, dtype=torch.bool, device=device)  # (B,)
    max_norm = float(max_length) ** alpha

    trace = BeamTrace()
    for t in range(max_length):
        logits, state, attn = model.decode(prev, state, encoded)  # (B*K, 1, V), state, (B*K, 1, S) | None
        logp = F.log_softmax(logits[:, 0].float(), dim=-1).view(batch, k, vocab_size)  # (B, K, V)
        cand = (scores.unsqueeze(2) + logp).view(batch, k * vocab_size)  # (B, K*V)
        top_lp, top_idx = cand.topk(n_cand, dim=1)  # (B, 2K), sorted best first
        parent = top_idx // vocab_size  # (B, 2K)
        token = top_idx % vocab_size  # (B, 2K)
        is_eos = token == EOS  # (B, 2K)

        # Finished: EOS among the K best candidates, indexed by parent (each parent has one EOS candidate).
        final = is_eos & (cand_rank < k) & torch.isfinite(top_lp) & ~done.unsqueeze(1)  # (B, 2K)
        eos_lp = cand.view(batch, k, vocab_size)[:, :, EOS]  # (B, K)
        hits = torch.zeros(batch, k, dtype=torch.int64, device=device)  # (B, K)
        finished_here = hits.scatter_add_(1, parent, final.long()) > 0  # (B, K)
        trace.fin_mask.append(finished_here)
        trace.fin_lp.append(eos_lp)
        new_scores = eos_lp.masked_fill(~finished_here, float("-inf")) / float(t + 1) ** alpha  # (B, K)
        best_finished = (
            torch.cat([best_finished, new_scores], dim=1).topk(n_best, dim=1).values
        )  # (B, n_best)

        # Live: the K best candidates that do not end in EOS (at most K of the 2K do).
        order = (cand_rank + is_eos.long() * n_cand).argsort(dim=1)[:, :k]  # (B, K)
        scores = top_lp.gather(1, order)  # (B, K)
        live_parent = parent.gather(1, order)  # (B, K)
        live_tok = token.gather(1, order)  # (B, K)
        trace.tok.append(live_tok)
        trace.back.append(live_parent)
        if attn is not None and attention:
            trace.attn.append(attn[:, 0].view(batch, k, -1))

        rows = (row_base + live_parent).view(-1)  # (B*K,)
        state = (state[0].index_select(1, rows), state[1].index_select(1, rows))  # (1, B*K, H) each
        prev = live_tok.view(batch * k, 1)  # (B*K, 1)
        bound = scores.max(dim=1).values / max_norm  # (B,) best score a live beam can still reach
        done = done | (best_finished[:, -1] >= bound)  # (B,)
        if bool(done.all()):
            break

    return trace.hypotheses(scores, done, src_lengths, tgt_vocab, alpha, n_best)


@dataclass
class BeamTrace:
    """What beam search keeps per step to rebuild hypotheses at the end (each entry is one step)."""

    tok: list[Tensor] = field(default_factory=list)  # (B, K): token of each live beam
    back: list[Tensor] = field(default_factory=list)  # (B, K): its parent among the previous live beams
    attn: list[Tensor] = field(default_factory=list)  # (B, K, S): attention of each parent row
    fin_mask: list[Tensor] = field(default_factory=list)  # (B, K): parent k's EOS continuation finished
    fin_lp: list[Tensor] = field(default_factory=list)  # (B, K): its log-prob

    def hypotheses(self, live_lp: Tensor, done: Tensor, src_lengths: Tensor, tgt_vocab: Vocab, alpha: float,
                   n_best: int) -> list[list[Hypothesis]]:
        """Each sentence's n_best among finished and (when not done) live beams, rebuilt from the trace."""
        hist_tok, hist_back, hist_attn = self.tok, self.back, self.attn
        steps = len(hist_tok)
        batch, k = live_lp.shape
        lengths = torch.arange(1, steps + 1, device=live_lp.device, dtype=torch.float32).view(steps, 1, 1)
        fin_lp_t = torch.stack(self.fin_lp)  # (T, B, K)
        fin_score = (fin_lp_t / lengths**alpha).masked_fill(~torch.stack(self.fin_mask), float("-inf"))  # (T, B, K)
        live_score = (live_lp / float(steps) ** alpha).masked_fill(done.unsqueeze(1), float("-inf"))  # (B, K)
        pool_score = torch.cat([fin_score.permute(1, 0, 2).reshape(batch, steps * k), live_score], dim=1)
        pool_lp = torch.cat([fin_lp_t.permute(1, 0, 2).reshape(batch, steps * k), live_lp], dim=1)
        best_score, best_idx = pool_score.topk(n_best, dim=1)  # (B, n_best)
        best_lp = pool_lp.gather(1, best_idx)  # (B, n_best)

        tok = torch.stack(hist_tok).cpu().numpy()  # (T, B, K)
        back = torch.stack(hist_back).cpu().numpy()  # (T, B, K)
        att = torch.stack(hist_attn).float().cpu().numpy() if hist_attn else None  # (T, B, K, S)
        best_score_l, best_idx_l, best_lp_l = best_score.tolist(), best_idx.tolist(), best_lp.tolist()
        src_lens = src_lengths.cpu().tolist()

        results: list[list[Hypothesis]] = []
        for b in range(batch):
            hyps = []
            for score, idx, lp in zip(best_score_l[b], best_idx_l[b], best_lp_l[b], strict=True):
                if score == float("-inf"):
                    continue
                if idx < steps * k:  # finished at step `end` as the EOS continuation of live beam `j`
                    end, j = divmod(idx, k)
                    toks, rows = [EOS], [att[end, b, j, : src_lens[b]] if att is not None else None]
                    last = end - 1
                else:  # still live after the last step
                    j, toks, rows, last = idx - steps * k, [], [], steps - 1
                for s in range(last, -1, -1):
                    parent = back[s, b, j]
                    toks.append(int(tok[s, b, j]))
                    rows.append(att[s, b, parent, : src_lens[b]] if att is not None else None)
                    j = parent
                toks.reverse()
                rows.reverse()
                hyps.append(
                    Hypothesis(
                        text=tgt_vocab.decode(toks),
                        tokens=toks,
                        log_prob=lp,
                        score=score,
                        attention=np.stack(rows) if att is not None else None,
                    )
                )
            results.append(hyps)
        return results


def translate(
    model: Seq2Seq,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
    texts: Sequence[str],
    decoding: str = "greedy",
    beam_size: int = 5,
    n_best: int = 1,
    max_length: int = 50,
    alpha: float = 0.0,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    attention: bool = True,
) -> list[list[Hypothesis]]:
    """Translate raw `texts`: normalise, batch by length, search; results in input order.

    Greedy gives one hypothesis per text; beam search gives `n_best`. The model runs in eval mode (its
    previous mode is restored afterwards) on `device` (default: where its parameters are).
    """
    if decoding not in DECODINGS:
        raise InputError(f"unknown decoding {decoding!r}; choose one of {', '.join(DECODINGS)}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    encoded: list[list[int]] = []
    for i, text in enumerate(texts):
        norm = normalize(text)
        if not norm:
            raise InputError(
                f"text {i + 1} has nothing to translate once normalised (letters and . ! ? only)"
            )
        if src_vocab.known_fraction(norm) == 0.0:
            raise InputError(f"text {i + 1} has no characters the model knows: {norm!r}")
        encoded.append(src_vocab.encode(norm))
    if device is None:
        device = next(model.parameters()).device

    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    results: list[list[Hypothesis]] = [[] for _ in encoded]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                src, lengths = pad_batch([encoded[i] for i in chunk])  # (B, S), (B,)
                src, lengths = src.to(device), lengths.to(device)
                if decoding == "greedy":
                    found = [[h] for h in greedy_decode(model, src, lengths, tgt_vocab, max_length, attention)]
                else:
                    found = beam_search(model, src, lengths, tgt_vocab, beam_size, n_best, max_length, alpha,
                                        attention)
                for i, hyps in zip(chunk, found, strict=True):
                    results[i] = hyps
    finally:
        model.train(was_training)
    return results
