"""CNN training epoch at batch 8: inkwell's index batches against a `torch.utils.data.DataLoader` loop.

Target: an epoch over mnist-8k's train split (6,400 images, 800 steps) with `ml.tasks.ImageTask.batches`
is at least as fast as the same epoch fed by `DataLoader(TensorDataset(images, labels), batch_size=8,
shuffle=True)` over the same tensors, with the same model (from the same initial weights), optimizer
(Adam at the assignment's rate) and step.

The two paths differ only in where batches come from, about 1% of an epoch, less than the drift of a
shared machine between two 3-second passes. So besides whole passes one after the other, each repeat also
runs both epochs interleaved, 50 steps of one then 50 of the other, so that both see the same machine;
the target is judged on those. The batch-only times (iterating without training) give the data path's
own cost.

    .venv/bin/python -m benchmarks.cnn_epoch --repeats 10
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import apply_threads, base_parser, emit, machine_info, median, ratio, summary, timed
from ml.config import TrainConfig
from ml.kinds import get_kind

Batches = Callable[[], Iterable[tuple[Tensor, Tensor]]]
CHUNK = 50  # steps per turn in the interleaved epochs


def reference_loader(images: Tensor, labels: Tensor, batch_size: int, seed: int) -> DataLoader:
    """The textbook loop's data: a shuffling DataLoader over a TensorDataset (no workers: 2 cores)."""
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def train_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[tuple[Tensor, Tensor]],
    limit: int | None,
) -> tuple[Tensor, int]:
    """Up to `limit` plain steps (all when None): (summed NLL loss, steps done)."""
    total, steps = torch.zeros(()), 0
    for images, labels in itertools.islice(batches, limit):
        optimizer.zero_grad(set_to_none=True)
        loss = F.nll_loss(model(images), labels)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        steps += 1
    return total, steps


def train_epoch(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], lr: float) -> tuple[float, int]:
    """One pass of the plain step (fresh Adam): (mean NLL loss, steps)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    total, steps = train_steps(model, optimizer, iter(batches), None)
    return float(total) / max(steps, 1), steps


def interleaved_epochs(
    paths: dict[str, Batches], make_model: Callable[[], nn.Module], lr: float, chunk: int = CHUNK
) -> dict[str, tuple[float, float, int]]:
    """One epoch per path, `chunk` steps of each in turn: {name: (seconds, mean loss, steps)}."""
    runs: dict[str, dict[str, Any]] = {}
    for name in paths:
        model = make_model().train()
        runs[name] = {"model": model, "opt": torch.optim.Adam(model.parameters(), lr=lr), "batches": None,
                      "seconds": 0.0, "loss": torch.zeros(()), "steps": 0, "done": False}
    turn = 0
    while not all(r["done"] for r in runs.values()):
        for name in paths if turn % 2 == 0 else list(paths)[::-1]:
            r = runs[name]
            if r["done"]:
                continue
            started = time.perf_counter()
            if r["batches"] is None:
                r["batches"] = iter(paths[name]())
            loss, steps = train_steps(r["model"], r["opt"], r["batches"], chunk)
            r["seconds"] += time.perf_counter() - started
            r["loss"] += loss
            r["steps"] += steps
            r["done"] = steps < chunk
        turn += 1
    return {n: (r["seconds"], float(r["loss"]) / max(r["steps"], 1), r["steps"]) for n, r in runs.items()}


def iterate_only(batches: Iterable[tuple[Tensor, Tensor]]) -> int:
    """Walk the batches without training: the data path's own cost."""
    return sum(1 for _ in batches)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = base_parser(__doc__.splitlines()[0], repeats=10)
    args = p.parse_args(argv)
    apply_threads(args.threads)
    info = machine_info()
    config = TrainConfig.for_model("cnn", f"idx:{args.data_dir / 'mnist-8k'}", seed=args.seed)
    task = get_kind("cnn").recipe(config, args.data_dir, torch.device("cpu"))
    images, labels = task.splits["train"]
    bs, lr = config.batch_size, config.learning_rate
    torch.manual_seed(args.seed)
    initial = task.build_model().state_dict()  # trained from scratch: fresh weights each pass

    def fresh_model() -> nn.Module:
        model = task.build_model()
        model.load_state_dict(copy.deepcopy(initial))
        return model

    paths: dict[str, Batches] = {
        "inkwell": lambda: task.batches(bs, torch.Generator().manual_seed(args.seed)),
        "reference_dataloader": lambda: reference_loader(images, labels, bs, args.seed),
    }
    for name in paths:  # warm-up, untimed: first calls allocate and pick kernels
        train_epoch(fresh_model(), itertools.islice(paths[name](), 50), lr)
    times: dict[str, list[float]] = {name: [] for name in paths}
    woven: dict[str, list[float]] = {name: [] for name in paths}
    data_times: dict[str, list[float]] = {name: [] for name in paths}
    last: dict[str, Any] = {}
    for rep in range(args.repeats):
        for name in paths if rep % 2 == 0 else list(paths)[::-1]:
            torch.manual_seed(args.seed + rep)  # same dropout stream for both paths
            seconds, (loss, steps) = timed(lambda name=name: train_epoch(fresh_model(), paths[name](), lr))
            times[name].append(seconds)
            last[name] = {"mean_train_loss": round(loss, 4), "steps": steps}
            data_seconds, _ = timed(lambda name=name: iterate_only(paths[name]()))
            data_times[name].append(data_seconds)
        for name, (seconds, loss, steps) in interleaved_epochs(paths, fresh_model, lr).items():
            woven[name].append(seconds)
            last[f"{name}_interleaved"] = {"mean_train_loss": round(loss, 4), "steps": steps}

    med = {name: summary(ts) for name, ts in times.items()}
    woven_med = {name: summary(ts) for name, ts in woven.items()}
    data_med = {name: summary(ts) for name, ts in data_times.items()}
    woven_speedup = ratio(woven_med["reference_dataloader"]["median_s"], woven_med["inkwell"]["median_s"])
    result = {
        "benchmark": "cnn_epoch",
        "machine": info,
        "setup": {"dataset": "mnist-8k train split", "train_images": len(labels), "batch_size": bs,
                  "optimizer": "adam", "learning_rate": lr, "dropout": config.dropout,
                  "repeats": args.repeats, "interleave_chunk_steps": CHUNK,
                  "model": "trained from scratch (same initial weights each pass)",
                  "timed": "training steps only (no validation)"},
        "times": med,
        "interleaved_times": woven_med,
        "batches_only": data_med,
        "last_pass": last,
        "ratios": {
            "reference_over_inkwell_interleaved": woven_speedup,
            "reference_over_inkwell_sequential": ratio(med["reference_dataloader"]["median_s"],
                                                       med["inkwell"]["median_s"]),
            "interleaved_paired_median": round(median([
                r / i for r, i in zip(woven["reference_dataloader"], woven["inkwell"], strict=True)]), 3),
            "batches_only_reference_over_inkwell": ratio(data_med["reference_dataloader"]["median_s"],
                                                         data_med["inkwell"]["median_s"]),
        },
        "targets": {"speedup_at_least": 1.0, "judged_on": "interleaved", "met": woven_speedup >= 1.0},
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
