"""Training recipes: what differs between kinds inside `fit` (data, model, batches, loss, validation metric).

A kind (ml.kinds) names its recipe and passes its model builder. Both recipes keep their whole dataset as
tensors on the training device and cut batches by index (a seeded permutation per epoch), which is faster
than a DataLoader for data this small.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ml.config import TrainConfig
from ml.data.images import ImageSet, load_images
from ml.data.text import PAD, Vocab, load_pairs, pad_batch
from ml.decoding import translate
from ml.metrics import error_rate


class Recipe(Protocol):
    metric: str  # the kind's metric: "accuracy" | "error_rate"
    n_train: int

    def build_model(self) -> nn.Module: ...
    def meta(self) -> dict[str, Any]: ...
    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]: ...
    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor: ...
    def evaluate(self, model: nn.Module, split: str) -> float: ...


def _permuted_slices(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator).to(device)  # (N,)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]  # (B,)


class ImageRecipe:
    """An image classifier (log-probabilities out) on an image dataset: NLL loss, accuracy."""

    metric = "accuracy"

    def __init__(self, config: TrainConfig, data_dir: Path, device: torch.device,
                 build: Callable[[TrainConfig, int], nn.Module]):
        splits = load_images(config.data, data_dir, seed=config.seed)
        self.config, self.device, self.name, self.classes = config, device, splits.name, splits.classes
        self.build = build
        self.splits: dict[str, ImageSet] = {}
        for split in ("train", "val", "test"):
            part: ImageSet = getattr(splits, split)
            n = config.limit  # None keeps all
            self.splits[split] = ImageSet(part.images[:n].to(device), part.labels[:n].to(device))
        self.n_train = len(self.splits["train"].labels)

    def build_model(self) -> nn.Module:
        return self.build(self.config, len(self.classes))

    def meta(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "dataset": self.name}

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        images, labels = self.splits["train"]
        for idx in _permuted_slices(self.n_train, batch_size, generator, self.device):
            yield images[idx], labels[idx]  # (B, 1, 28, 28), (B,)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        images, labels = batch
        return F.nll_loss(model(images), labels)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, split: str) -> float:
        model.eval()
        images, labels = self.splits[split]
        correct = 0
        for start in range(0, len(labels), 1024):
            log_probs = model(images[start : start + 1024])  # (B, C)
            correct += int((log_probs.argmax(dim=1) == labels[start : start + 1024]).sum())
        return correct / max(len(labels), 1)


class PairRecipe:
    """A seq2seq model on text pairs: cross-entropy (PAD ignored), greedy error rate."""

    metric = "error_rate"

    def __init__(self, config: TrainConfig, data_dir: Path, device: torch.device,
                 build: Callable[[TrainConfig, int, int], nn.Module]):
        splits = load_pairs(config.data, data_dir, direction=config.direction, max_length=config.max_length)
        self.config, self.device, self.name, self.build = config, device, splits.name, build
        self.src_vocab: Vocab = splits.src_vocab
        self.tgt_vocab: Vocab = splits.tgt_vocab
        self.pairs = {s: getattr(splits, s)[: config.limit] for s in ("train", "val", "test")}
        train = self.pairs["train"]
        self.n_train = len(train)
        # Whole training set padded once; batches are trimmed to their own longest sequence.
        self.src, self.src_len = pad_batch([self.src_vocab.encode(s) for s, _ in train])  # (N, S), (N,)
        tgt = [self.tgt_vocab.encode(t) for _, t in train]
        self.tgt_in, self.tgt_len = pad_batch(tgt, add_sos=True)  # (N, T+1), (N,) lengths stay on the CPU
        self.tgt_out, _ = pad_batch(tgt, add_eos=True)  # (N, T+1)
        self.src, self.src_len_dev = self.src.to(device), self.src_len.to(device)
        self.tgt_in, self.tgt_out = self.tgt_in.to(device), self.tgt_out.to(device)

    def build_model(self) -> nn.Module:
        return self.build(self.config, len(self.src_vocab), len(self.tgt_vocab))

    def meta(self) -> dict[str, Any]:
        return {"src_vocab": self.src_vocab.to_list(), "tgt_vocab": self.tgt_vocab.to_list(), "dataset": self.name}

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        """The assignment's batches: slices of a fresh random permutation, each padded to its own longest row.

        Not bucketed by length: a batch holds pairs of any lengths, as the reference's shuffled pairs do
        (length-bucketed batches trained the model without attention measurably worse; docs/fidelity.md).
        The encoder runs these padded batches in one fused call (`Seq2Seq._encode_padded`), not packed.
        """
        cpu = torch.device("cpu")
        for idx in _permuted_slices(self.n_train, batch_size, generator, cpu):  # (B,) on the CPU
            s_max, t_max = int(self.src_len[idx].max()), int(self.tgt_len[idx].max())
            rows = idx.to(self.device)  # (B,)
            yield (self.src[rows, :s_max], self.src_len_dev[rows],  # (B, S), (B,)
                   self.tgt_in[rows, :t_max], self.tgt_out[rows, :t_max])  # (B, T), (B, T)

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
        src, src_len, tgt_in, tgt_out = batch
        logits = model(src, src_len, tgt_in)  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt_out.reshape(-1), ignore_index=PAD)

    def evaluate(self, model: nn.Module, split: str, decoding: str = "greedy", **kwargs: Any) -> float:
        pairs = self.pairs[split]
        hyps = translate(model, self.src_vocab, self.tgt_vocab, [s for s, _ in pairs], decoding=decoding,
                         max_length=2 * self.config.max_length + 10, device=self.device, **kwargs)
        return error_rate([h[0].text for h in hyps], [t for _, t in pairs])
