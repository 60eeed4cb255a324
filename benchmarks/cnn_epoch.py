"""CNN training epoch at batch 8: inkwell's index batches against a `torch.utils.data.DataLoader` loop.

Target: an epoch over mnist-8k's train split (6,400 images, 800 steps) with `ml.tasks.ImageTask.batches`
is at least as fast as the same epoch fed by `DataLoader(TensorDataset(images, labels), batch_size=8,
shuffle=True)` over the same tensors, with the same model (from the same initial weights), optimizer
(Adam at the assignment's rate) and step. The batch-only times (iterating without training) show the
data path's own cost.

    .venv/bin/python -m benchmarks.cnn_epoch --repeats 3
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import apply_threads, base_parser, emit, machine_info, ratio, summary, timed
from ml.config import TrainConfig
from ml.models.cnn import CNN
from ml.tasks import ImageTask

Batches = Callable[[], Iterable[tuple[Tensor, Tensor]]]


def reference_loader(images: Tensor, labels: Tensor, batch_size: int, seed: int) -> DataLoader:
    """The textbook loop's data: a shuffling DataLoader over a TensorDataset (no workers: 2 cores)."""
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def train_epoch(model: CNN, batches: Iterable[tuple[Tensor, Tensor]], lr: float) -> tuple[float, int]:
    """One pass of the plain step (fresh Adam): (mean NLL loss, steps)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total, steps = torch.zeros(()), 0
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        steps += 1
    return float(total) / max(steps, 1), steps


def iterate_only(batches: Iterable[tuple[Tensor, Tensor]]) -> int:
    """Walk the batches without training: the data path's own cost."""
    return sum(1 for _ in batches)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0], repeats=3)
    args = p.parse_args(argv)
    apply_threads(args.threads)
    info = machine_info()
    config = TrainConfig.for_model("cnn", f"idx:{args.data_dir / 'mnist-8k'}", seed=args.seed)
    task = ImageTask(config, args.data_dir, torch.device("cpu"))
    images, labels = task.splits["train"]
    bs = config.batch_size
    torch.manual_seed(args.seed)
    initial = task.build_model().state_dict()  # trained from scratch: fresh weights each pass
    paths: dict[str, Batches] = {
        "inkwell": lambda: task.batches(bs, torch.Generator().manual_seed(args.seed)),
        "reference_dataloader": lambda: reference_loader(images, labels, bs, args.seed),
    }
    model = task.build_model()
    for name in paths:  # warm-up, untimed: first calls allocate and pick kernels
        train_epoch(model, itertools.islice(paths[name](), 50), config.learning_rate)
    times: dict[str, list[float]] = {name: [] for name in paths}
    data_times: dict[str, list[float]] = {name: [] for name in paths}
    last: dict[str, Any] = {}
    for rep in range(args.repeats):
        for name in paths if rep % 2 == 0 else reversed(list(paths)):
            model.load_state_dict(copy.deepcopy(initial))
            torch.manual_seed(args.seed + rep)  # same dropout stream for both paths
            seconds, (loss, steps) = timed(
                lambda name=name: train_epoch(model, paths[name](), config.learning_rate))
            times[name].append(seconds)
            last[name] = {"mean_train_loss": round(loss, 4), "steps": steps}
            data_seconds, _ = timed(lambda name=name: iterate_only(paths[name]()))
            data_times[name].append(data_seconds)

    med = {name: summary(ts) for name, ts in times.items()}
    speedup = ratio(med["reference_dataloader"]["median_s"], med["inkwell"]["median_s"])
    result = {
        "benchmark": "cnn_epoch",
        "machine": info,
        "setup": {"dataset": "mnist-8k train split", "train_images": len(labels), "batch_size": bs,
                  "optimizer": "adam", "learning_rate": config.learning_rate, "dropout": config.dropout,
                  "repeats": args.repeats, "model": "trained from scratch (same initial weights each pass)",
                  "timed": "training steps only (no validation)"},
        "times": med,
        "batches_only": {name: summary(ts) for name, ts in data_times.items()},
        "last_pass": last,
        "ratios": {"reference_over_inkwell": speedup},
        "targets": {"speedup_at_least": 1.0, "met": speedup >= 1.0},
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
