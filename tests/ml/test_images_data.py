"""IDX reading and image dataset specs, against hand-written IDX files and the real mnist-8k data."""

from __future__ import annotations

import gzip
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ml.data.catalog import FASHION_CLASSES, KMNIST_CLASSES
from ml.data.idx import read_idx
from ml.data.images import load_images
from ml.errors import DataError

MNIST8K = "mnist-8k"


def write_idx(path: Path, array: np.ndarray, code: int, fmt: str, gz: bool = False) -> Path:
    """Write `array` as IDX by hand with struct: magic, dims, then big-endian values."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body = struct.pack(f">{array.size}{fmt}", *array.ravel().tolist())
    data = header + body
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="module")
def mnist_arrays(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = shared_data / MNIST8K
    return (
        read_idx(folder / "mnist8k-images-idx3-ubyte.gz"),
        read_idx(folder / "mnist8k-labels-idx1-ubyte.gz"),
    )


# ---------------------------------------------------------------- idx


@pytest.mark.parametrize(
    ("code", "fmt", "dtype"),
    [(0x08, "B", np.uint8), (0x09, "b", np.int8), (0x0B, "h", np.int16), (0x0C, "i", np.int32),
     (0x0D, "f", np.float32), (0x0E, "d", np.float64)],
)  # fmt: skip
@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_every_dtype(tmp_path: Path, code: int, fmt: str, dtype: type, gz: bool) -> None:
    rng = np.random.default_rng(code)
    values = rng.integers(-100 if fmt != "B" else 0, 100, size=(3, 4, 5)).astype(dtype)
    path = write_idx(tmp_path / ("x.idx.gz" if gz else "x.idx"), values, code, fmt, gz=gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype)
    assert out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, values)


def test_idx_one_dimension(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / "l-idx1-ubyte", labels, 0x08, "B"))
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "dtype code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5), "needs 6"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "needs 2"),
        (b"\x1f\x8b" + b"not really gzip", "gzip"),
    ],
)
def test_idx_malformed_raises_one_line_naming_file(tmp_path: Path, data: bytes, words: str) -> None:
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert words in message
    assert str(path) in message
    assert "\n" not in message


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope-idx1-ubyte"):
        read_idx(tmp_path / "nope-idx1-ubyte")


def test_idx_real_mnist8k(shared_data: Path, tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    assert images.shape == (8000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (8000,) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    # The plain (gunzipped) file parses to the same array, and its pixels follow the 16-byte header.
    source = shared_data / MNIST8K / "mnist8k-images-idx3-ubyte.gz"
    plain = tmp_path / "mnist8k-images-idx3-ubyte"
    plain.write_bytes(gzip.decompress(source.read_bytes()))
    np.testing.assert_array_equal(read_idx(plain), images)
    assert plain.read_bytes()[16 : 16 + 784] == images[0].tobytes()


# ---------------------------------------------------------------- idx:PATH specs


def _sets(splits) -> list:
    return [splits.train, splits.val, splits.test]


def _fingerprints(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


def test_mnist8k_single_pair_split(shared_data: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    splits = load_images(f"idx:{shared_data / MNIST8K}", shared_data)
    assert [len(s.labels) for s in _sets(splits)] == [6400, 800, 800]
    assert splits.classes == [str(i) for i in range(10)]
    for s in _sets(splits):
        assert s.images.dtype == torch.float32 and s.labels.dtype == torch.int64
        assert s.images.shape[1:] == (1, 28, 28)
        assert s.images.min() >= 0 and s.images.max() < 1
        # every value sits on the uint8 / 256 grid
        torch.testing.assert_close(s.images * 256, torch.round(s.images * 256), rtol=0, atol=0)
    # The three splits partition the 8000 digits: map every split image back to its source row.
    images, labels = mnist_arrays
    lookup = {img.tobytes(): i for i, img in enumerate(images)}
    seen: list[int] = []
    for s in _sets(splits):
        rows = [lookup[(img[0].numpy() * 256).astype(np.uint8).tobytes()] for img in s.images]
        np.testing.assert_array_equal(s.labels.numpy(), labels[rows])
        seen.extend(rows)
    assert len(set(seen)) == 8000  # disjoint and complete (no duplicate images exist in mnist-8k rows)


def test_idx_split_is_seeded(shared_data: Path) -> None:
    spec = "idx:mnist-8k"  # relative to data_dir
    a = load_images(spec, shared_data, seed=1)
    b = load_images(spec, shared_data, seed=1)
    c = load_images(spec, shared_data, seed=2)
    for sa, sb in zip(_sets(a), _sets(b), strict=True):
        assert torch.equal(sa.images, sb.images) and torch.equal(sa.labels, sb.labels)
    assert not torch.equal(a.test.labels, c.test.labels)
    assert _fingerprints(a.test.images) != _fingerprints(c.test.images)


def _write_pair(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, 0x08, "B", gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, 0x08, "B", gz=gz)


def test_idx_train_and_t10k_pairs(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    _write_pair(tmp_path, "train", images[:600], labels[:600], gz=True)
    _write_pair(tmp_path, "t10k", images[600:700], labels[600:700], gz=False)
    splits = load_images(f"idx:{tmp_path}", Path("/nonexistent"))
    assert (len(splits.train.labels), len(splits.val.labels), len(splits.test.labels)) == (500, 100, 100)
    # the t10k pair is the test set, unshuffled and exactly as written
    np.testing.assert_array_equal(splits.test.labels.numpy(), labels[600:700])
    np.testing.assert_array_equal((splits.test.images[:, 0].numpy() * 256).astype(np.uint8), images[600:700])
    train_val = _fingerprints(splits.train.images) | _fingerprints(splits.val.images)
    assert len(train_val) == 600
    assert train_val == _fingerprints(torch.from_numpy(images[:600]).float().div(256).unsqueeze(1))


def test_idx_classes_txt_and_test_named_pair(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    small = labels[:120] % 3
    _write_pair(tmp_path, "letters-train", images[:120], small, gz=False)
    _write_pair(tmp_path, "letters-test", images[120:150], labels[120:150] % 3, gz=False)
    (tmp_path / "classes.txt").write_text("a\nb\nc\n", encoding="utf-8")
    splits = load_images(f"idx:{tmp_path}", tmp_path)
    assert splits.classes == ["a", "b", "c"]
    assert len(splits.test.labels) == 30 and len(splits.val.labels) == 20
    (tmp_path / "classes.txt").unlink()
    assert load_images(f"idx:{tmp_path}", tmp_path).classes == ["0", "1", "2"]


def test_idx_folder_errors(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    with pytest.raises(DataError, match="not a folder"):
        load_images("idx:missing", tmp_path)
    with pytest.raises(DataError, match="no \\*-images-idx3-ubyte"):
        load_images(f"idx:{tmp_path}", tmp_path)
    write_idx(tmp_path / "a-images-idx3-ubyte", images[:5], 0x08, "B")
    with pytest.raises(DataError, match="a-labels-idx1-ubyte"):
        load_images(f"idx:{tmp_path}", tmp_path)
    write_idx(tmp_path / "a-labels-idx1-ubyte", labels[:4], 0x08, "B")
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_images(f"idx:{tmp_path}", tmp_path)
    write_idx(tmp_path / "a-labels-idx1-ubyte", labels[:5], 0x08, "B")
    _write_pair(tmp_path, "b", images[5:10], labels[5:10], gz=False)
    with pytest.raises(DataError, match="cannot tell train from test"):
        load_images(f"idx:{tmp_path}", tmp_path)


def test_idx_wrong_image_size(tmp_path: Path) -> None:
    _write_pair(tmp_path, "x", np.zeros((4, 20, 20), np.uint8), np.zeros(4, np.uint8), gz=False)
    with pytest.raises(DataError, match=r"\(N, 28, 28\)"):
        load_images(f"idx:{tmp_path}", tmp_path)


def test_unknown_spec_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_images("cifar10", tmp_path)
    for spec in ("kmnist", "mnist", "fashion-mnist", "idx:PATH"):
        assert spec in str(info.value)


# ---------------------------------------------------------------- built-in specs


@pytest.mark.parametrize(("spec", "folder"), [("kmnist", "KMNIST"), ("fashion-mnist", "FashionMNIST")])
def test_builtin_offline_fails_fast_with_instructions(tmp_path: Path, spec: str, folder: str) -> None:
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_images(spec, tmp_path, download=True)
    assert time.monotonic() - start < 30
    message = str(info.value)
    assert "\n" not in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):  # fmt: skip
        assert name in message
    assert str(tmp_path.resolve() / folder / "raw") in message
    assert ("kmnist-" in message) == (spec == "kmnist")


def test_builtin_no_download_does_not_touch_disk(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="MNIST is not available offline"):
        load_images("mnist", tmp_path, download=False)
    assert list(tmp_path.iterdir()) == []


def test_builtin_raw_idx_files(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _write_pair(raw, "train", images[:300], labels[:300], gz=True)
    _write_pair(raw, "t10k", images[300:360], labels[300:360], gz=False)
    splits = load_images("fashion-mnist", tmp_path, download=False)
    assert splits.classes == FASHION_CLASSES and len(splits.classes) == 10
    assert [len(s.labels) for s in _sets(splits)] == [250, 50, 60]
    np.testing.assert_array_equal(splits.test.labels.numpy(), labels[300:360])


def test_kmnist_npz_files(tmp_path: Path, mnist_arrays: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = mnist_arrays
    folder = tmp_path / "KMNIST"
    folder.mkdir()
    np.savez_compressed(folder / "kmnist-train-imgs.npz", images[:120])
    np.savez_compressed(folder / "kmnist-train-labels.npz", labels[:120])
    np.savez_compressed(folder / "kmnist-test-imgs.npz", images[120:150])
    np.savez_compressed(folder / "kmnist-test-labels.npz", labels[120:150])
    splits = load_images("KMNIST", tmp_path, seed=3, download=False)
    assert splits.name == "kmnist"
    assert splits.classes == KMNIST_CLASSES
    assert [len(s.labels) for s in _sets(splits)] == [100, 20, 30]
    expected = torch.from_numpy(images[120:150]).float().div(256).unsqueeze(1)  # (30, 1, 28, 28)
    torch.testing.assert_close(splits.test.images, expected, rtol=0, atol=0)
    assert splits.test.labels.dtype == torch.int64
    np.testing.assert_array_equal(splits.test.labels.numpy(), labels[120:150])
