"""Which datasets exist: the built-in sets (names, files) and the folders of a data directory.

Built-in: the image sets torchvision downloads (kmnist, mnist, fashion-mnist; fetched by ml.data.images when
loaded) and the `spa-eng` sentence pairs (fetched by ml.data.download when resolved and missing). Loads no
data and no torch (core/ resolves dataset names with it); ml.data.images and ml.data.text load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml.data.download import SPA_ENG, download_spa_eng
from ml.data.specs import IMAGE_NAMES, data_kind_of_spec, folder_kind, spec_for_name
from ml.errors import DataError
from ml.kinds import DATA_KINDS

KMNIST_CLASSES = ["お", "き", "す", "つ", "な", "は", "ま", "や", "れ", "を"]
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

# spec -> (folder under data_dir, as torchvision names it; class names)
BUILTIN: dict[str, tuple[str, list[str]]] = {
    "kmnist": ("KMNIST", KMNIST_CLASSES),
    "mnist": ("MNIST", MNIST_CLASSES),
    "fashion-mnist": ("FashionMNIST", FASHION_CLASSES),
}
VALID_SPECS = (*BUILTIN, "idx:PATH")
# built-in pairs sets: name (also its folder under data_dir) -> downloader filling that folder
PAIR_BUILTINS: dict[str, Callable[[Path], Path]] = {SPA_ENG: download_spa_eng}
RAW_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
KMNIST_NPZ = (
    "kmnist-train-imgs.npz",
    "kmnist-train-labels.npz",
    "kmnist-test-imgs.npz",
    "kmnist-test-labels.npz",
)


@dataclass(frozen=True)
class DatasetEntry:
    name: str  # what POST /train and TrainConfig name it
    data_kind: str  # "images" | "pairs"
    builtin: bool  # a built-in set, downloaded on first use when the network allows
    available: bool  # its files are already in the data folder


def find_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem` or `folder/stem.gz`, whichever exists (plain first)."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def builtin_available(spec: str, data_dir: Path) -> bool:
    """Whether a built-in set's files (raw IDX, or KMNIST's npz) are already under data_dir (no download)."""
    folder = Path(data_dir) / BUILTIN[spec][0]
    raw = folder / "raw"
    if all(find_file(raw, stem) is not None for stem in RAW_STEMS):
        return True
    return spec == "kmnist" and all((folder / n).is_file() for n in KMNIST_NPZ)


def list_datasets(data_dir: Path) -> list[DatasetEntry]:
    """The built-in image sets, the built-in pairs sets, then every other folder of `data_dir` that holds
    recognisable data (sorted)."""
    data_dir = Path(data_dir)
    found = [DatasetEntry(name, "images", True, builtin_available(name, data_dir)) for name in IMAGE_NAMES]
    found += [DatasetEntry(name, "pairs", True, folder_kind(data_dir / name) == "pairs") for name in PAIR_BUILTINS]
    try:
        folders = sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
    except OSError:
        folders = []
    for folder in folders:
        if folder.name in IMAGE_NAMES or folder.name in PAIR_BUILTINS or folder.name.startswith("."):
            continue
        kind = folder_kind(folder)
        if kind is not None:
            found.append(DatasetEntry(folder.name, kind, False, True))
    return found


def resolve_dataset(name: str, data_kind: str, data_dir: Path, model: str | None = None, download: bool = True) -> str:
    """The spec of dataset `name` (a built-in name or a folder of data_dir) holding `data_kind` data.

    DataError names the available datasets when `name` is unknown, or says what it holds instead (and
    that it cannot train `model`, when given). A built-in pairs set (`spa-eng`) whose folder is missing is
    downloaded into data_dir first when `download` (DataError, one line, when that fails); built-in image
    sets are downloaded by their loader.
    """
    data_dir = Path(data_dir)
    try:
        spec = f"pairs:{data_dir / name}" if name in PAIR_BUILTINS else spec_for_name(name, data_dir)
    except (OSError, ValueError):  # e.g. a name too long for the file system
        spec = None
    if spec is None:
        known = ", ".join(f"{d.name} ({d.data_kind})" for d in list_datasets(data_dir))
        raise DataError(f"unknown dataset {name[:80]!r}; available datasets: {known} (see GET /datasets)")
    holds = data_kind_of_spec(spec)
    if holds != data_kind:
        cannot = f"; it cannot train a {model} model" if model else ""
        raise DataError(f"dataset {name!r} holds {DATA_KINDS[holds]}, not {DATA_KINDS[data_kind]}{cannot}")
    if download and name in PAIR_BUILTINS and folder_kind(data_dir / name) != "pairs":
        PAIR_BUILTINS[name](data_dir)
    return spec
