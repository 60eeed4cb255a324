"""What each `python -m ml` command does; `ml/cli.py` parses arguments and prints."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ml.config import TrainConfig
from ml.errors import InputError
from ml.evaluation import evaluate_checkpoint, evaluate_pairs_file
from ml.imageprep import image_bytes_to_tensor
from ml.inference import Classifier, Transliterator, load_predictor
from ml.plots import loss_curve_png, sweep_png, validation_curve_png
from ml.training import EpochResult, FitResult, fit

Emit = Callable[[Any], None]
_CONFIG_KEYS = ("learning_rate", "epochs", "batch_size", "optimizer", "dropout", "l2_decay", "seed", "limit",
                "attention", "hidden_size", "max_length", "direction")


def _config(args: argparse.Namespace, **override: Any) -> TrainConfig:
    values = {k: getattr(args, k, None) for k in _CONFIG_KEYS}
    return TrainConfig.for_model(args.model, args.data, **{**values, **override})


def _write_outputs(out: Path, result: FitResult) -> None:
    history = [h.as_json() for h in result.history]
    (out / "metrics.json").write_text(json.dumps({
        "config": result.config.to_dict(), "epochs": history, **result.final_json(), "device": result.device,
    }, indent=2))
    (out / "loss.png").write_bytes(loss_curve_png(history))
    (out / "validation.png").write_bytes(validation_curve_png(history, result.metric))


def _run(config: TrainConfig, args: argparse.Namespace, out: Path, data_dir: Path, emit: Emit,
         label: str = "") -> FitResult:
    """One training run with either JSON lines or a progress bar and a readable table."""
    if args.json:
        result = fit(config, data_dir=data_dir, out_dir=out, device=args.device,
                     on_epoch=lambda r: emit(r.as_json()))
        emit(result.final_json())
    else:
        metric = config.metric.replace("_", " ")
        bars: list[tqdm] = []  # made at the first batch, so data errors print one line and no bar

        def bar() -> tqdm:
            if not bars:
                bars.append(tqdm(total=config.epochs, unit="epoch", desc=label or config.model, file=sys.stderr))
            return bars[0]

        def on_batch(done: int, total: int) -> None:
            bar().set_postfix_str(f"batch {done}/{total}", refresh=done % 50 == 0)

        def on_epoch(r: EpochResult) -> None:
            b = bar()
            if b.n == 0 and r.epoch > 1:
                b.update(r.epoch - 1)  # resumed
            b.update(1)
            b.write(f"epoch {r.epoch:3d}  train loss {r.train_loss:.4f}  val {metric} {r.val_metric:.4f}"
                    f"  {r.seconds:.1f}s")

        try:
            result = fit(config, data_dir=data_dir, out_dir=out, device=args.device, on_epoch=on_epoch,
                         on_batch=on_batch)
        finally:
            for b in bars:
                b.close()
        print(f"test {metric}: {result.test_metric:.4f}\ncheckpoint: {result.checkpoint}")
    _write_outputs(out, result)
    return result


def train(args: argparse.Namespace, data_dir: Path, emit: Emit) -> FitResult:
    config = _config(args)
    return _run(config, args, args.out, data_dir, emit)


def sweep(args: argparse.Namespace, data_dir: Path, emit: Emit) -> list[FitResult]:
    try:
        rates = [float(x) for x in args.lrs.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--lrs must be comma-separated numbers, got {args.lrs!r}") from None
    results = []
    for lr in rates:
        config = _config(args, learning_rate=lr)
        results.append(_run(config, args, args.out / f"lr-{lr:g}", data_dir, emit, label=f"lr={lr:g}"))
    metric = results[0].metric
    table = [{"learning_rate": r.config.learning_rate, "final_train_loss": r.history[-1].train_loss,
              f"final_val_{metric}": r.history[-1].val_metric, f"test_{metric}": r.test_metric} for r in results]
    (args.out / "sweep.json").write_text(json.dumps(table, indent=2))
    curves = {f"lr={r.config.learning_rate:g}": [h.as_json() for h in r.history] for r in results}
    (args.out / "sweep.png").write_bytes(sweep_png(curves, metric))
    if args.json:
        emit({"sweep": table, "plot": str(args.out / "sweep.png")})
    else:
        print(f"\n{'learning rate':>14} {'train loss':>11} {'val ' + metric:>18} {'test ' + metric:>18}")
        for row in table:
            print(f"{row['learning_rate']:>14g} {row['final_train_loss']:>11.4f} "
                  f"{row[f'final_val_{metric}']:>18.4f} {row[f'test_{metric}']:>18.4f}")
        print(f"chart: {args.out / 'sweep.png'}")
    return results


def evaluate(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decoding": args.decoding, "beam_size": args.beam_size, "length_penalty": args.length_penalty,
        "limit": args.limit, "details": args.details, "device": args.device, "batch_size": args.batch_size,
    }
    if args.file is not None:
        result = evaluate_pairs_file(args.checkpoint, args.file, **options)
    else:
        result = evaluate_checkpoint(args.checkpoint, args.data, data_dir, split=args.split, **options)
    out = {result.metric: result.value, "n": result.n, "seconds": result.seconds, "epoch": result.epoch}
    if args.details:
        out["details"] = result.details
    return out


def translate(args: argparse.Namespace) -> list[dict[str, Any]]:
    predictor = load_predictor(args.checkpoint, device=args.device)
    if not isinstance(predictor, Transliterator):
        raise InputError(f"{args.checkpoint} is a {predictor.kind} checkpoint; translate needs a seq2seq one")
    from ml.data.text import normalize

    results = predictor.translate(args.text, decoding=args.decoding, beam_size=args.beam_size,
                                  n_best=args.n_best, alpha=args.alpha)
    return [{"input": normalize(text), "output": hyps[0].text,
             "n_best": [{"text": h.text, "score": h.score, "log_prob": h.log_prob} for h in hyps]}
            for text, hyps in zip(args.text, results, strict=True)]


def _classifier(args: argparse.Namespace) -> Classifier:
    predictor = load_predictor(args.checkpoint, device=args.device)
    if not isinstance(predictor, Classifier):
        raise InputError(f"{args.checkpoint} is a {predictor.kind} checkpoint; this command needs an image classifier")
    return predictor


def _read_image(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    return image_bytes_to_tensor(path.read_bytes())


def predict(args: argparse.Namespace) -> list[dict[str, Any]]:
    clf = _classifier(args)
    images = torch.stack([_read_image(p) for p in args.image])  # (B, 1, 28, 28)
    return [{"image": str(path), **pred.__dict__}
            for path, pred in zip(args.image, clf.predict(images, k=args.top_k), strict=True)]


def activations(args: argparse.Namespace) -> dict[str, Any]:
    clf = _classifier(args)
    image = _read_image(args.image)  # (1, 28, 28)
    maps = clf.activations(image, args.layer)  # (C, H, W)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(clf.activations_png(image, args.layer))
    return {"out": str(args.out), "layer": args.layer, "shape": list(maps.shape)}
