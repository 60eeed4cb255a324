"""Artifact files on disk: every path is built from a validated run id, never from a client's path."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ml.config import CHECKPOINT_NAME

RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_run_id(run_id: str) -> str:
    """`run_id` if it is a 32-character lowercase hex uuid; ValueError otherwise."""
    if not isinstance(run_id, str) or RUN_ID.fullmatch(run_id) is None:
        raise ValueError(f"invalid run id {str(run_id)[:40]!r}: expected 32 lowercase hex characters")
    return run_id


def validate_file_name(name: str) -> str:
    """`name` if it is one plain file name (letters, digits, `_ . -`, no `..`); ValueError otherwise."""
    if not isinstance(name, str) or FILE_NAME.fullmatch(name) is None or ".." in name:
        raise ValueError(f"invalid file name {str(name)[:40]!r}: use letters, digits, '_', '.', '-'")
    return name


class ArtifactStore:
    """Run folders under `root/runs/<run_id>`; `resolve()` maps stored relative paths back safely."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def run_dir(self, run_id: str, *, create: bool = False) -> Path:
        """The folder of one run's files (made only with create=True: reads never create folders)."""
        path = self.root / "runs" / validate_run_id(run_id)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_path(self, run_id: str) -> Path:
        """Where the run's checkpoint is (fit writes it in the run's folder)."""
        return self.run_dir(run_id) / CHECKPOINT_NAME

    def plot_path(self, run_id: str, name: str) -> Path:
        """Where the run's plot `name` is written (`.png` added unless `name` has it; the folder is made)."""
        name = validate_file_name(name)
        return self.run_dir(run_id, create=True) / (name if name.endswith(".png") else f"{name}.png")

    def relative(self, path: str | Path) -> str:
        """`path` (inside the store) relative to the root, with forward slashes, for the database."""
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"{path} is outside the artifacts folder")
        return resolved.relative_to(self.root).as_posix()

    def resolve(self, relative: str | Path) -> Path:
        """The absolute path of a stored relative path; ValueError if it would leave the root."""
        text = str(relative)
        pure = PurePosixPath(text.replace("\\", "/"))
        if not text or "\x00" in text or pure.is_absolute() or ".." in pure.parts or Path(text).is_absolute():
            raise ValueError(f"refusing artifact path {text[:80]!r}")
        resolved = (self.root / pure).resolve()  # follows symlinks, so a link out of the root is caught too
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ValueError(f"refusing artifact path {text[:80]!r}")
        return resolved
