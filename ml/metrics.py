"""Evaluation metrics: classification accuracy and the seq2seq character error rate."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rapidfuzz.distance import Levenshtein
from torch import Tensor


def error_rate(predictions: Sequence[str], targets: Sequence[str]) -> float:
    """Mean over sentences of Levenshtein(prediction, target) / len(target) (an empty target counts as 1)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    if not targets:
        raise ValueError("error_rate needs at least one sentence")
    total = sum(
        Levenshtein.distance(p, t) / max(len(t), 1) for p, t in zip(predictions, targets, strict=True)
    )
    return total / len(targets)


def accuracy(predictions: Tensor | Sequence[int], labels: Tensor | Sequence[int]) -> float:
    """Share of predictions equal to their label; `predictions` may be class ids (N,) or scores (N, C)."""
    pred = torch.as_tensor(predictions)
    gold = torch.as_tensor(labels)
    if pred.dim() == gold.dim() + 1:
        pred = pred.argmax(dim=-1)  # (N,) from (N, C)
    if pred.shape != gold.shape:
        raise ValueError(f"predictions of shape {tuple(pred.shape)} for labels of shape {tuple(gold.shape)}")
    if gold.numel() == 0:
        raise ValueError("accuracy needs at least one label")
    return (pred.to(gold.device) == gold).float().mean().item()
