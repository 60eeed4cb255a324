"""`fit`: one plain training loop for every kind of model, with callbacks, cancel checks and resume.

After every epoch the loop writes a checkpoint (weights, optimizer, config, vocab/classes, epoch, history,
RNG states), so a crashed run resumes from its last finished epoch and continues exactly as it would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.config import CHECKPOINT_NAME, TrainConfig
from ml.data.specs import data_kind_of_spec
from ml.errors import Cancelled, CheckpointError, DataError
from ml.kinds import DATA_KINDS, get_kind
from ml.recipes import Recipe


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_metric: float
    seconds: float
    metric: str = "accuracy"  # which metric val_metric is

    def as_json(self) -> dict[str, Any]:
        """The CLI/API shape: val_accuracy or val_error_rate."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, f"val_{self.metric}": self.val_metric,
                "seconds": self.seconds}


@dataclass
class FitResult:
    config: TrainConfig
    history: list[EpochResult]
    test_metric: float
    metric: str
    checkpoint: Path
    device: str
    resumed_from: int = 0  # epochs already done when this call started
    extra: dict[str, Any] = field(default_factory=dict)

    def final_json(self) -> dict[str, Any]:
        return {f"test_{self.metric}": self.test_metric, "checkpoint": str(self.checkpoint)}


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _optimizer(config: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate, weight_decay=config.l2_decay)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.l2_decay)


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"batch_order": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(state["batch_order"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _same_training(saved: dict[str, Any], config: TrainConfig) -> bool:
    """A checkpoint may be resumed when everything but the epoch count matches."""
    mine = {k: v for k, v in config.to_dict().items() if k != "epochs"}
    return {k: v for k, v in saved.items() if k != "epochs"} == mine


def fit(
    config: TrainConfig,
    *,
    data_dir: Path | str,
    out_dir: Path | str,
    on_epoch: Callable[[EpochResult], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
    resume: bool = True,
    device: str | None = None,
    dataset_spec: str | None = None,
    write_guard: Callable[[], AbstractContextManager[object]] | None = None,
) -> FitResult:
    """Train `config` and return its history and test metric.

    on_epoch(result) runs after each epoch's checkpoint is written; should_cancel() is checked between
    batches (raise ml.errors.Cancelled when it says so); on_batch(done, total) reports progress.
    With resume=True an existing checkpoint in out_dir for the same config continues where it stopped.
    `dataset_spec` is where to read config.data from when config.data is a dataset *name* (the service
    stores names, so a run resumes on a machine whose data folder is elsewhere). `write_guard()` wraps
    every checkpoint write (the worker fences it with its lease: a worker that lost the run writes nothing).
    """
    kind = get_kind(config.model)
    spec = dataset_spec or config.data
    guard = write_guard or nullcontext
    holds = data_kind_of_spec(spec)
    if holds != kind.data_kind:
        raise DataError(f"dataset {config.data!r} holds {DATA_KINDS[holds]}; it cannot train a {kind.name} model")
    dev = pick_device(device)
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT_NAME
    torch.manual_seed(config.seed)
    task: Recipe = kind.recipe(replace(config, data=spec), Path(data_dir), dev)
    model = task.build_model().to(dev)
    optimizer = _optimizer(config, model)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[EpochResult] = []

    start_epoch = 0
    if resume and ckpt_path.exists():
        saved = load_checkpoint(ckpt_path, map_location=dev)
        if not _same_training(saved["config"], config):
            raise CheckpointError(f"{ckpt_path} belongs to a different configuration; use another output folder")
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        _restore_rng(saved["rng"], generator)
        history = [EpochResult(**h) for h in saved["history"]]
        start_epoch = saved["epoch"]

    n_batches = -(-task.n_train // config.batch_size)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for batch in task.batches(config.batch_size, generator):
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"cancelled during epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss(model, batch)
            loss.backward()
            optimizer.step()
            total += loss.detach()  # stays on the device: no sync per batch
            count += 1
            if on_batch is not None:
                on_batch(count, n_batches)
        train_loss = float(total) / max(count, 1)
        val = task.evaluate(model, "val")
        result = EpochResult(epoch, train_loss, val, time.perf_counter() - started, task.metric)
        history.append(result)
        payload = {
            "model": config.model, "config": config.to_dict(), "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "history": [asdict(h) for h in history],
            "meta": task.meta(), "rng": _rng_state(generator),
        }
        with guard():
            save_checkpoint(ckpt_path, payload)
        if on_epoch is not None:
            on_epoch(result)

    test = task.evaluate(model, "test")
    saved = load_checkpoint(ckpt_path, map_location="cpu")
    saved["test"] = {task.metric: test}
    with guard():
        save_checkpoint(ckpt_path, {k: v for k, v in saved.items() if k not in ("format", "version")})
    return FitResult(config, history, test, task.metric, ckpt_path, str(dev), resumed_from=start_epoch)
