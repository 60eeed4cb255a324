"""Image dataset specs (`kmnist`, `mnist`, `fashion-mnist`, `idx:PATH`) -> train/val/test splits.

Images become float32 tensors (N, 1, 28, 28) scaled as uint8 / 256, so every value lies in [0, 1).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ml.data.catalog import BUILTIN, KMNIST_NPZ, RAW_STEMS, find_file
from ml.data.idx import read_idx
from ml.errors import DataError

DOWNLOAD_TIMEOUT_S = 10.0
_IMAGES_RE = re.compile(r"^(?P<prefix>.+)-images-idx3-ubyte(\.gz)?$")


class ImageSet(NamedTuple):
    images: Tensor  # (N, 1, 28, 28) float32 in [0, 1)
    labels: Tensor  # (N,) int64


@dataclass
class ImageSplits:
    name: str
    classes: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet


def to_image_set(images: np.ndarray, labels: np.ndarray, source: str) -> ImageSet:
    """Check uint8 images (N, 28, 28) and integer labels (N,) and convert them to tensors."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{source}: expected images of shape (N, 28, 28), got {tuple(images.shape)}")
    if images.dtype != np.uint8:
        raise DataError(f"{source}: expected uint8 pixels, got {images.dtype}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        got = f"{labels.dtype} {tuple(labels.shape)}"
        raise DataError(f"{source}: expected a 1-D integer label array, got {got}")
    if len(images) != len(labels):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels")
    if len(labels) and labels.min() < 0:
        raise DataError(f"{source}: negative labels")
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)  # (N, 28, 28)
    x = x.div_(256.0).unsqueeze(1)  # (N, 1, 28, 28)
    y = torch.from_numpy(labels.astype(np.int64))  # (N,)
    return ImageSet(x, y)


def _subset(s: ImageSet, idx: Tensor) -> ImageSet:
    return ImageSet(s.images[idx], s.labels[idx])


def split_holdout(s: ImageSet, fractions: tuple[float, ...], seed: int) -> list[ImageSet]:
    """Seeded random split: the first part gets what the later `fractions` leave over."""
    n = len(s.labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))  # (N,)
    sizes = [int(n * f) for f in fractions]
    parts, start = [], n - sum(sizes)
    parts.append(_subset(s, perm[:start]))
    for size in sizes:
        parts.append(_subset(s, perm[start : start + size]))
        start += size
    return parts


def _read_builtin(spec: str, root: Path) -> tuple[ImageSet, ImageSet] | None:
    """(train, test) from the raw IDX files (or KMNIST's npz files); None when any file is missing."""
    folder, _ = BUILTIN[spec]
    raw = root / folder / "raw"
    paths = [find_file(raw, stem) for stem in RAW_STEMS]
    if all(p is not None for p in paths):
        arrays = [read_idx(p) for p in paths]
        return (
            to_image_set(arrays[0], arrays[1], f"{spec} training files in {raw}"),
            to_image_set(arrays[2], arrays[3], f"{spec} test files in {raw}"),
        )
    if spec == "kmnist" and all((root / folder / n).is_file() for n in KMNIST_NPZ):
        arrays = [_read_npz(root / folder / n) for n in KMNIST_NPZ]
        return (
            to_image_set(arrays[0], arrays[1], f"kmnist training npz files in {root / folder}"),
            to_image_set(arrays[2], arrays[3], f"kmnist test npz files in {root / folder}"),
        )
    return None


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz["arr_0"]
    except KeyError:
        raise DataError(f"npz file {path} has no 'arr_0' array") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read npz file {path}: {exc}") from None


def _try_download(spec: str, root: Path) -> None:
    """Ask torchvision to fetch the raw files; any failure (no network, bad mirror) is swallowed."""
    folder, _ = BUILTIN[spec]
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        import torchvision.datasets as tvd

        getattr(tvd, folder)(root=str(root), download=True)
    except Exception:  # noqa: BLE001 - offline machines raise all sorts of things; the caller reports
        pass
    finally:
        socket.setdefaulttimeout(old_timeout)


