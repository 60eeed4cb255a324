"""Uploaded datasets: real pairs and MNIST files become a canonical tar that the ml loaders read once extracted;
hostile or malformed uploads (bombs, escaping paths, links, bad IDX, mixed kinds...) are refused in one line."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import shutil
import stat
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.dataset_files import DatasetContent, DatasetRejected, UploadLimits, extract_dataset, inspect_upload
from ml.data.idx import read_idx
from ml.data.images import load_images
from ml.data.specs import folder_kind
from ml.data.text import load_pairs

MiB = 1 << 20
BOMB = 1 << 31  # 2 GiB of zeros, a few MB once compressed


# ---------------------------------------------------------------------------------------------------------------
# inputs


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def pairs(shared_data: Path, src: Path) -> list[tuple[str, Path]]:
    """3000 train and 500 val lines of the assignment's files, as uploaded parts."""
    parts = []
    for name, n in (("train-eng-spa.txt", 3000), ("val-eng-spa.txt", 500)):
        with open(shared_data / "spa-eng" / name, encoding="utf-8") as f:
            lines = [next(f) for _ in range(n)]
        (src / name).write_text("".join(lines), encoding="utf-8")
        parts.append((name, src / name))
    return parts


@pytest.fixture
def mnist(shared_data: Path, src: Path) -> list[tuple[str, Path]]:
    """The mnist-8k files (gzipped IDX) as uploaded parts."""
    parts = []
    for name in ("mnist8k-images-idx3-ubyte.gz", "mnist8k-labels-idx1-ubyte.gz"):
        shutil.copyfile(shared_data / "mnist-8k" / name, src / name)
        parts.append((name, src / name))
    return parts


