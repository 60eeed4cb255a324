"""Training configuration: one dataclass for every kind of model; each kind (ml.kinds) declares its defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ml.kinds import get_kind

OPTIMIZERS = ("adam", "sgd")
CHECKPOINT_NAME = "checkpoint.pt"  # the file `fit` writes (and resumes from) in its output folder
BEST_NAME = "best.pt"  # beside it: the weights of the epoch with the best validation metric so far
CHECKPOINTS = {"best": BEST_NAME, "last": CHECKPOINT_NAME}  # what "checkpoint": "best" | "last" names


@dataclass
class TrainConfig:
    model: str  # a registered kind (ml.kinds): its declaration holds the defaults below it overrides
    data: str  # dataset spec: kmnist | mnist | fashion-mnist | idx:PATH | pairs:PATH
    learning_rate: float = 0.0005
    epochs: int = 20
    batch_size: int = 8
    optimizer: str = "adam"
    dropout: float = 0.3
    l2_decay: float = 0.0
    seed: int = 42
    # seq2seq only
    attention: bool = False
    hidden_size: int = 128
    max_length: int = 20  # keep pairs whose source and target are shorter than this
    direction: str = "spa-eng"  # source-target; "eng-spa" flips the pairs
    # both: cap on examples per split (None = all); for quick trials and tests
    limit: int | None = None

    def __post_init__(self) -> None:
        get_kind(self.model)  # UnknownKind (a ValueError) names the registered kinds
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be > 0")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.l2_decay < 0:
            raise ValueError("l2_decay must be >= 0")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")

    @classmethod
    def for_model(cls, model: str, data: str, **overrides: Any) -> TrainConfig:
        """The defaults of kind `model`, with `overrides` (None values ignored) on top."""
        values = {**get_kind(model).defaults, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(model=model, data=data, **values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def metric(self) -> str:
        """Name of the kind's validation/test metric (e.g. accuracy, error_rate)."""
        return get_kind(self.model).metric
