"""Checkpoints: one file per run holding everything needed to resume training or serve the model.

Written atomically (a temporary file unique to the writer + rename) so a crash mid-save never leaves a
torn file, and read with `torch.load(weights_only=True)`: a checkpoint holds tensors, numbers, strings,
lists and dicts only.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch

from ml.errors import CheckpointError

FORMAT = "inkwell-checkpoint"
VERSION = 1


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> Path:
    """Write `payload` (plus format tags) to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique per writer, also across hosts
    torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; CheckpointError with one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or torn files
        raise CheckpointError(f"not an inkwell checkpoint: {path} ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"not an inkwell checkpoint: {path}")
    if data.get("version") != VERSION:
        raise CheckpointError(f"unsupported checkpoint version {data.get('version')!r} in {path}")
    return data
