"""Dataset spec strings: which loader a spec names, and what kind of data a folder holds."""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a dataset name: one folder, never a path
IMAGE_NAMES = ("kmnist", "mnist", "fashion-mnist")


def folder_kind(folder: Path) -> str | None:
    """'images' for a folder of IDX files, 'pairs' for train-/val-*.txt pairs, None otherwise."""
    try:
        if not folder.is_dir():
            return None
        names = [p.name for p in folder.iterdir() if p.is_file()]
    except OSError:  # unreadable, or a name the file system refuses
        return None
    if any("-images-idx3-ubyte" in n for n in names) and any("-labels-idx1-ubyte" in n for n in names):
        return "images"
    if any(n.startswith("train-") and n.endswith(".txt") for n in names) and any(
        n.startswith("val-") and n.endswith(".txt") for n in names
    ):
        return "pairs"
    return None


def spec_for_name(name: str, data_dir: Path) -> str | None:
    """The spec string for a dataset *name* (a built-in name or a folder inside data_dir), or None."""
    if name in IMAGE_NAMES:
        return name
    if not NAME.match(name):
        return None
    kind = folder_kind(data_dir / name)
    if kind == "images":
        return f"idx:{data_dir / name}"
    if kind == "pairs":
        return f"pairs:{data_dir / name}"
    return None


def data_kind_of_spec(spec: str) -> str:
    """'pairs' for text-pair specs (pairs:PATH), 'images' for every other spec."""
    return "pairs" if spec.startswith("pairs:") else "images"
