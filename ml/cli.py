"""`python -m ml …`: run the assignment's experiments locally.

Every command prints one-line errors (exit code 2) for bad input, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ml import commands
from ml.errors import MLError
from ml.kinds import get_kind, kind_names, load_kind_modules


def _data_dir() -> Path:
    return Path(os.environ.get("INKWELL_DATA_DIR", "./data"))


def _train_args(p: argparse.ArgumentParser, model: str) -> None:
    options = get_kind(model).options
    p.add_argument("--data", required=True, help="dataset spec (kmnist, mnist, fashion-mnist, idx:PATH, pairs:PATH)")
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--dropout", type=float)
    p.add_argument("--l2-decay", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--limit", type=int, help="use at most this many examples per split (quick trials)")
    if "attention" in options:
        p.add_argument("--attention", action="store_true", default=None)
    if "hidden_size" in options:
        p.add_argument("--hidden-size", type=int)
    if "max_length" in options:
        p.add_argument("--max-length", type=int)
    if "direction" in options:
        p.add_argument("--direction", choices=["spa-eng", "eng-spa"])
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available)")
    p.add_argument("--out", required=True, type=Path, help="output folder (checkpoint, metrics, plots)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train one model").add_subparsers(dest="model", required=True)
    for model in kind_names():
        _train_args(train.add_parser(model, help=f"train the {model}"), model)

    sweep = sub.add_parser("sweep", help="learning-rate sweep").add_subparsers(dest="model", required=True)
    for model in kind_names():
        p = sweep.add_parser(model, help=f"sweep the {model}'s learning rate")
        _train_args(p, model)
        p.add_argument("--lrs", required=True, help="comma-separated learning rates, e.g. 0.01,0.0005,0.00001")

    ev = sub.add_parser("evaluate", help="error rate or accuracy of a checkpoint")
    ev.add_argument("--checkpoint", required=True, type=Path)
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="dataset spec")
    source.add_argument("--file", type=Path, help="a pairs file (english<TAB>spanish<TAB>…)")
    ev.add_argument("--split", choices=["test", "val", "train", "all"], default="test",
                    help="the split as fit made it (all: the three one after another)")
    ev.add_argument("--limit", type=int, help="score only the first N examples of the split (as train --limit)")
    ev.add_argument("--details", action="store_true",
                    help="add per-class results and mistakes (images) or worst and sample sentences (pairs)")
    ev.add_argument("--decoding", choices=["greedy", "beam"], default="greedy")
    ev.add_argument("--beam-size", type=int, default=5)
    ev.add_argument("--length-penalty", "--alpha", dest="length_penalty", type=float, default=0.0,
                    help="beam score = log-prob / length ** F")
    ev.add_argument("--batch-size", type=int, help="default: fit's (1024 images, 256 sentences)")
    ev.add_argument("--device")
    ev.add_argument("--json", action="store_true")

    tr = sub.add_parser("translate", help="transliterate text with a seq2seq checkpoint")
    tr.add_argument("--checkpoint", required=True, type=Path)
    tr.add_argument("--decoding", choices=["greedy", "beam"], default="greedy")
    tr.add_argument("--beam-size", type=int, default=5)
    tr.add_argument("--n-best", type=int, default=1)
    tr.add_argument("--alpha", type=float, default=0.0)
    tr.add_argument("--device")
    tr.add_argument("text", nargs="+")

    pr = sub.add_parser("predict", help="classify images with a CNN checkpoint")
    pr.add_argument("--checkpoint", required=True, type=Path)
    pr.add_argument("--top-k", type=int, default=3)
    pr.add_argument("--device")
    pr.add_argument("image", nargs="+", type=Path)

    ac = sub.add_parser("activations", help="activation maps of a CNN layer as a PNG")
    ac.add_argument("--checkpoint", required=True, type=Path)
    ac.add_argument("--layer", choices=["conv1", "conv2"], default="conv1")
    ac.add_argument("--out", required=True, type=Path)
    ac.add_argument("--device")
    ac.add_argument("image", type=Path)
    return parser


def _emit(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)


def main(argv: list[str] | None = None) -> int:
    load_kind_modules(os.environ.get("INKWELL_KIND_MODULES", "").split(","))
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            commands.train(args, _data_dir(), _emit)
        elif args.command == "sweep":
            commands.sweep(args, _data_dir(), _emit)
        elif args.command == "evaluate":
            _emit(commands.evaluate(args, _data_dir()))
        elif args.command == "translate":
            for result in commands.translate(args):
                _emit(result)
        elif args.command == "predict":
            for result in commands.predict(args):
                _emit(result)
        elif args.command == "activations":
            _emit(commands.activations(args))
    except (MLError, ValueError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
