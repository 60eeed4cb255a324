"""Greedy and beam-5 decoding of the 1,000 validation sentences: batched against one sentence at a time.

Targets: batched greedy (`ml.decoding.translate`) at least 15x faster than a loop over sentences (batch of
1, a step loop with argmax, stop at EOS); batched beam search at least 10x faster than a plain per-sentence
beam search (a Python list of beams, each expanded with the model's step, then sorted), and at most 4x the
batched greedy time. Both sides use the same trained model; agreement of their outputs is reported.

    .venv/bin/python -m benchmarks.decoding --repeats 3 [--checkpoint PATH] [--train-epochs 6]
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import apply_threads, base_parser, emit, machine_info, ratio, summary, timed
from ml.config import TrainConfig
from ml.data.text import EOS, SOS, Vocab, load_pairs, normalize
from ml.decoding import translate
from ml.inference import Transliterator, load_predictor
from ml.metrics import error_rate
from ml.models.seq2seq import Encoded, Seq2Seq
from ml.training import fit

TARGET_GREEDY = 15.0
TARGET_BEAM = 10.0
TARGET_BEAM_OVER_GREEDY = 4.0


def _encode_one(model: Seq2Seq, src_vocab: Vocab, text: str) -> Encoded:
    ids = torch.tensor([src_vocab.encode(normalize(text))])  # (1, S)
    return model.encode(ids, torch.tensor([ids.size(1)]))


@torch.inference_mode()
def reference_greedy(
    model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, texts: Sequence[str], max_length: int = 50
) -> list[str]:
    """One sentence at a time: encode it alone, then step the decoder with the argmax until EOS."""
    model.eval()
    outputs = []
    for text in texts:
        encoded = _encode_one(model, src_vocab, text)
        state, prev, tokens = encoded.state, SOS, []
        for _ in range(max_length):
            logits, state, _ = model.decode(torch.tensor([[prev]]), state, encoded)  # (1, 1, V)
            prev = int(logits[0, 0].argmax())
            tokens.append(prev)
            if prev == EOS:
                break
        outputs.append(tgt_vocab.decode(tokens))
    return outputs


@torch.inference_mode()
def reference_beam(
    model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, texts: Sequence[str], beam_size: int = 5,
    max_length: int = 50,
) -> list[tuple[str, float]]:
    """Plain beam search, one sentence and one beam at a time: (best text, its log-prob) per sentence.

    Each step expands every live beam with its `beam_size + 1` best next characters and sorts all
    candidates; a candidate ending in EOS among the `beam_size` best is finished, the live beams are the
    best `beam_size` others. A sentence stops when its best finished hypothesis beats every live beam.
    """
    model.eval()
    results = []
    for text in texts:
        encoded = _encode_one(model, src_vocab, text)
        beams: list[tuple[float, list[int], Any]] = [(0.0, [], encoded.state)]  # (log-prob, tokens, state)
        finished: list[tuple[float, list[int]]] = []
        stopped = False
        for _ in range(max_length):
            candidates = []
            for log_prob, tokens, state in beams:
                prev = tokens[-1] if tokens else SOS
                logits, new_state, _ = model.decode(torch.tensor([[prev]]), state, encoded)  # (1, 1, V)
                top = F.log_softmax(logits[0, 0], dim=-1).topk(min(beam_size + 1, logits.size(-1)))
                for lp, tok in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    candidates.append((log_prob + lp, [*tokens, tok], new_state))
            candidates.sort(key=lambda c: c[0], reverse=True)
            finished.extend((c[0], c[1]) for c in candidates[:beam_size] if c[1][-1] == EOS)
            beams = [c for c in candidates if c[1][-1] != EOS][:beam_size]
            if finished and max(f[0] for f in finished) >= beams[0][0]:
                stopped = True
                break
        pool = finished if stopped else finished + [(lp, toks) for lp, toks, _ in beams]
        best_lp, best_tokens = max(pool, key=lambda c: c[0])
        results.append((tgt_vocab.decode(best_tokens), best_lp))
    return results


def trained_model(args: Any) -> tuple[Transliterator, dict[str, Any]]:
    """The --checkpoint, or a seq2seq with attention trained here for --train-epochs on spa-eng."""
    if args.checkpoint is not None:
        predictor = load_predictor(args.checkpoint, device="cpu")
        how = {"source": "checkpoint", "path": str(args.checkpoint)}
    else:
        config = TrainConfig.for_model("seq2seq", f"pairs:{args.data_dir / 'spa-eng'}", attention=True,
                                       epochs=args.train_epochs, seed=args.seed)
        with tempfile.TemporaryDirectory() as out:
            seconds, result = timed(lambda: fit(config, data_dir=args.data_dir, out_dir=out, device="cpu"))
            predictor = load_predictor(Path(out) / "checkpoint.pt", device="cpu")
        how = {"source": "trained in the benchmark", "epochs": args.train_epochs,
               "val_error_rate_greedy": round(result.history[-1].val_metric, 4),
               "train_seconds": round(seconds, 1)}
    if not isinstance(predictor, Transliterator):
        raise SystemExit(f"{args.checkpoint} is not a seq2seq checkpoint")
    how["attention"] = predictor.has_attention
    return predictor, how


def _agreement(a: Sequence[str], b: Sequence[str]) -> float:
    return round(100.0 * sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0], repeats=3)
    p.add_argument("--checkpoint", type=Path, help="a seq2seq checkpoint to decode with (default: train one)")
    p.add_argument("--train-epochs", type=int, default=6, help="epochs to train when no checkpoint is given")
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--max-length", type=int, default=50, help="decoding limit (training's 2 * 20 + 10)")
    p.add_argument("--batch-size", type=int, default=256, help="translate()'s batch size")
    p.add_argument("--sentences", type=int, help="decode only the first N validation sentences (trials)")
    args = p.parse_args(argv)
    apply_threads(args.threads)
    info = machine_info()
    predictor, how = trained_model(args)
    model, src_vocab, tgt_vocab = predictor.model, predictor.src_vocab, predictor.tgt_vocab
    val = load_pairs(f"pairs:{args.data_dir / 'spa-eng'}", args.data_dir).val[: args.sentences]
    texts, targets = [s for s, _ in val], [t for _, t in val]
    k, limit = args.beam_size, args.max_length

    runs: dict[str, Any] = {
        "batched_greedy": lambda: [h[0].text for h in translate(
            model, src_vocab, tgt_vocab, texts, "greedy", max_length=limit, batch_size=args.batch_size)],
        "reference_greedy": lambda: reference_greedy(model, src_vocab, tgt_vocab, texts, limit),
        "batched_beam": lambda: [(h[0].text, h[0].log_prob) for h in translate(
            model, src_vocab, tgt_vocab, texts, "beam", beam_size=k, max_length=limit,
            batch_size=args.batch_size)],
        "reference_beam": lambda: reference_beam(model, src_vocab, tgt_vocab, texts, k, limit),
    }
    translate(model, src_vocab, tgt_vocab, texts[:32], "greedy", max_length=limit)  # warm-up, untimed
    translate(model, src_vocab, tgt_vocab, texts[:32], "beam", beam_size=k, max_length=limit)
    reference_greedy(model, src_vocab, tgt_vocab, texts[:4], limit)
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, Any] = {}
    for rep in range(args.repeats):
        for name in runs if rep % 2 == 0 else reversed(list(runs)):
            seconds, outputs[name] = timed(runs[name])
            times[name].append(seconds)

    med = {name: summary(ts) for name, ts in times.items()}
    m = {name: s["median_s"] for name, s in med.items()}
    beam_texts = [t for t, _ in outputs["batched_beam"]]
    ref_beam_texts = [t for t, _ in outputs["reference_beam"]]
    same = [(a[1], b[1]) for a, b in zip(outputs["batched_beam"], outputs["reference_beam"], strict=True)
            if a[0] == b[0]]
    lp_gap = max((abs(a - b) for a, b in same), default=0.0)
    ratios = {
        "greedy_reference_over_batched": ratio(m["reference_greedy"], m["batched_greedy"]),
        "beam_reference_over_batched": ratio(m["reference_beam"], m["batched_beam"]),
        "batched_beam_over_batched_greedy": round(m["batched_beam"] / m["batched_greedy"], 3),
    }
    result = {
        "benchmark": "decoding",
        "machine": info,
        "setup": {"sentences": len(texts), "split": "val", "beam_size": k, "max_length": limit,
                  "batch_size": args.batch_size, "repeats": args.repeats, "model": how},
        "times": med,
        "ratios": ratios,
        "agreement_percent": {
            "greedy_same_text": _agreement(outputs["batched_greedy"], outputs["reference_greedy"]),
            "beam_same_best_text": _agreement(beam_texts, ref_beam_texts),
            "beam_max_abs_log_prob_difference_where_same": round(lp_gap, 6),
        },
        "val_error_rate": {
            "batched_greedy": round(error_rate(outputs["batched_greedy"], targets), 4),
            "reference_greedy": round(error_rate(outputs["reference_greedy"], targets), 4),
            "batched_beam": round(error_rate(beam_texts, targets), 4),
            "reference_beam": round(error_rate(ref_beam_texts, targets), 4),
        },
        "targets": {
            "greedy_speedup_at_least": TARGET_GREEDY,
            "greedy_met": ratios["greedy_reference_over_batched"] >= TARGET_GREEDY,
            "beam_speedup_at_least": TARGET_BEAM,
            "beam_met": ratios["beam_reference_over_batched"] >= TARGET_BEAM,
            "beam_over_greedy_at_most": TARGET_BEAM_OVER_GREEDY,
            "beam_over_greedy_met": ratios["batched_beam_over_batched_greedy"] <= TARGET_BEAM_OVER_GREEDY,
        },
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