def _load_builtin(spec: str, root: Path, seed: int, download: bool) -> ImageSplits:
    folder, classes = BUILTIN[spec]
    found = _read_builtin(spec, root)
    if found is None and download:
        _try_download(spec, root)
        found = _read_builtin(spec, root)
    if found is None:
        where = f"{root / folder / 'raw'}"
        also = f" (or the kmnist-*.npz files in {root / folder})" if spec == "kmnist" else ""
        files = ", ".join(s + ".gz" for s in RAW_STEMS)
        raise DataError(f"{folder} is not available offline: place {files} in {where}{also}")
    train_full, test = found
    train, val = split_holdout(train_full, (1 / 6,), seed)
    return ImageSplits(spec, classes, train, val, test)


def _idx_pairs(folder: Path) -> dict[str, tuple[Path, Path]]:
    """prefix -> (images file, labels file) for every `<prefix>-images-idx3-ubyte[.gz]` in `folder`."""
    pairs: dict[str, tuple[Path, Path]] = {}
    for path in sorted(folder.iterdir()):
        m = _IMAGES_RE.match(path.name)
        if not m or not path.is_file() or m["prefix"] in pairs:
            continue
        labels = find_file(folder, f"{m['prefix']}-labels-idx1-ubyte")
        if labels is None:
            raise DataError(f"{path} has no matching {m['prefix']}-labels-idx1-ubyte[.gz] in {folder}")
        pairs[m["prefix"]] = (path, labels)  # sorted: the plain file comes before its .gz
    return pairs


def _is_test(prefix: str) -> bool:
    return prefix.lower().startswith("t10k") or "test" in prefix.lower()


def _class_names(folder: Path, sets: list[ImageSet]) -> list[str]:
    n_classes = max((int(s.labels.max()) + 1 for s in sets if len(s.labels)), default=0)
    classes_file = folder / "classes.txt"
    if classes_file.is_file():
        lines = classes_file.read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip()]
        if len(names) < n_classes:
            raise DataError(f"{classes_file} names {len(names)} classes but the labels go up to {n_classes - 1}")
        return names
    return [str(i) for i in range(n_classes)]


def _load_idx_folder(path_text: str, root: Path, seed: int) -> ImageSplits:
    folder = Path(path_text).expanduser()
    folder = (folder if folder.is_absolute() else root / folder).resolve()
    if not folder.is_dir():
        raise DataError(f"idx:{path_text}: {folder} is not a folder")
    pairs = _idx_pairs(folder)
    if not pairs:
        raise DataError(f"idx:{path_text}: no *-images-idx3-ubyte[.gz] files in {folder}")
    if len(pairs) > 2:
        raise DataError(f"idx:{path_text}: expected one or two image/label pairs in {folder}, found {sorted(pairs)}")
    sets = {
        prefix: to_image_set(read_idx(img), read_idx(lab), f"{img.name} / {lab.name}")
        for prefix, (img, lab) in pairs.items()
    }
    if len(sets) == 1:
        (only,) = sets.values()
        train, val, test = split_holdout(only, (0.1, 0.1), seed)
    else:
        tests = [p for p in sets if _is_test(p)]
        if len(tests) != 1:
            raise DataError(
                f"idx:{path_text}: cannot tell train from test among {sorted(sets)} "
                "(name the test pair t10k-* or *test*)"
            )
        (train_prefix,) = [p for p in sets if p != tests[0]]
        test = sets[tests[0]]
        train, val = split_holdout(sets[train_prefix], (1 / 6,), seed)
    classes = _class_names(folder, [train, val, test])
    return ImageSplits(f"idx:{path_text}", classes, train, val, test)


def load_images(spec: str, data_dir: Path, seed: int = 42, download: bool = True) -> ImageSplits:
    """Load an image dataset spec into seeded train/val/test splits (DataError when it cannot)."""
    root = Path(data_dir).expanduser().resolve()
    key = spec.strip()
    if key.lower() in BUILTIN:
        return _load_builtin(key.lower(), root, seed, download)
    if key.lower().startswith("idx:") and key[4:].strip():
        return _load_idx_folder(key[4:].strip(), root, seed)
    raise DataError(f"unknown image dataset {spec!r}; valid specs: {', '.join((*BUILTIN, 'idx:PATH'))}")
