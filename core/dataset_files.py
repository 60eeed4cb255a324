"""Uploaded datasets: validate the files a user sends and pack them into one canonical tar; unpack it again.

The API hands `inspect_upload` the uploaded parts as (file name, local temp path). Accepted:

* sentence pairs: `train-*.txt` and `val-*.txt` (`test-*.txt` optional), UTF-8 lines `english<TAB>spanish[<TAB>...]`
  (what `pairs:PATH` reads, see ml/data/text.py);
* IDX images: `<prefix>-images-idx3-ubyte[.gz]` with `<prefix>-labels-idx1-ubyte[.gz]` (28x28 unsigned-byte
  images, 1-D unsigned-byte labels), either one pair or two of which exactly one is the test pair (`t10k-*` or
  `*test*`, as torchvision names them), plus an optional `classes.txt` (what `idx:PATH` reads, see ml/data/images.py);
* or ONE `.zip` / `.tar.gz` / `.tgz` holding such files, at its top level or inside one folder (flattened).

Everything is read as a stream with a byte budget (UploadLimits.max_total_bytes) charged for every byte that
decompression produces (zip members, the whole tar stream of a .tar.gz, the content of .gz IDX files) and for
loose files' sizes, so a zip or gzip bomb is refused after at most the budget, never expanded in full.

The result is a canonical tar: the files only, sorted, no folders, mtime 0, uid/gid 0, mode 0644 (`.gz` IDX files
kept compressed), so the same content always gives the same bytes and the same sha256, whatever way it came.
`extract_dataset` (the worker side) checks that sha256 and unpacks the tar atomically into a loadable folder.

Web-free, SQL-free and torch-free: only the standard library.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ml.kinds import DATA_KINDS

_CHUNK = 1 << 16
PAIRS_NAME = re.compile(r"^(?P<split>train|val|test)-[A-Za-z0-9_.+-]*\.txt$")
IDX_NAME = re.compile(r"^(?P<prefix>[A-Za-z0-9][A-Za-z0-9_.+-]*)-(?P<role>images|labels)-idx[13]-ubyte(?P<gz>\.gz)?$")
CLASSES_NAME = "classes.txt"
MAX_NAME_CHARS = 100  # a USTAR member name
MAX_CLASSES_BYTES = 10**6
MAX_TAR_HEADER_BYTES = 1 << 20  # a pax or GNU long-name header, which tarfile reads into memory whole
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
NESTED_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".lz", ".lzma")
ACCEPTED = (
    "send train-*.txt and val-*.txt (test-*.txt optional) sentence pairs, or *-images-idx3-ubyte[.gz] with "
    "*-labels-idx1-ubyte[.gz] IDX files (classes.txt optional), or one .zip/.tar.gz/.tgz holding them"
)
IDX_DIMS = {"images": 3, "labels": 1}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int = 200 * 10**6  # one uploaded part (a loose file or the archive)
    max_total_bytes: int = 10**9  # every byte read after decompression, all files together
    max_members: int = 64  # entries of an uploaded archive (folders and skipped entries included)
    max_files: int = 16  # data files in the dataset
    max_line_bytes: int = 1 << 16  # one line of a sentence-pair file


@dataclass(frozen=True)
class DatasetContent:
    kind: str  # "pairs" or "images" (a key of ml.kinds.DATA_KINDS)
    files: dict[str, int]  # canonical member name -> bytes, sorted by name
    counts: dict[str, int]  # pairs: train/val[/test] pairs; images: images/labels, or train_*/test_* per split
    archive: Path  # the canonical tar, inside workdir
    sha256: str  # hex sha256 of the archive
    bytes: int  # size of the archive


class DatasetRejected(ValueError):
    """The upload is not an acceptable dataset; the message is one user-facing line (the API answers 422)."""


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _show(name: str) -> str:
    """A file name as a message quotes it: repr (so control characters stay visible), at most 80 characters."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Budget:
    """Bytes that may still be read after decompression; DatasetRejected as soon as more are taken."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            self.refuse()

    def refuse(self) -> None:
        raise DatasetRejected(f"the dataset is larger than {_size(self.limit)} uncompressed (the upload limit)")


class _Counted:
    """A reader that charges every byte it returns to a budget and never asks for more than the budget allows."""

    def __init__(self, raw: _Readable, budget: _Budget) -> None:
        self.raw, self.budget = raw, budget

    def read(self, size: int = -1, /) -> bytes:
        room = self.budget.remaining + 1  # one byte more than allowed proves the excess
        data = self.raw.read(room if size is None or size < 0 else min(size, room))
        self.budget.take(len(data))
        return data


def _copy(src: _Readable, target: Path) -> int:
    """Stream `src` into the new file `target`; returns the bytes written."""
    written = 0
    with open(target, "xb") as out:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
    return written


# ---------------------------------------------------------------------------------------------------------------
# names


def _classify(name: str) -> tuple[str, str, str] | None:
    """(data kind, split or IDX prefix, role) for an accepted file name, None for any other name.

    ("pairs", "train", "") for train-x.txt; ("images", "t10k", "labels") for t10k-labels-idx1-ubyte.gz;
    ("images", "", "classes") for classes.txt.
    """
    if len(name) > MAX_NAME_CHARS:
        return None
    if m := PAIRS_NAME.match(name):
        return "pairs", m["split"], ""
    if (m := IDX_NAME.match(name)) and f"-{m['role']}-idx{IDX_DIMS[m['role']]}-" in name:
        return "images", m["prefix"], m["role"]
    if name == CLASSES_NAME:
        return "images", "", "classes"
    return None


def _is_test(prefix: str) -> bool:
    """Which of two IDX pairs is the test pair: ml.data.images reads `t10k*` and `*test*` prefixes so."""
    return prefix.lower().startswith("t10k") or "test" in prefix.lower()


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


class _Files:
    """The dataset files collected so far (name -> local path), admitted one by one."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.paths: dict[str, Path] = {}

    def admit(self, name: str, where: str = "") -> None:
        """Refuse `name` unless it is an accepted, new file name and there is room for one more file."""
        inside = f" in {_show(where)}" if where else ""
        if _classify(name) is None:
            if where and name.lower().endswith(NESTED_SUFFIXES):
                raise DatasetRejected(f"nested archive {_show(name)}{inside}: archives inside archives are refused")
            raise DatasetRejected(f"file {_show(name)}{inside} is not accepted: {ACCEPTED}")
        stem = name.removesuffix(".gz") if IDX_NAME.match(name) else name
        for other in self.paths:
            if other == name:
                raise DatasetRejected(f"file {_show(name)}{inside} appears twice")
            if (other.removesuffix(".gz") if IDX_NAME.match(other) else other) == stem:
                raise DatasetRejected(f"both {_show(other)} and {_show(name)}{inside}: send one of them")
        if len(self.paths) >= self.limits.max_files:
            raise DatasetRejected(f"more than {self.limits.max_files} files{inside}")

    def add(self, name: str, path: Path) -> None:
        if path.stat().st_size == 0:
            raise DatasetRejected(f"file {_show(name)} is empty")
        self.paths[name] = path


