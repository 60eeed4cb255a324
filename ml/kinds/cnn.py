"""The image classifier kind: the assignment's CNN on KMNIST (or any 28x28 IDX image set)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.kinds.registry import ModelKind, register_kind

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ml.config import TrainConfig
    from ml.inference import Classifier
    from ml.recipes import ImageRecipe


def build(config: TrainConfig, n_classes: int) -> nn.Module:
    from ml.models.cnn import CNN

    return CNN(n_classes=n_classes, dropout=config.dropout)


def recipe(config: TrainConfig, data_dir: Path, device: torch.device) -> ImageRecipe:
    from ml.recipes import ImageRecipe

    return ImageRecipe(config, data_dir, device, build)


def predictor(checkpoint: Mapping[str, Any], device: torch.device) -> Classifier:
    from ml.inference import load_classifier

    return load_classifier(checkpoint, device, build)


CNN_KIND = register_kind(ModelKind(
    name="cnn",
    data_kind="images",
    default_dataset="kmnist",
    metric="accuracy",
    higher_is_better=True,
    serves="predict",
    recipe=recipe,
    predictor=predictor,
    defaults={"learning_rate": 0.0005, "epochs": 20, "batch_size": 8, "dropout": 0.3},
    activation_layers=("conv1", "conv2"),
    description="the assignment's CNN: conv 8@5x5, pool, conv 16@3x3, pool, 576-600-120-n_classes",
))
