"""The built-in `spa-eng` sentence pairs: downloaded from manythings.org and split once, on first use.

The source is the Tatoeba-based Anki file `spa-eng.zip` (https://www.manythings.org/anki/, CC BY 2.0 FR),
whose `spa.txt` holds lines `english<TAB>spanish<TAB>attribution`. `split_spa_eng` makes the assignment's
files from it: see its docstring for exactly how. Everything is written into a hidden temp folder of the data
dir that is renamed to `<data_dir>/spa-eng` only when complete, so a failed download never leaves a half folder.

Imports no torch at module level (ml.data.catalog imports this module and core/ imports the catalog); the
normalisation is ml.data.text's, imported when a download is actually split.
"""

from __future__ import annotations

import http.client
import os
import random
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ml.data.specs import folder_kind
from ml.errors import DataError

SPA_ENG = "spa-eng"  # the dataset's name, and its folder under the data dir
SPA_ENG_URL = "https://www.manythings.org/anki/spa-eng.zip"
URL_ENV = "INKWELL_SPA_ENG_URL"  # overrides SPA_ENG_URL (tests point it at a local server)
SOURCE_MEMBER = "spa.txt"
SPLIT_FILES = {"train": "train-eng-spa.txt", "val": "val-eng-spa.txt", "test": "test-eng-spa.txt"}
SPLIT_SEED = 42
HELD_OUT = 1000  # pairs in val, and again in test (a tenth each for small sources)
MAX_LENGTH = 20  # the assignment's filter: both normalised sides shorter than this
DOWNLOAD_TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 100 * 10**6  # the real zip is about 5 MB
MAX_SOURCE_BYTES = 300 * 10**6  # spa.txt uncompressed (about 25 MB today)
_CHUNK = 1 << 16


def spa_eng_url(url: str | None = None) -> str:
    """The URL to download from: `url` when given, else $INKWELL_SPA_ENG_URL, else manythings.org's."""
    return url or os.environ.get(URL_ENV) or SPA_ENG_URL


def _hint(dest: Path) -> str:
    return (
        f"put {SPLIT_FILES['train']} and {SPLIT_FILES['val']} (lines english<TAB>spanish) in {dest}, "
        "or upload train-*.txt and val-*.txt with POST /datasets"
    )


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    """A short, one-line reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {_one_line(exc.reason)}"
    if isinstance(exc, urllib.error.URLError):
        return _one_line(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return _one_line(exc.strerror)
    return _one_line(exc) or type(exc).__name__


def fetch(url: str, target: Path, timeout: float = DOWNLOAD_TIMEOUT_S, max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
    """Stream `url` into `target` (at most `max_bytes`); raises OSError/URLError/HTTPException on failure."""
    request = urllib.request.Request(url, headers={"User-Agent": "inkwell-dataset-download/1"})
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "xb") as out:
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > max_bytes:
                raise OSError(0, f"the download is larger than {max_bytes // 10**6} MB")
            out.write(chunk)


def read_source(archive: Path, max_bytes: int = MAX_SOURCE_BYTES) -> list[str]:
    """The lines of `spa.txt` inside the downloaded zip; ValueError (one line) when the zip is unusable."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
            if SOURCE_MEMBER not in names:
                raise ValueError(f"the zip holds no {SOURCE_MEMBER}")
            data = bytearray()
            with zf.open(names[SOURCE_MEMBER]) as member:
                while chunk := member.read(_CHUNK):
                    data += chunk
                    if len(data) > max_bytes:
                        raise ValueError(f"{SOURCE_MEMBER} is larger than {max_bytes // 10**6} MB")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ValueError(f"not a valid zip file ({_one_line(exc)})") from None
    try:
        return bytes(data).decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{SOURCE_MEMBER} is not UTF-8 text") from None


