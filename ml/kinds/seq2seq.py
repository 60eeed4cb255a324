"""The transliteration kind: a character-level seq2seq model (bi-LSTM encoder, LSTM decoder, attention)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml.kinds.registry import ModelKind, register_kind

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ml.config import TrainConfig
    from ml.inference import Transliterator
    from ml.recipes import PairRecipe


def build(config: TrainConfig, src_vocab_size: int, tgt_vocab_size: int) -> nn.Module:
    from ml.models.seq2seq import Seq2Seq

    return Seq2Seq(src_vocab_size, tgt_vocab_size, hidden_size=config.hidden_size, attention=config.attention,
                   dropout=config.dropout)


def recipe(config: TrainConfig, data_dir: Path, device: torch.device) -> PairRecipe:
    from ml.recipes import PairRecipe

    return PairRecipe(config, data_dir, device, build)


def predictor(checkpoint: Mapping[str, Any], device: torch.device) -> Transliterator:
    from ml.inference import load_transliterator

    return load_transliterator(checkpoint, device, build)


SEQ2SEQ_KIND = register_kind(ModelKind(
    name="seq2seq",
    data_kind="pairs",
    default_dataset="spa-eng",
    metric="error_rate",
    higher_is_better=False,
    serves="transliterate",
    recipe=recipe,
    predictor=predictor,
    defaults={"learning_rate": 0.003, "epochs": 50, "batch_size": 64, "dropout": 0.3},
    options=("attention", "hidden_size", "max_length", "direction"),
    description="character-level Spanish -> English: bi-LSTM encoder, LSTM decoder, optional bilinear attention",
))