# ---------------------------------------------------------------------------------------------------------------
# archives


def _member_parts(raw: str, archive: str) -> list[str]:
    """The path components of an archive member; DatasetRejected for an absolute path or a `..` component."""
    path = raw.replace("\\", "/")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise DatasetRejected(f"{_show(archive)}: member {_show(raw)} has an absolute path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DatasetRejected(f"{_show(archive)}: member {_show(raw)} points outside the archive (..)")
    return parts


def _is_junk(parts: list[str]) -> bool:
    """What macOS adds to archives (resource forks, folder settings): skipped."""
    return parts[0] == "__MACOSX" or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _refuse_special(mode: int, raw: str, archive: str) -> None:
    """Refuse a member that is not a regular file, by its st_mode-style `mode` (no file type bits: let it pass)."""
    if not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    what = "a link" if stat.S_ISLNK(mode) else "a device or special file"
    raise DatasetRejected(f"{_show(archive)}: member {_show(raw)} is {what}; only regular files are accepted")


class _Layout:
    """Where an archive's files sit: all at its top level, or all inside one top folder (then flattened)."""

    def __init__(self, archive: str) -> None:
        self.archive = archive
        self.folder: str | None = None  # "" for the top level, once the first file is seen

    def flat_name(self, parts: list[str]) -> str:
        folder = "" if len(parts) == 1 else parts[0] if len(parts) == 2 else None
        if folder is None or (self.folder is not None and folder != self.folder):
            raise DatasetRejected(
                f"{_show(self.archive)}: files must sit at its top level or all in one folder "
                f"({_show('/'.join(parts))} does not)"
            )
        self.folder = folder
        return parts[-1]


def _zip_entry_count(path: Path) -> int:
    """Entries the zip's end record declares (read before zipfile loads the whole central directory); 0 if none."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - 22 - 0xFFFF))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 12 > len(tail):
        return 0
    return struct.unpack("<H", tail[at + 10 : at + 12])[0]  # 0xFFFF: a zip64 count, more than any limit here


def _unpack_zip(archive: str, path: Path, stage: Path, budget: _Budget, limits: UploadLimits) -> _Files:
    if _zip_entry_count(path) > limits.max_members:
        raise DatasetRejected(f"{_show(archive)} has more than {limits.max_members} entries")
    files, layout = _Files(limits), _Layout(archive)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > limits.max_members:
                raise DatasetRejected(f"{_show(archive)} has more than {limits.max_members} entries")
            for info in infos:
                parts = _member_parts(info.filename, archive)
                _refuse_special(info.external_attr >> 16 if info.create_system == 3 else 0, info.filename, archive)
                if info.is_dir() or not parts or _is_junk(parts):
                    continue
                if info.flag_bits & 0x1:
                    raise DatasetRejected(f"{_show(archive)}: member {_show(info.filename)} is encrypted")
                name = layout.flat_name(parts)
                files.admit(name, archive)
                if info.file_size > budget.remaining:  # declared sizes are not trusted, but may refuse early
                    budget.refuse()
                with zf.open(info) as src:
                    _copy(_Counted(src, budget), stage / name)
                files.add(name, stage / name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise DatasetRejected(f"{_show(archive)} is not a valid zip file ({' '.join(str(exc).split())})") from None
    except NotImplementedError:
        raise DatasetRejected(f"{_show(archive)} uses a compression method that cannot be read here") from None
    return files


_TAR_HEADER_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                     tarfile.GNUTYPE_LONGLINK)  # fmt: skip


class _GuardedTarInfo(tarfile.TarInfo):
    """Refuses an extended header (pax, GNU long name) too big to be real before tarfile reads it into memory."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _TAR_HEADER_TYPES and self.size > MAX_TAR_HEADER_BYTES:
            raise DatasetRejected(
                f"the archive has a {_size(self.size)} tar header; the limit is {_size(MAX_TAR_HEADER_BYTES)}"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _unpack_tar(archive: str, path: Path, stage: Path, budget: _Budget, limits: UploadLimits) -> _Files:
    """A .tar.gz read as one stream: the whole decompressed tar (headers, skipped entries) is charged."""
    files, layout = _Files(limits), _Layout(archive)
    try:
        with (
            gzip.open(path, "rb") as gz,
            tarfile.open(fileobj=_Counted(gz, budget), mode="r|", tarinfo=_GuardedTarInfo) as tf,
        ):
            for count, member in enumerate(tf, start=1):
                if count > limits.max_members:
                    raise DatasetRejected(f"{_show(archive)} has more than {limits.max_members} entries")
                parts = _member_parts(member.name, archive)
                if member.issym() or member.islnk():
                    _refuse_special(stat.S_IFLNK, member.name, archive)
                if not (member.isreg() or member.isdir()):
                    _refuse_special(stat.S_IFCHR, member.name, archive)
                if member.size > budget.remaining:  # skipping it would read it too
                    budget.refuse()
                if member.isdir() or not parts or _is_junk(parts):
                    continue
                name = layout.flat_name(parts)
                files.admit(name, archive)
                src = tf.extractfile(member)
                assert src is not None  # a regular file
                _copy(src, stage / name)
                files.add(name, stage / name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetRejected(f"{_show(archive)} is not a valid .tar.gz file ({' '.join(str(exc).split())})") from None
    return files


def _collect(parts: list[tuple[str, Path]], stage: Path, budget: _Budget, limits: UploadLimits) -> _Files:
    """The dataset files of the upload: the loose parts, or the members of its one archive (staged)."""
    for name, path in parts:
        if Path(path).stat().st_size > limits.max_upload_bytes:
            raise DatasetRejected(f"{_show(name)} is larger than {_size(limits.max_upload_bytes)} (the upload limit)")
    if any(_is_archive(name) for name, _ in parts):
        if len(parts) > 1:
            raise DatasetRejected("send one .zip/.tar.gz archive on its own, or loose files without an archive")
        name, path = parts[0]
        unpack = _unpack_zip if name.lower().endswith(".zip") else _unpack_tar
        files = unpack(name, Path(path), stage, budget, limits)
        if not files.paths:
            raise DatasetRejected(f"{_show(name)} holds no files: {ACCEPTED}")
        return files
    files = _Files(limits)
    for name, path in parts:
        if "/" in name or "\\" in name:
            raise DatasetRejected(f"file name {_show(name)} must be a plain name, not a path")
        files.admit(name)
        budget.take(Path(path).stat().st_size)
        files.add(name, Path(path))
    return files


# ---------------------------------------------------------------------------------------------------------------
# contents


def _count_pairs(name: str, path: Path, max_line: int) -> int:
    """Non-blank lines of a sentence-pair file, each checked: UTF-8, at least english<TAB>spanish.

    Lines are numbered as Python's text mode reads them (`\\n`, `\\r\\n` and a lone `\\r` end a line).
    """
    pairs = number = 0
    with open(path, "rb") as f:
        while raw := f.readline(max_line + 1):
            if len(raw) > max_line:
                raise DatasetRejected(f"{_show(name)} line {number + 1} is longer than {_size(max_line)}")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DatasetRejected(f"{_show(name)} line {number + 1} is not UTF-8 text") from None
            text = text.removesuffix("\n").removesuffix("\r")
            for line in text.split("\r"):
                number += 1
                if not line.strip():
                    continue
                if len(line.split("\t")) < 2:
                    raise DatasetRejected(f"{_show(name)} line {number}: expected english<TAB>spanish")
                pairs += 1
    if not pairs:
        raise DatasetRejected(f"{_show(name)} holds no sentence pairs")
    return pairs


def _check_pairs(paths: dict[str, Path], limits: UploadLimits) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, path in paths.items():
        split = PAIRS_NAME.match(name)["split"]  # type: ignore[index]
        counts[split] = counts.get(split, 0) + _count_pairs(name, path, limits.max_line_bytes)
    for split in ("train", "val"):
        if split not in counts:
            raise DatasetRejected(
                f"missing {split}-*.txt: sentence pairs need train-*.txt and val-*.txt (test-*.txt optional)"
            )
    return {split: counts[split] for split in SPLITS if split in counts}


def _read_exact(f: _Readable, n: int) -> bytes:
    data = b""
    while len(data) < n and (chunk := f.read(n - len(data))):
        data += chunk
    return data


def _check_idx(name: str, path: Path, role: str, budget: _Budget) -> tuple[int, int]:
    """(items, largest label or -1) of one IDX file, streamed; gzip content is charged to the budget."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as raw:
            f: _Readable = _Counted(raw, budget) if gzipped else raw
            return _check_idx_stream(name, f, role, budget, gzipped)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetRejected(f"{_show(name)} is not a valid gzip file ({' '.join(str(exc).split())})") from None


def _check_idx_stream(name: str, f: _Readable, role: str, budget: _Budget, gzipped: bool) -> tuple[int, int]:
    head = _read_exact(f, 4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise DatasetRejected(f"{_show(name)} is not an IDX file (bad magic number {head.hex() or 'none'})")
    code, ndim = head[2], head[3]
    if code != 0x08:
        raise DatasetRejected(f"{_show(name)} holds IDX type 0x{code:02x}; {role} must be unsigned bytes (0x08)")
    if ndim != IDX_DIMS[role]:
        raise DatasetRejected(f"{_show(name)} holds {ndim}-D data; {role} must be {IDX_DIMS[role]}-D")
    dims_raw = _read_exact(f, 4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DatasetRejected(f"{_show(name)} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    if role == "images" and dims[1:] != (28, 28):
        raise DatasetRejected(f"{_show(name)} holds {dims[1]}x{dims[2]} images; 28x28 are needed")
    if dims[0] == 0:
        raise DatasetRejected(f"{_show(name)} holds no {role}")
    expected = dims[0] * (dims[1] * dims[2] if role == "images" else 1)
    if gzipped and expected > budget.remaining:
        budget.refuse()
    got, largest = 0, -1
    while chunk := f.read(min(_CHUNK, expected - got + 1)):
        got += len(chunk)
        if role == "labels":
            largest = max(largest, max(chunk))
        if got > expected:
            break
    if got != expected:
        holds = "more" if got > expected else str(got)
        raise DatasetRejected(f"{_show(name)}: its header {list(dims)} needs {expected} data bytes, it holds {holds}")
    return dims[0], largest


def _check_classes(path: Path, largest: int) -> None:
    if path.stat().st_size > MAX_CLASSES_BYTES:
        raise DatasetRejected(f"{CLASSES_NAME} is larger than {_size(MAX_CLASSES_BYTES)}")
    try:
        names = [line for line in path.read_bytes().decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DatasetRejected(f"{CLASSES_NAME} is not UTF-8 text") from None
    if len(names) < largest + 1:
        raise DatasetRejected(f"{CLASSES_NAME} names {len(names)} classes but the labels go up to {largest}")


def _check_images(paths: dict[str, Path], budget: _Budget) -> dict[str, int]:
    groups: dict[str, dict[str, str]] = {}  # prefix -> role -> file name
    for name in paths:
        _, prefix, role = _classify(name)  # type: ignore[misc]
        if role != "classes":
            groups.setdefault(prefix, {})[role] = name
    if not groups:
        raise DatasetRejected(f"{CLASSES_NAME} needs IDX image and label files beside it")
    for prefix, roles in sorted(groups.items()):
        for role, other in (("images", "labels"), ("labels", "images")):
            if role not in roles:
                wanted = f"{prefix}-{role}-idx{IDX_DIMS[role]}-ubyte[.gz]"
                raise DatasetRejected(f"{_show(roles[other])} has no matching {wanted}")
    if len(groups) > 2:
        raise DatasetRejected(
            f"expected one or two image/label pairs, found {len(groups)}: {', '.join(sorted(groups))}"
        )
    if len(groups) == 2 and sum(_is_test(p) for p in groups) != 1:
        raise DatasetRejected("with two image/label pairs, name the test pair t10k-* (or *test*) and the other train-*")
    counts: dict[str, int] = {}
    largest = -1
    for prefix, roles in sorted(groups.items(), key=lambda item: _is_test(item[0])):
        images, _ = _check_idx(roles["images"], paths[roles["images"]], "images", budget)
        labels, top = _check_idx(roles["labels"], paths[roles["labels"]], "labels", budget)
        if images != labels:
            raise DatasetRejected(
                f"{_show(roles['images'])} holds {images} images but {_show(roles['labels'])} {labels} labels"
            )
        largest = max(largest, top)
        split = "" if len(groups) == 1 else "test_" if _is_test(prefix) else "train_"
        counts.update({f"{split}images": images, f"{split}labels": labels})
    if CLASSES_NAME in paths:
        _check_classes(paths[CLASSES_NAME], largest)
    return counts


def _check_contents(paths: dict[str, Path], budget: _Budget, limits: UploadLimits) -> tuple[str, dict[str, int]]:
    """(data kind, counts) of the collected files; DatasetRejected for mixed kinds or bad contents."""
    by_kind: dict[str, list[str]] = {}
    for name in sorted(paths):
        by_kind.setdefault(_classify(name)[0], []).append(name)  # type: ignore[index]
    if len(by_kind) > 1:
        raise DatasetRejected(
            f"sentence pairs ({_show(by_kind['pairs'][0])}) and IDX image files ({_show(by_kind['images'][0])}) "
            "cannot be mixed in one dataset"
        )
    (kind,) = by_kind
    assert kind in DATA_KINDS
    return kind, _check_pairs(paths, limits) if kind == "pairs" else _check_images(paths, budget)


# ---------------------------------------------------------------------------------------------------------------
# the canonical archive


def _write_archive(paths: dict[str, Path], workdir: Path) -> tuple[Path, str]:
    """(the canonical tar of `paths`, written into workdir and named by its sha256; that sha256)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".dataset-", suffix=".tar.part", dir=workdir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name in sorted(paths):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode, info.type = paths[name].stat().st_size, 0, 0o644, tarfile.REGTYPE
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with open(paths[name], "rb") as src:
                    tf.addfile(info, src)
        sha256 = _sha256(tmp)
        final = workdir / f"dataset-{sha256}.tar"
        os.replace(tmp, final)
        return final, sha256
    finally:
        tmp.unlink(missing_ok=True)


def inspect_upload(
    parts: list[tuple[str, Path]], workdir: Path, limits: UploadLimits = UploadLimits()
) -> DatasetContent:
    """Validate an upload (file name, local path per part) and write its canonical tar into `workdir`.

    DatasetRejected (one line naming the problem) for anything not accepted: see the module docstring for what
    is, and UploadLimits for the caps. Nothing but the archive is left in workdir.
    """
    if not parts:
        raise DatasetRejected(f"no files were uploaded: {ACCEPTED}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=workdir))
    try:
        budget = _Budget(limits.max_total_bytes)
        paths = _collect([(name, Path(path)) for name, path in parts], stage, budget, limits).paths
        kind, counts = _check_contents(paths, budget, limits)
        archive, sha256 = _write_archive(paths, workdir)
        files = {name: paths[name].stat().st_size for name in sorted(paths)}
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return DatasetContent(kind, files, counts, archive, sha256, archive.stat().st_size)


# ---------------------------------------------------------------------------------------------------------------
# the worker side


def extract_dataset(archive: Path, dest: Path, expected_sha256: str | None = None) -> Path:
    """Unpack a canonical dataset tar into the folder `dest` (returned) for the `pairs:`/`idx:` loaders.

    An existing `dest` is returned as it is (it was checked when it was made). Otherwise the archive's sha256
    must equal `expected_sha256` when given (DatasetRejected, a ValueError, when not), every member must be a
    regular file with a plain accepted name, and the files land in a temp folder beside `dest` renamed to
    `dest` when complete, so no half folder is ever seen (a concurrent extraction that wins is fine).
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    if expected_sha256 is not None and (actual := _sha256(archive)) != expected_sha256.lower():
        raise DatasetRejected(f"{archive.name} has sha256 {actual}, expected {expected_sha256}: refusing to extract")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, mode="r:") as tf:
                for member in tf:
                    if not member.isreg() or _classify(member.name) is None or (work / member.name).exists():
                        raise DatasetRejected(f"{archive.name}: unexpected member {_show(member.name)}")
                    src = tf.extractfile(member)
                    assert src is not None  # a regular file
                    _copy(src, work / member.name)
        except tarfile.TarError as exc:
            raise DatasetRejected(f"{archive.name} is not a dataset archive ({exc})") from None
        try:
            work.rename(dest)
        except OSError:
            if not dest.is_dir():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