def split_spa_eng(
    lines: Iterable[str], seed: int = SPLIT_SEED, held_out: int = HELD_OUT, max_length: int = MAX_LENGTH
) -> dict[str, list[str]]:
    """The train/val/test lines made from the source's lines, in the assignment's format.

    How the split is made (deterministic for a given source file):

    1. each line `english<TAB>spanish<TAB>attribution` is normalised like ml.data.text does (lower-case ASCII
       letters, `. ! ?` spaced off, every other run of characters one space); lines with fewer than two
       fields are skipped;
    2. pairs with an empty side, or a side of `max_length` (20) characters or more, are dropped: the
       assignment's filter, the one ml.data.text.load_pairs applies with its default max_length;
    3. repeated (english, spanish) pairs are kept once (the first, with its attribution), so no sentence
       pair sits in two splits;
    4. the pairs are shuffled with random.Random(seed) (seed 42);
    5. the first `held_out` (1000) pairs are test, the next `held_out` are val, the rest train; when there are
       fewer than 10 * held_out pairs, test and val get a tenth of them each (at least one).

    Output lines are `english<TAB>spanish<TAB>attribution` (the attribution as in the source).
    ValueError when fewer than three pairs survive.
    """
    from ml.data.text import normalize  # imports torch: only when a download is split

    seen: set[tuple[str, str]] = set()
    kept: list[str] = []
    for line in lines:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) < 2:
            continue
        eng, spa = normalize(fields[0]), normalize(fields[1])
        if not eng or not spa or len(eng) >= max_length or len(spa) >= max_length or (eng, spa) in seen:
            continue
        seen.add((eng, spa))
        attribution = " ".join(fields[2].split()) if len(fields) > 2 else ""
        kept.append(f"{eng}\t{spa}\t{attribution}")
    if len(kept) < 3:
        raise ValueError(f"only {len(kept)} usable sentence pairs in {SOURCE_MEMBER}")
    random.Random(seed).shuffle(kept)
    size = min(held_out, max(1, len(kept) // 10))
    return {"train": kept[2 * size :], "val": kept[size : 2 * size], "test": kept[:size]}


def download_spa_eng(data_dir: Path, url: str | None = None, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """`<data_dir>/spa-eng`, downloaded and split (see split_spa_eng) unless it already holds pairs.

    DataError (one line: what failed, the URL, which files to place where or to upload) when the download
    fails (offline, HTTP error, timeout), the zip is not usable, or the data dir cannot be written.
    """
    data_dir = Path(data_dir)
    dest = data_dir / SPA_ENG
    if folder_kind(dest) == "pairs":
        return dest
    url = spa_eng_url(url)
    work: Path | None = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{SPA_ENG}-download-", dir=data_dir))  # hidden: never listed
        part, archive = work / f"{SPA_ENG}.zip.part", work / f"{SPA_ENG}.zip"
        try:
            fetch(url, part, timeout)
        except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
            raise DataError(f"could not download {SPA_ENG} from {url} ({_reason(exc)}); {_hint(dest)}") from None
        part.rename(archive)
        try:
            splits = split_spa_eng(read_source(archive))
        except ValueError as exc:
            raise DataError(f"the {SPA_ENG} download from {url} is unusable: {exc}; {_hint(dest)}") from None
        archive.unlink()
        for split, lines in splits.items():
            with open(work / SPLIT_FILES[split], "w", encoding="utf-8", newline="\n") as f:
                f.writelines(line + "\n" for line in lines)
        _publish(work, dest)
    except OSError as exc:  # the data dir: not writable, full, ...
        raise DataError(f"cannot write the {SPA_ENG} dataset into {data_dir} ({_reason(exc)}); {_hint(dest)}") from None
    finally:
        if work is not None and work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _publish(work: Path, dest: Path) -> None:
    """Rename the complete folder `work` to `dest` (replacing an empty `dest`); fine if another process won."""
    try:
        work.rename(dest)
    except OSError:
        if folder_kind(dest) == "pairs":  # a concurrent download finished first
            return
        if dest.exists():
            message = f"{dest} exists but holds no train-*.txt and val-*.txt; remove it or {_hint(dest)}"
            raise DataError(message) from None
        raise
