"""`fit`: one plain training loop for every kind of model, with callbacks, cancel checks and resume.

After every epoch the loop writes a checkpoint (weights, optimizer, config, vocab/classes, epoch, history,
RNG states), so a crashed run resumes from its last finished epoch and continues exactly as it would have.
Beside it, `best.pt` holds the weights of the epoch with the best validation metric: a later epoch replaces
it only when strictly better (ties keep the earliest epoch; NaN never counts). best.pt is written before the
checkpoint that records its epoch, so a crash between the two leaves a best.pt the resumed run rewrites.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ml.checkpoint import load_checkpoint, save_checkpoint
from ml.config import BEST_NAME, CHECKPOINT_NAME, TrainConfig
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
    best_epoch: int | None = None  # the epoch best.pt holds (None: no finite validation value)
    best_checkpoint: Path | None = None  # best.pt, when it holds best_epoch
    best_test_metric: float | None = None  # the test metric of best.pt's weights

    def final_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"test_{self.metric}": self.test_metric, "checkpoint": str(self.checkpoint)}
        if self.best_checkpoint is not None:
            out.update({"best_epoch": self.best_epoch, f"best_test_{self.metric}": self.best_test_metric,
                        "best_checkpoint": str(self.best_checkpoint)})
        return out


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


def improves(value: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether validation `value` beats `best` strictly (NaN never does; anything finite beats None)."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better else value < best


def _best_file_epoch(path: Path) -> int | None:
    """The epoch a best.pt holds, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        return int(load_checkpoint(path, map_location="cpu")["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


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
    on_saved: Callable[[Path], None] | None = None,
) -> FitResult:
    """Train `config` and return its history and test metric.

    on_epoch(result) runs after each epoch's checkpoint is written; should_cancel() is checked between
    batches (raise ml.errors.Cancelled when it says so); on_batch(done, total) reports progress.
    With resume=True an existing checkpoint in out_dir for the same config continues where it stopped.
    `dataset_spec` is where to read config.data from when config.data is a dataset *name* (the service
    stores names, so a run resumes on a machine whose data folder is elsewhere). `write_guard()` wraps
    every checkpoint write (the worker fences it with its lease: a worker that lost the run writes nothing);
    `on_saved(path)` runs after each file is written (checkpoint.pt or best.pt: the worker uploads it).
    """
    kind = get_kind(config.model)
    spec = dataset_spec or config.data
    guard = write_guard or nullcontext
    holds = data_kind_of_spec(spec)
    if holds != kind.data_kind:
        raise DataError(f"dataset {config.data!r} holds {DATA_KINDS[holds]}; it cannot train a {kind.name} model")
    dev = pick_device(device)
    out = Path(out_dir)
    ckpt_path, best_path = out / CHECKPOINT_NAME, out / BEST_NAME
    torch.manual_seed(config.seed)
    task: Recipe = kind.recipe(replace(config, data=spec), Path(data_dir), dev)
    model = task.build_model().to(dev)
    optimizer = _optimizer(config, model)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[EpochResult] = []
    best_epoch: int | None = None
    best_value: float | None = None
    best_file_ok = False  # whether best.pt holds best_epoch

    def save(path: Path, payload: dict[str, Any]) -> None:
        with guard():
            save_checkpoint(path, payload)
        if on_saved is not None:
            on_saved(path)

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
        best = saved.get("best") or {}
        best_epoch, best_value = best.get("epoch"), best.get("value")
        best_file_ok = best_epoch is not None and _best_file_epoch(best_path) == best_epoch

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
        weights = {"model": config.model, "config": config.to_dict(), "state_dict": model.state_dict(),
                   "epoch": epoch, "meta": task.meta()}
        if improves(val, best_value, kind.higher_is_better):
            best_epoch, best_value = epoch, val
            save(best_path, {**weights, "val": {task.metric: val}})  # before the checkpoint naming it
            best_file_ok = True
        save(ckpt_path, {**weights, "optimizer": optimizer.state_dict(), "history": [asdict(h) for h in history],
                         "rng": _rng_state(generator), "best": {"epoch": best_epoch, "value": best_value}})
        if on_epoch is not None:
            on_epoch(result)

    test = task.evaluate(model, "test")
    saved = load_checkpoint(ckpt_path, map_location="cpu")
    saved["test"] = {task.metric: test}
    save(ckpt_path, {k: v for k, v in saved.items() if k not in ("format", "version")})
    best_test = None
    if best_file_ok:
        best_saved = load_checkpoint(best_path, map_location="cpu")
        if best_epoch == epoch_of(saved):
            best_test = test  # the last epoch is the best one: same weights
        else:
            best_model = task.build_model().to(dev)
            best_model.load_state_dict(best_saved["state_dict"])
            best_test = task.evaluate(best_model, "test")
        best_saved["test"] = {task.metric: best_test}
        save(best_path, {k: v for k, v in best_saved.items() if k not in ("format", "version")})
    return FitResult(config, history, test, task.metric, ckpt_path, str(dev), resumed_from=start_epoch,
                     best_epoch=best_epoch, best_checkpoint=best_path if best_file_ok else None,
                     best_test_metric=best_test)


def epoch_of(checkpoint: dict[str, Any]) -> int:
    return int(checkpoint["epoch"])
