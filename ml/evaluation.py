"""Score a checkpoint on a dataset split: the one evaluation shared by `python -m ml evaluate` and the service.

The splits, batches and metric are exactly those `fit` uses (ml.recipes), so evaluating a checkpoint on
the split and limit it was trained with gives the very number fit recorded (==, not approximately):
images in batches of 1024, accuracy of the argmax; sentence pairs through `ml.decoding.translate` in its
batches of 256 (by source length over the whole split), mean per-sentence character error rate.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ml.data.images import load_images
from ml.data.specs import IMAGE_NAMES, data_kind_of_spec, spec_for_name
from ml.data.text import load_pairs, normalize, read_pairs_file
from ml.decoding import DECODINGS, translate
from ml.errors import Cancelled, CheckpointError, DataError, InputError
from ml.imageprep import tensor_to_png
from ml.inference import load_with_checkpoint
from ml.kinds import DATA_KINDS, ModelKind, kind_of_checkpoint
from ml.metrics import error_rate

SPLITS = ("train", "val", "test")  # "all" scores their concatenation (each part cut to `limit`)
IMAGE_BATCH, PAIR_BATCH = 1024, 256  # what fit's recipes evaluate with
N_MISTAKES, N_WORST, N_SAMPLE = 12, 10, 10

Progress = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


@dataclass
class EvaluationResult:
    metric: str  # the kind's metric: "accuracy" (image kinds) or "error_rate" (text-pair kinds)
    value: float
    n: int  # examples scored
    seconds: float  # scoring time (loading excluded)
    epoch: int | None  # the epoch of the checkpoint's weights
    details: dict[str, Any] = field(default_factory=dict)  # bounded and JSON-serialisable; {} unless asked

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Run:
    """A loaded checkpoint and how to score it."""

    kind: ModelKind
    predictor: Any  # Classifier (image kinds) or Transliterator (text-pair kinds)
    epoch: int | None
    device: torch.device
    decoding: str
    beam_size: int
    length_penalty: float
    batch_size: int | None
    details: bool
    should_cancel: CancelCheck | None
    on_progress: Progress | None

    def step(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("evaluation cancelled")


def _load(checkpoint: Path | str, device: str | None, **options: Any) -> _Run:
    if options["decoding"] not in DECODINGS:
        raise InputError(f"unknown decoding {options['decoding']!r}; choose one of {', '.join(DECODINGS)}")
    if options["beam_size"] < 1 or (options["batch_size"] is not None and options["batch_size"] < 1):
        raise InputError("beam_size and batch_size must be >= 1")
    predictor, data = load_with_checkpoint(checkpoint, device)
    kind = kind_of_checkpoint(data)
    try:
        epoch = None if data.get("epoch") is None else int(data["epoch"])
    except (TypeError, ValueError):
        raise CheckpointError(f"checkpoint {checkpoint} records no usable epoch") from None
    return _Run(kind, predictor, epoch, predictor.device, **options)


def _resolve_spec(data_spec: str, data_dir: Path) -> str:
    """A spec as fit takes it; a bare name (a folder of data_dir) becomes its idx:/pairs: spec."""
    spec = data_spec.strip()
    if ":" in spec or spec.lower() in IMAGE_NAMES:
        return spec
    found = spec_for_name(spec, data_dir)
    if found is None:
        raise DataError(f"unknown dataset {data_spec[:80]!r}: no such folder of data in {data_dir} "
                        f"(or give idx:PATH, pairs:PATH, {', '.join(IMAGE_NAMES)})")
    return found


def evaluate_checkpoint(
    checkpoint: Path | str, data_spec: str, data_dir: Path | str, *, split: str = "test",
    decoding: str = "greedy", beam_size: int = 5, length_penalty: float = 0.0, limit: int | None = None,
    details: bool = False, device: str | None = None,
    should_cancel: CancelCheck | None = None, on_progress: Progress | None = None,
    batch_size: int | None = None,
) -> EvaluationResult:
    """The kind's metric of `checkpoint` on `split` of `data_spec`, split and cut exactly as `fit` does.

    `limit` keeps the first examples of the split; should_cancel() is checked between batches (Cancelled);
    on_progress(done, total) follows each batch. `batch_size` None keeps fit's (1024 images, 256 pairs):
    another size may change the last bits of a text model's number.
    """
    if split not in (*SPLITS, "all"):
        raise InputError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise InputError("limit must be >= 1")
    run = _load(checkpoint, device, decoding=decoding, beam_size=beam_size, length_penalty=length_penalty,
                batch_size=batch_size, details=details, should_cancel=should_cancel, on_progress=on_progress)
    root = Path(data_dir)
    spec = _resolve_spec(data_spec, root)
    holds = data_kind_of_spec(spec)
    if holds != run.kind.data_kind:
        raise DataError(f"dataset {data_spec!r} holds {DATA_KINDS[holds]}; "
                        f"a {run.kind.name} checkpoint is evaluated on {run.kind.data_words}")
    cfg = run.predictor.config
    names = SPLITS if split == "all" else (split,)
    if run.kind.data_kind == "images":
        data = load_images(spec, root, seed=cfg.seed)
        parts = [getattr(data, s) for s in names]
        images = torch.cat([p.images[:limit] for p in parts])  # (N, 1, 28, 28)
        labels = torch.cat([p.labels[:limit] for p in parts])  # (N,)
        return _score_images(run, images, labels)
    text = load_pairs(spec, root, direction=cfg.direction, max_length=cfg.max_length)
    return _score_pairs(run, [p for s in names for p in getattr(text, s)[:limit]])


def evaluate_pairs_file(
    checkpoint: Path | str, path: Path | str, *, decoding: str = "greedy", beam_size: int = 5,
    length_penalty: float = 0.0, limit: int | None = None, details: bool = False, device: str | None = None,
    should_cancel: CancelCheck | None = None, on_progress: Progress | None = None,
    batch_size: int | None = None,
) -> EvaluationResult:
    """A text-pair checkpoint scored on one pairs file (english<TAB>spanish…), read with its direction and
    max_length; `limit` keeps the first pairs."""
    if limit is not None and limit < 1:
        raise InputError("limit must be >= 1")
    run = _load(checkpoint, device, decoding=decoding, beam_size=beam_size, length_penalty=length_penalty,
                batch_size=batch_size, details=details, should_cancel=should_cancel, on_progress=on_progress)
    if run.kind.data_kind != "pairs":
        raise DataError(f"{path} holds text pairs; a {run.kind.name} checkpoint is evaluated on {run.kind.data_words}")
    cfg = run.predictor.config
    return _score_pairs(run, read_pairs_file(path, direction=cfg.direction, max_length=cfg.max_length)[:limit])


@torch.inference_mode()
def _score_images(run: _Run, images: Tensor, labels: Tensor) -> EvaluationResult:
    model, n, size = run.predictor.model.eval(), len(labels), run.batch_size or IMAGE_BATCH
    started = time.perf_counter()
    correct = 0
    preds, confs = [], []
    for start in range(0, n, size):
        run.check_cancel()
        log_probs = model(images[start : start + size].to(run.device))  # (B, C)
        pred = log_probs.argmax(dim=1)  # (B,)
        correct += int((pred == labels[start : start + size].to(run.device)).sum())
        if run.details:
            preds.append(pred.cpu())
            confs.append(log_probs.gather(1, pred.unsqueeze(1)).squeeze(1).exp().cpu())  # (B,)
        run.step(min(start + size, n), n)
    value = correct / max(n, 1)
    seconds = time.perf_counter() - started
    info: dict[str, Any] = {}
    if run.details:
        predicted = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)  # (N,)
        confidence = torch.cat(confs) if confs else torch.zeros(0)  # (N,)
        info = _image_details(run.predictor.classes, images, labels, predicted, confidence)
    return EvaluationResult(run.kind.metric, value, n, seconds, run.epoch, info)


def _image_details(classes: Sequence[str], images: Tensor, labels: Tensor, predicted: Tensor,
                   confidence: Tensor) -> dict[str, Any]:
    c = len(classes)
    confusion = torch.bincount(labels * c + predicted, minlength=c * c).view(c, c).tolist()  # (C, C) rows: true
    per_class = [{"class": name, "n": sum(row), "accuracy": row[i] / sum(row) if sum(row) else None}
                 for i, (name, row) in enumerate(zip(classes, confusion, strict=True))]
    wrong = (predicted != labels).nonzero().squeeze(1).tolist()
    conf = confidence.tolist()
    wrong.sort(key=lambda i: (-conf[i], i))
    mistakes = [{"index": i, "true": classes[int(labels[i])], "predicted": classes[int(predicted[i])],
                 "confidence": round(conf[i], 4), "image_png": _png_url(images[i])} for i in wrong[:N_MISTAKES]]
    return {"classes": list(classes), "confusion": confusion, "per_class": per_class, "mistakes": mistakes}


def _png_url(image: Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(tensor_to_png(image)).decode("ascii")


def _score_pairs(run: _Run, pairs: list[tuple[str, str]]) -> EvaluationResult:
    if not pairs:
        raise DataError("no sentence pairs to evaluate")
    p, cfg, size = run.predictor, run.predictor.config, run.batch_size or PAIR_BATCH
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    # translate's own batching (longest sources first over all of them), cut into chunks of its batches:
    # every batch holds the same sentences as one call on the whole split would, so the numbers are equal.
    order = sorted(range(len(sources)), key=lambda i: len(normalize(sources[i])), reverse=True)
    hyps: list[str] = [""] * len(sources)
    started = time.perf_counter()
    for start in range(0, len(order), size):
        run.check_cancel()
        chunk = order[start : start + size]
        found = translate(p.model, p.src_vocab, p.tgt_vocab, [sources[i] for i in chunk], decoding=run.decoding,
                          beam_size=run.beam_size, max_length=2 * cfg.max_length + 10, alpha=run.length_penalty,
                          batch_size=size, device=run.device, attention=False)
        for i, h in zip(chunk, found, strict=True):
            hyps[i] = h[0].text
        run.step(min(start + size, len(order)), len(order))
    value = error_rate(hyps, refs)
    seconds = time.perf_counter() - started
    info = _pair_details(sources, refs, hyps) if run.details else {}
    return EvaluationResult(run.kind.metric, value, len(pairs), seconds, run.epoch, info)


def _pair_details(sources: list[str], refs: list[str], hyps: list[str]) -> dict[str, Any]:
    errors = [error_rate([h], [t]) for h, t in zip(hyps, refs, strict=True)]  # per sentence, as the mean counts it

    def row(i: int) -> dict[str, Any]:
        return {"index": i, "source": sources[i], "reference": refs[i], "hypothesis": hyps[i],
                "error": round(errors[i], 4)}

    worst = sorted(range(len(errors)), key=lambda i: (-errors[i], i))[:N_WORST]
    sample = sorted(random.Random(0).sample(range(len(errors)), min(N_SAMPLE, len(errors))))
    return {"worst": [row(i) for i in worst], "sample": [row(i) for i in sample]}
