"""Loaded checkpoints ready to answer: `Classifier` (image classifiers) and `Transliterator` (seq2seq).

`load_predictor(path)` reads a checkpoint and lets the kind that recognises it (ml.kinds) build its model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ml.activations import activation_maps, activation_png
from ml.checkpoint import load_checkpoint
from ml.config import TrainConfig
from ml.data.text import Vocab
from ml.decoding import Hypothesis, translate
from ml.errors import CheckpointError, InputError
from ml.kinds import UnknownKind, kind_of_checkpoint
from ml.models.seq2seq import Seq2Seq


@dataclass
class Prediction:
    label: int
    class_name: str
    probabilities: list[float]
    top_k: list[dict[str, Any]]  # [{"label", "class_name", "probability"}], most likely first


class Classifier:
    """An image classifier of any kind whose model maps (B, 1, 28, 28) to log-probabilities (B, C)."""

    def __init__(self, model: torch.nn.Module, classes: list[str], config: TrainConfig, device: torch.device):
        self.model, self.classes, self.config, self.device = model.eval(), classes, config, device
        self.kind = config.model

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, k: int = 3) -> list[Prediction]:
        """images (B, 1, 28, 28) or (1, 28, 28) in [0, 1) → one Prediction each."""
        if images.dim() == 3:
            images = images.unsqueeze(0)  # (1, 1, 28, 28)
        if tuple(images.shape[1:]) != (1, 28, 28):
            raise InputError(f"expected images of shape (1, 28, 28), got {tuple(images.shape[1:])}")
        probs = self.model(images.to(self.device)).exp().cpu()  # (B, C)
        top = probs.topk(min(k, probs.size(1)), dim=1)  # values, indices: (B, k)
        # .tolist() converts in C; iterating the tensors would make a 0-d tensor per number
        rows, top_values, top_indices = probs.tolist(), top.values.tolist(), top.indices.tolist()
        out = []
        for row, values, indices in zip(rows, top_values, top_indices, strict=True):
            label = indices[0]
            out.append(Prediction(label, self.classes[label], row, [
                {"label": i, "class_name": self.classes[i], "probability": v}
                for v, i in zip(values, indices, strict=True)
            ]))
        return out

    def activations(self, image: torch.Tensor, layer: str) -> np.ndarray:
        """Activation maps (C, H, W) of `layer` ('conv1' or 'conv2') for one image (1, 28, 28)."""
        if not hasattr(self.model, "activations"):
            raise InputError(f"a {self.kind} model has no activation maps")
        return activation_maps(self.model, image.to(self.device), layer)

    def activations_png(self, image: torch.Tensor, layer: str) -> bytes:
        return activation_png(image.cpu(), self.activations(image, layer), layer)


class Transliterator:
    """A character-level seq2seq model with its vocabularies: greedy or beam-search translation."""

    def __init__(self, model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, config: TrainConfig, device: torch.device):
        self.model, self.src_vocab, self.tgt_vocab = model.eval(), src_vocab, tgt_vocab
        self.config, self.device = config, device
        self.kind = config.model

    @property
    def has_attention(self) -> bool:
        return bool(self.config.attention)

    def translate(self, texts: list[str], decoding: str = "greedy", beam_size: int = 5, n_best: int = 1,
                  alpha: float = 0.0, max_length: int | None = None, batch_size: int = 256,
                  attention: bool = True) -> list[list[Hypothesis]]:
        """Hypotheses per text; `attention=False` keeps no attention history (less memory for beams)."""
        if decoding not in ("greedy", "beam"):
            raise InputError(f"unknown decoding {decoding!r}; use 'greedy' or 'beam'")
        limit = max_length or 2 * self.config.max_length + 10
        return translate(self.model, self.src_vocab, self.tgt_vocab, texts, decoding=decoding, beam_size=beam_size,
                         n_best=n_best, max_length=limit, alpha=alpha, batch_size=batch_size, device=self.device,
                         attention=attention)


Predictor = Classifier | Transliterator


def _restore(checkpoint: Mapping[str, Any], model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device)


def load_classifier(checkpoint: Mapping[str, Any], device: torch.device,
                    build: Callable[[TrainConfig, int], torch.nn.Module]) -> Classifier:
    """A Classifier from a checkpoint of an image kind; `build(config, n_classes)` makes its model."""
    config = TrainConfig.from_dict(checkpoint["config"])
    classes = list(checkpoint["meta"]["classes"])
    return Classifier(_restore(checkpoint, build(config, len(classes)), device), classes, config, device)


def load_transliterator(checkpoint: Mapping[str, Any], device: torch.device,
                        build: Callable[[TrainConfig, int, int], torch.nn.Module]) -> Transliterator:
    """A Transliterator from a checkpoint of a text-pair kind; `build(config, |src|, |tgt|)` makes its model."""
    config = TrainConfig.from_dict(checkpoint["config"])
    src, tgt = Vocab.from_list(checkpoint["meta"]["src_vocab"]), Vocab.from_list(checkpoint["meta"]["tgt_vocab"])
    model = _restore(checkpoint, build(config, len(src), len(tgt)), device)
    return Transliterator(model, src, tgt, config, device)  # type: ignore[arg-type]


def load_with_checkpoint(path: Path | str, device: str | None = None) -> tuple[Predictor, dict[str, Any]]:
    """(a Classifier or Transliterator built by the kind a checkpoint written by `fit` holds, the checkpoint's
    contents), from one read of the file; CheckpointError with one line when it is unusable."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_checkpoint(path, map_location=dev)
    try:
        return kind_of_checkpoint(data).predictor(data, dev), data
    except UnknownKind as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} is incomplete or does not match its model ({exc})") from None


def load_predictor(path: Path | str, device: str | None = None) -> Predictor:
    """A Classifier or Transliterator from a checkpoint written by `fit`, built by the kind it holds."""
    return load_with_checkpoint(path, device)[0]