def _idx(array: np.ndarray, magic: bytes = b"\x00\x00\x08") -> bytes:
    """IDX bytes of a uint8 array."""
    return magic + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write(folder: Path, name: str, data: bytes) -> tuple[str, Path]:
    (folder / name).write_bytes(data)
    return name, folder / name


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar_gz(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _deflate_zeros(prefix: bytes, zeros: int) -> bytes:
    """Raw deflate of `prefix` + `zeros` zero bytes, made in milliseconds: one compressed MiB repeated (each copy
    starts after a full flush, so it references nothing before it)."""
    parts = []
    if prefix:
        head = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH))
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts += [block.compress(bytes(MiB)) + block.flush(zlib.Z_FULL_FLUSH)] * (zeros // MiB)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts.append(tail.compress(bytes(zeros % MiB)) + tail.flush())
    return b"".join(parts)


def _gzip_bomb(prefix: bytes, zeros: int) -> bytes:
    """A gzip file of prefix + zeros (its CRC is wrong: a reader that stops at its cap never gets there)."""
    total = (len(prefix) + zeros) & 0xFFFFFFFF
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + _deflate_zeros(prefix, zeros) + struct.pack("<2L", 0, total)


def _zip_bomb(path: Path, name: str, zeros: int) -> Path:
    """A one-member zip whose member inflates to `zeros` zero bytes (declared honestly, CRC left 0)."""
    data, raw = _deflate_zeros(b"", zeros), name.encode()
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, 0, len(data), zeros, len(raw), 0) + raw
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 0x314, 20, 0, 8, 0, 0x21, 0, len(data), zeros, len(raw), 0, 0, 0, 0,
        (stat.S_IFREG | 0o644) << 16, 0,
    ) + raw  # fmt: skip
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the bytes zipfile and gzip hand out while a test runs: [total]."""
    total = [0]

    def counting(read: Callable[..., bytes]) -> Callable[..., bytes]:
        def wrapper(self: object, *args: object) -> bytes:
            data = read(self, *args)
            total[0] += len(data)
            return data

        return wrapper

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting(zipfile.ZipExtFile.read))
    monkeypatch.setattr(gzip.GzipFile, "read", counting(gzip.GzipFile.read))
    return total


def _refused(parts: list[tuple[str, Path]], work: Path, limits: UploadLimits = UploadLimits()) -> str:
    """The one-line message of the refusal; nothing may be left in the work folder."""
    with pytest.raises(DatasetRejected) as caught:
        inspect_upload(parts, work, limits)
    message = str(caught.value)
    assert message and "\n" not in message
    assert not work.exists() or list(work.iterdir()) == []
    return message


# ---------------------------------------------------------------------------------------------------------------
# accepted uploads


def test_sentence_pairs_become_a_canonical_tar_that_the_pairs_loader_reads(pairs, work: Path, tmp_path: Path):
    content = inspect_upload(pairs, work)
    assert isinstance(content, DatasetContent) and content.kind == "pairs"
    assert content.counts == {"train": 3000, "val": 500}
    assert content.files == {name: path.stat().st_size for name, path in sorted(pairs)}
    assert list(work.iterdir()) == [content.archive] and content.archive.parent == work
    assert content.sha256 == hashlib.sha256(content.archive.read_bytes()).hexdigest()
    assert content.bytes == content.archive.stat().st_size
    with tarfile.open(content.archive) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["train-eng-spa.txt", "val-eng-spa.txt"]
    assert all((m.isreg(), m.mtime, m.uid, m.gid, m.mode, m.uname) == (True, 0, 0, 0, 0o644, "") for m in members)

    dest = extract_dataset(content.archive, tmp_path / "datasets" / "mine", content.sha256)
    assert dest == tmp_path / "datasets" / "mine" and folder_kind(dest) == "pairs"
    assert (dest / "val-eng-spa.txt").read_bytes() == pairs[1][1].read_bytes()
    splits = load_pairs(f"pairs:{dest}", tmp_path)
    assert len(splits.train) > 2000 and splits.val == splits.test  # no test file: test is val
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mine"]  # no temp folder left beside it


def test_mnist_files_stay_gzipped_and_load_with_the_idx_loader(mnist, work: Path, tmp_path: Path):
    content = inspect_upload(mnist, work)
    assert (content.kind, content.counts) == ("images", {"images": 8000, "labels": 8000})
    assert content.files == {name: path.stat().st_size for name, path in mnist}  # .gz kept as it was
    dest = extract_dataset(content.archive, tmp_path / "x", content.sha256)
    for name, path in mnist:
        assert (dest / name).read_bytes() == path.read_bytes()
    data = load_images(f"idx:{dest}", tmp_path)
    assert (len(data.train.labels), len(data.val.labels), len(data.test.labels)) == (6400, 800, 800)


def test_train_and_t10k_pairs_with_class_names_load_with_the_assignment_split(shared_data, src, work, tmp_path):
    images = read_idx(shared_data / "mnist-8k" / "mnist8k-images-idx3-ubyte.gz")
    labels = read_idx(shared_data / "mnist-8k" / "mnist8k-labels-idx1-ubyte.gz")
    parts = [
        _write(src, "train-images-idx3-ubyte", _idx(images[:7000])),
        _write(src, "train-labels-idx1-ubyte", _idx(labels[:7000])),
        _write(src, "t10k-images-idx3-ubyte", _idx(images[7000:])),
        _write(src, "t10k-labels-idx1-ubyte.gz", gzip.compress(_idx(labels[7000:]))),
        _write(src, "classes.txt", "".join(f"digit {i}\n" for i in range(10)).encode()),
    ]
    content = inspect_upload(parts, work)
    assert content.counts == {"train_images": 7000, "train_labels": 7000, "test_images": 1000, "test_labels": 1000}
    assert list(content.files) == sorted(name for name, _ in parts)
    data = load_images(f"idx:{extract_dataset(content.archive, tmp_path / 'x')}", tmp_path)
    assert len(data.test.labels) == 1000 and len(data.train.labels) + len(data.val.labels) == 7000
    assert data.classes[3] == "digit 3"

    _write(src, "classes.txt", b"zero\none\ntwo\n")
    assert "classes.txt names 3 classes but the labels go up to 9" in _refused(parts, tmp_path / "w2")


def test_the_same_content_gives_the_same_bytes_loose_zipped_or_tarred(pairs, src: Path, tmp_path: Path):
    loose = inspect_upload(pairs, tmp_path / "w1")
    data = {name: path.read_bytes() for name, path in pairs}
    in_folder = {"my data/": b"", **{f"my data/{n}": d for n, d in data.items()}, "__MACOSX/my data/._x": b"junk"}
    zipped = inspect_upload([("upload.zip", _zip(src / "upload.zip", in_folder))], tmp_path / "w2")
    tarred = _tar_gz(src / "up.tgz", [(_entry(n), d) for n, d in reversed(data.items())])
    tarred = inspect_upload([("Upload.TGZ", tarred)], tmp_path / "w3")
    assert loose.sha256 == zipped.sha256 == tarred.sha256
    assert loose.archive.read_bytes() == zipped.archive.read_bytes() == tarred.archive.read_bytes()
    assert (zipped.counts, zipped.files) == (loose.counts, loose.files)
    (src / "val-eng-spa.txt").write_bytes(data["val-eng-spa.txt"] + b"one more\tuno mas\n")
    assert inspect_upload(pairs, tmp_path / "w4").sha256 != loose.sha256


def test_extract_checks_the_sha256_and_reuses_an_existing_folder(pairs, work: Path, tmp_path: Path):
    content = inspect_upload(pairs, work)
    dest = tmp_path / "datasets" / content.sha256
    with pytest.raises(DatasetRejected, match="has sha256 .* expected 0{64}: refusing to extract"):
        extract_dataset(content.archive, dest, "0" * 64)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    assert extract_dataset(content.archive, dest, content.sha256.upper()) == dest
    (dest / "val-eng-spa.txt").write_text("changed\tcambiado\n")
    assert extract_dataset(content.archive, dest, content.sha256) == dest  # already there: left as it is
    assert (dest / "val-eng-spa.txt").read_text() == "changed\tcambiado\n"

    rogue = _tar_gz(tmp_path / "rogue.tar", [(_entry("train-a.txt"), b"a\tb\n"), (_entry("run.sh"), b"echo\n")])
    with pytest.raises(DatasetRejected):  # not a canonical tar (compressed), or an unexpected member
        extract_dataset(rogue, tmp_path / "rogue")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tf:
        tf.add(pairs[0][1], arcname="train-eng-spa.txt")
        tf.add(pairs[1][1], arcname="../val-eng-spa.txt")
    with pytest.raises(DatasetRejected, match=r"unexpected member '\.\./val-eng-spa\.txt'"):
        extract_dataset(plain, tmp_path / "plain")
    assert not (tmp_path / "plain").exists() and not (tmp_path / "val-eng-spa.txt").exists()


# ---------------------------------------------------------------------------------------------------------------
# refused uploads


def _hostile_tar(src: Path, name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> list[tuple[str, Path]]:
    members = [(_entry("train-a.txt"), b"a\tb\n"), (_entry(name, kind, target), b"x\ty\n")]
    return [("up.tar.gz", _tar_gz(src / "up.tar.gz", members))]


def _symlink_zip(src: Path) -> list[tuple[str, Path]]:
    info = zipfile.ZipInfo("val-a.txt")
    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(src / "up.zip", "w") as zf:
        zf.writestr("train-a.txt", "a\tb\n")
        zf.writestr(info, "/etc/passwd")
    return [("up.zip", src / "up.zip")]


def _duplicate_zip(src: Path) -> list[tuple[str, Path]]:
    with warnings.catch_warnings(), zipfile.ZipFile(src / "up.zip", "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
        zf.writestr("d/train-a.txt", "a\tb\n")
        zf.writestr("d/train-a.txt", "c\td\n")
    return [("up.zip", src / "up.zip")]


def _mnist_like(
    src: Path,
    images: np.ndarray,
    labels: np.ndarray,
    image_bytes: bytes | None = None,
    label_bytes: bytes | None = None,
) -> list[tuple[str, Path]]:
    """x-images / x-labels IDX files of these arrays, or of the bytes given instead."""
    return [
        _write(src, "x-images-idx3-ubyte", _idx(images) if image_bytes is None else image_bytes),
        _write(src, "x-labels-idx1-ubyte", _idx(labels) if label_bytes is None else label_bytes),
    ]


PIXELS = np.zeros((100, 28, 28), dtype=np.uint8)
LABELS = np.arange(100, dtype=np.uint8) % 10
PAIR = b"hello .\thola .\t1\n"

HOSTILE: dict[str, tuple[Callable[[Path], list[tuple[str, Path]]], str]] = {
    "tar member ../x": (lambda s: _hostile_tar(s, "../val-a.txt"), r"member '\.\./val-a\.txt' points outside"),
    "tar absolute path": (lambda s: _hostile_tar(s, "/tmp/val-a.txt"), "has an absolute path"),
    "tar symlink": (lambda s: _hostile_tar(s, "val-a.txt", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
    "tar hard link": (lambda s: _hostile_tar(s, "val-a.txt", tarfile.LNKTYPE, "train-a.txt"), "is a link"),
    "tar device": (lambda s: _hostile_tar(s, "val-a.txt", tarfile.CHRTYPE), "is a device or special file"),
    "tar two folders": (lambda s: _hostile_tar(s, "b/val-a.txt"), "top level or all in one folder"),
    "zip member ../x": (lambda s: [("u.zip", _zip(s / "u.zip", {"../train-a.txt": PAIR}))], "points outside"),
    "zip symlink": (_symlink_zip, r"member 'val-a\.txt' is a link"),
    "zip duplicate": (_duplicate_zip, "'train-a.txt' in 'up.zip' appears twice"),
    "zip nested archive": (
        lambda s: [("u.zip", _zip(s / "u.zip", {"train-a.txt": PAIR, "more.tar.gz": b"x"}))],
        "nested archive 'more.tar.gz' in 'u.zip'",
    ),
    "zip corrupt": (lambda s: [_write(s, "u.zip", b"PK\x03\x04" + b"garbage" * 40)], "'u.zip' is not a valid zip"),
    "zip too deep": (lambda s: [("u.zip", _zip(s / "u.zip", {"a/b/train-a.txt": PAIR}))], "top level or all in one"),
    "archive and files": (lambda s: [_write(s, "u.zip", b"PK"), _write(s, "val-a.txt", PAIR)], "on its own"),
    "empty archive": (lambda s: [("u.zip", _zip(s / "u.zip", {"d/": b""}))], "'u.zip' holds no files"),
    "empty file": (lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "val-a.txt", b"")], "'val-a.txt' is empty"),
    "unknown name": (
        lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "notes.md", b"hi")],
        r"file 'notes\.md' is not accepted: send train-\*\.txt and val-\*\.txt",
    ),
    "path as name": (lambda s: [("../train-a.txt", _write(s, "t", PAIR)[1])], "must be a plain name, not a path"),
    "missing val": (lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "test-a.txt", PAIR)], r"missing val-\*"),
    "no tab": (
        lambda s: [_write(s, "train-a.txt", PAIR + b"\nno tab here\n"), _write(s, "val-a.txt", PAIR)],
        "'train-a.txt' line 3: expected english<TAB>spanish",
    ),
    "not utf-8": (
        lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "val-a.txt", PAIR * 2 + "ñ\tn\n".encode("latin-1"))],
        "'val-a.txt' line 3 is not UTF-8 text",
    ),
    "blank pairs": (lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "val-a.txt", b"\n \n")], "no sentence"),
    "mixed kinds": (
        lambda s: [_write(s, "train-a.txt", PAIR), _write(s, "val-a.txt", PAIR), *_mnist_like(s, PIXELS, LABELS)],
        r"sentence pairs \('train-a\.txt'\) and IDX image files \('x-images-idx3-ubyte'\) cannot be mixed",
    ),
    "bad magic": (
        lambda s: _mnist_like(s, PIXELS, LABELS, image_bytes=_idx(PIXELS, magic=b"\x08\x03\x08")),
        r"'x-images-idx3-ubyte' is not an IDX file \(bad magic number 08030803\)",
    ),
    "mismatched counts": (
        lambda s: _mnist_like(s, PIXELS, LABELS[:99]),
        "'x-images-idx3-ubyte' holds 100 images but 'x-labels-idx1-ubyte' 99 labels",
    ),
    "truncated idx": (
        lambda s: _mnist_like(s, PIXELS, LABELS, image_bytes=_idx(PIXELS)[:-5]),
        r"its header \[100, 28, 28\] needs 78400 data bytes, it holds 78395",
    ),
    "labels 2-D": (lambda s: _mnist_like(s, PIXELS, LABELS.reshape(10, 10)), "labels must be 1-D"),
    "wide labels": (
        lambda s: _mnist_like(s, PIXELS, LABELS, label_bytes=b"\x00\x00\x0c\x01" + struct.pack(">I", 100) + bytes(400)),
        r"IDX type 0x0c; labels must be unsigned bytes \(0x08\)",
    ),
    "32x32 images": (lambda s: _mnist_like(s, np.zeros((100, 32, 32), np.uint8), LABELS), "32x32 images; 28x28"),
    "labels alone": (lambda s: _mnist_like(s, PIXELS, LABELS)[1:], "no matching x-images-idx3-ubyte"),
    "plain and gz": (
        lambda s: [*_mnist_like(s, PIXELS, LABELS), _write(s, "x-labels-idx1-ubyte.gz", gzip.compress(_idx(LABELS)))],
        "both 'x-labels-idx1-ubyte' and 'x-labels-idx1-ubyte.gz'",
    ),
    "broken gzip": (
        lambda s: _mnist_like(s, PIXELS, LABELS, label_bytes=gzip.compress(_idx(LABELS))[:-12]),
        "'x-labels-idx1-ubyte' is not a valid gzip file",
    ),
    "two train pairs": (
        lambda s: [*_mnist_like(s, PIXELS, LABELS), _write(s, "y-images-idx3-ubyte", _idx(PIXELS))],
        "no matching y-labels-idx1-ubyte",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_and_malformed_uploads_are_refused_in_one_line(case: str, src: Path, work: Path):
    make, expected = HOSTILE[case]
    assert re.search(expected, _refused(make(src), work)), case


def test_limits_on_sizes_and_counts(pairs, src: Path, work: Path):
    small = UploadLimits(max_upload_bytes=10_000)
    assert "'train-eng-spa.txt' is larger than 10 kB (the upload limit)" in _refused(pairs, work, small)
    assert "larger than 50 kB uncompressed" in _refused(pairs, work, UploadLimits(max_total_bytes=50_000))
    many = [_write(src, f"train-{i}.txt", PAIR) for i in range(3)] + [_write(src, "val-a.txt", PAIR)]
    assert "more than 3 files" in _refused(many, work, UploadLimits(max_files=3))
    folders = {f"d{i}/": b"" for i in range(5)}
    assert "has more than 4 entries" in _refused(
        [("u.zip", _zip(src / "u.zip", folders))], work, UploadLimits(max_members=4)
    )
    long = [_write(src, "train-a.txt", PAIR + b"a\t" + b"b" * 70_000 + b"\n"), _write(src, "val-a.txt", PAIR)]
    assert "'train-a.txt' line 2 is longer than 65.5 kB" in _refused(long, work)


def test_two_idx_pairs_need_exactly_one_test_pair(src: Path, tmp_path: Path):
    def pair(prefix: str, n: int) -> list[tuple[str, Path]]:
        return [
            _write(src, f"{prefix}-images-idx3-ubyte", _idx(PIXELS[:n])),
            _write(src, f"{prefix}-labels-idx1-ubyte", _idx(LABELS[:n])),
        ]

    counts = inspect_upload(pair("x", 100) + pair("t10k", 20), tmp_path / "w1").counts
    assert counts == {"train_images": 100, "train_labels": 100, "test_images": 20, "test_labels": 20}
    message = _refused(pair("test2", 100) + pair("t10k", 20), tmp_path / "w2")
    assert message == "with two image/label pairs, name the test pair t10k-* (or *test*) and the other train-*"
    message = _refused(pair("a", 10) + pair("b", 10) + pair("t10k", 20), tmp_path / "w3")
    assert message == "expected one or two image/label pairs, found 3: a, b, t10k"


# ---------------------------------------------------------------------------------------------------------------
# bombs: refused after reading at most about the cap, never expanded


@pytest.mark.parametrize("limits", [UploadLimits(), UploadLimits(max_total_bytes=10 * MiB)])
def test_a_zip_bomb_is_refused_without_expanding_it(limits, src: Path, work: Path, inflated: list[int]):
    bomb = _zip_bomb(src / "bomb.zip", "train-big.txt", BOMB)
    assert bomb.stat().st_size < 4 * MiB
    message = _refused([("bomb.zip", bomb)], work, limits)
    assert message.startswith("the dataset is larger than") and "uncompressed" in message
    assert inflated[0] <= limits.max_total_bytes + MiB


def test_a_gzip_bomb_in_an_idx_file_is_refused_without_expanding_it(src: Path, work: Path, inflated: list[int]):
    honest = struct.pack(">4B3I", 0, 0, 8, 3, BOMB // 784, 28, 28)
    parts = [_write(src, "b-images-idx3-ubyte.gz", _gzip_bomb(honest, BOMB)), _write(src, "b-labels-idx1-ubyte", b"1")]
    assert "the dataset is larger than 10 MB uncompressed" in _refused(parts, work, UploadLimits(max_total_bytes=10**7))
    assert inflated[0] < MiB

    lying = struct.pack(">4B3I", 0, 0, 8, 3, 10, 28, 28)  # 10 images declared, 2 GiB sent
    parts[0] = _write(src, "b-images-idx3-ubyte.gz", _gzip_bomb(lying, BOMB))
    assert "needs 7840 data bytes, it holds more" in _refused(parts, work)
    assert inflated[0] < 2 * MiB


def test_a_tar_gz_bomb_is_refused_without_expanding_it(src: Path, work: Path, inflated: list[int]):
    def tar_gz(header: tarfile.TarInfo, zeros: int) -> list[tuple[str, Path]]:
        return [_write(src, "b.tar.gz", _gzip_bomb(header.tobuf(tarfile.USTAR_FORMAT), zeros))]

    big = _entry("train-big.txt")
    big.size = BOMB
    assert _refused(tar_gz(big, BOMB), work).startswith("the dataset is larger than 1 GB")
    pax = _entry("././@PaxHeader", tarfile.XHDTYPE)
    pax.size = BOMB  # tarfile would read a pax header into memory whole
    assert "the archive has a 2.15 GB tar header; the limit is 1.05 MB" in _refused(tar_gz(pax, BOMB), work)
    long_name = _entry("././@LongLink", tarfile.GNUTYPE_LONGNAME)
    long_name.size = 900_000  # under the header limit, over this budget: the stream counter stops it
    message = _refused(tar_gz(long_name, 900_000 + 512), work, UploadLimits(max_total_bytes=100_000))
    assert message == "the dataset is larger than 100 kB uncompressed (the upload limit)"
    assert inflated[0] < 3 * MiB
