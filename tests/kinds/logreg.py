"""A third model kind that lives only in the tests: multinomial logistic regression on 28x28 images.

Importing this module registers it (what INKWELL_KIND_MODULES=tests.kinds.logreg makes api and worker do).
It reuses the image recipe and the classifier predictor with a model of its own: nothing outside this
file knows it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.config import TrainConfig
from ml.inference import Classifier, load_classifier
from ml.kinds import ModelKind, register_kind
from ml.recipes import ImageRecipe


class LogisticRegression(nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.linear(x.flatten(1)), dim=1)  # (B, 1, 28, 28) -> (B, C)


def build(config: TrainConfig, n_classes: int) -> nn.Module:
    return LogisticRegression(n_classes)


def recipe(config: TrainConfig, data_dir: Path, device: torch.device) -> ImageRecipe:
    return ImageRecipe(config, data_dir, device, build)


def predictor(checkpoint: Mapping[str, Any], device: torch.device) -> Classifier:
    return load_classifier(checkpoint, device, build)


LOGREG = register_kind(ModelKind(
    name="logreg", data_kind="images", default_dataset="mnist-8k", metric="accuracy", higher_is_better=True,
    serves="predict", recipe=recipe, predictor=predictor,
    defaults={"learning_rate": 0.01, "epochs": 2, "batch_size": 64},
    description="logistic regression on the 784 pixels (a test-only kind)",
))
