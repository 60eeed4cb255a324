"""The model-kind registry: one `ModelKind` declaration per kind, looked up everywhere else.

Like torchvision's `register_model` / `get_model`: a kind is declared once (its name, the data it
trains on, its defaults, its metric, its training recipe and its predictor) and api/, core/, worker/
and the CLI only ever look kinds up. This module imports no torch: core/ reads names and metrics from
it, and a declaration's `recipe` and `predictor` import their models only when called.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: importing them would load torch
    from pathlib import Path

    import torch

    from ml.config import TrainConfig
    from ml.inference import Predictor
    from ml.recipes import Recipe

KIND_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DATA_KINDS = {"images": "images", "pairs": "text pairs"}  # data kind -> how a message names it
SERVES = ("predict", "transliterate")  # the serving endpoints a kind can answer


class UnknownKind(ValueError):
    """No kind is registered under a name."""


@dataclass(frozen=True)
class ModelKind:
    """Everything inkwell needs to know about one kind of model."""

    name: str  # "cnn": what runs, checkpoints and requests call it
    data_kind: str  # "images" | "pairs": the datasets it trains on
    default_dataset: str  # the dataset POST /train uses when none is named
    metric: str  # validation/test metric, e.g. "accuracy"
    higher_is_better: bool
    serves: str  # "predict" (an image classifier) | "transliterate" (a text-to-text model)
    recipe: Callable[[TrainConfig, Path, torch.device], Recipe]  # data, model, batches, loss, metric for fit
    predictor: Callable[[Mapping[str, Any], torch.device], Predictor]  # a loaded checkpoint ready to answer
    defaults: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig values of this kind
    options: tuple[str, ...] = ()  # TrainConfig fields only this kind reads (the CLI offers them)
    activation_layers: tuple[str, ...] = ()  # layers /activation-maps can show (none: not offered)
    description: str = ""

    def __post_init__(self) -> None:
        if not KIND_NAME.fullmatch(self.name):
            raise ValueError(f"invalid kind name {self.name!r}: lowercase letters, digits, '_' or '-', <= 32")
        if self.data_kind not in DATA_KINDS:
            raise ValueError(f"kind {self.name}: data_kind must be one of {', '.join(DATA_KINDS)}")
        if self.serves not in SERVES:
            raise ValueError(f"kind {self.name}: serves must be one of {', '.join(SERVES)}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def val_metric(self) -> str:
        """The per-epoch metric's name in responses: val_accuracy, val_error_rate, ..."""
        return f"val_{self.metric}"

    @property
    def test_metric(self) -> str:
        """The final metric's name: test_accuracy, test_error_rate, ..."""
        return f"test_{self.metric}"

    @property
    def data_words(self) -> str:
        return DATA_KINDS[self.data_kind]

    def best(self, values: Iterable[float]) -> float:
        """The best of `values` by this kind's direction (ValueError when empty)."""
        return max(values) if self.higher_is_better else min(values)

    def recognises(self, checkpoint: Mapping[str, Any]) -> bool:
        """Whether a checkpoint holds a model of this kind (fit records the kind's name in it)."""
        return checkpoint.get("model") == self.name


_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> ModelKind:
    """Add `kind` (registering the same declaration twice is a no-op; another one by that name is an error)."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing is not kind:
        raise ValueError(f"a model kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind (tests and plugins that register one for a while)."""
    _KINDS.pop(name, None)


@contextmanager
def registered(kind: ModelKind) -> Iterator[ModelKind]:
    """`kind` registered for the duration of a `with` block."""
    added = kind.name not in _KINDS
    register_kind(kind)
    try:
        yield kind
    finally:
        if added:
            unregister_kind(kind.name)


def get_kind(name: str) -> ModelKind:
    """The kind registered as `name`; UnknownKind (a ValueError) with the valid names otherwise."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise UnknownKind(f"unknown model {str(name)[:40]!r}; choose one of {', '.join(_KINDS)}")
    return kind


def find_kind(name: str) -> ModelKind | None:
    """The kind registered as `name`, or None."""
    return _KINDS.get(name) if isinstance(name, str) else None


def kind_names() -> tuple[str, ...]:
    """Every registered kind's name, in registration order."""
    return tuple(_KINDS)


def all_kinds() -> tuple[ModelKind, ...]:
    return tuple(_KINDS.values())


def kinds_for_data(data_kind: str) -> tuple[ModelKind, ...]:
    """The kinds that train on datasets of `data_kind`."""
    return tuple(k for k in _KINDS.values() if k.data_kind == data_kind)


def kinds_serving(endpoint: str) -> tuple[ModelKind, ...]:
    """The kinds whose models answer `endpoint` ("predict" or "transliterate"), first one the default."""
    return tuple(k for k in _KINDS.values() if k.serves == endpoint)


def kind_of_checkpoint(checkpoint: Mapping[str, Any]) -> ModelKind:
    """The registered kind that recognises `checkpoint`; UnknownKind when none does."""
    for kind in _KINDS.values():
        if kind.recognises(checkpoint):
            return kind
    raise UnknownKind(f"the checkpoint holds a {str(checkpoint.get('model'))[:40]!r} model, which is not a "
                      f"registered kind ({', '.join(_KINDS)})")


def load_kind_modules(names: Iterable[str]) -> list[str]:
    """Import modules that register more kinds (INKWELL_KIND_MODULES); returns the kinds added."""
    before = set(_KINDS)
    for name in names:
        if name.strip():
            importlib.import_module(name.strip())
    return [k for k in _KINDS if k not in before]
