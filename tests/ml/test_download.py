"""The built-in spa-eng pairs: downloaded from a (local) server, split deterministically, loadable, and refused
with one line when the server is missing, answers 404 or sends a broken zip."""

from __future__ import annotations

import functools
import http.server
import itertools
import string
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml.data.catalog import list_datasets, resolve_dataset
from ml.data.download import SPA_ENG_URL, URL_ENV, download_spa_eng, spa_eng_url, split_spa_eng
from ml.data.text import load_pairs, normalize
from ml.errors import DataError
from tests.support import free_port

RAW_EXTRAS = [
    "Hello, World!\t¡Hola, Mundo!\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)",
    "This sentence is far too long to keep.\tEsta frase es demasiado larga.\tCC-BY #3",
    "only one field",
    "Hello, World!\t¡Hola, Mundo!\tCC-BY a duplicate once normalised",
]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    """Serves files of one folder, counts requests, logs nothing."""

    requests = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).requests += 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = type("Handler", (_Quiet,), {"requests": 0})
        self.handler = handler
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=folder))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str = "spa-eng.zip") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    @property
    def requests(self) -> int:
        return self.handler.requests


@pytest.fixture
def source_lines(shared_data: Path) -> list[str]:
    """300 lines of the assignment's train file plus a few raw-looking ones (spa.txt's format)."""
    lines = (shared_data / "spa-eng" / "train-eng-spa.txt").read_text(encoding="utf-8").splitlines()[:300]
    return lines + RAW_EXTRAS


@pytest.fixture
def server(tmp_path: Path, source_lines: list[str]) -> Iterator[Server]:
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "spa-eng.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("_about.txt", "about the file\n")
        zf.writestr("spa.txt", "\n".join(source_lines) + "\n")
    (served / "corrupt.zip").write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    with zipfile.ZipFile(served / "nospa.zip", "w") as zf:
        zf.writestr("fra.txt", "Go.\tVa !\tCC-BY\n")
    srv = Server(served)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _expected_pairs(source_lines: list[str]) -> set[str]:
    """The (english, spanish) lines the split must hold: the shared lines (already filtered, some with a stray
    space that normalising strips) and the one raw extra that survives."""
    shared = {"\t".join(normalize(field) for field in line.split("\t")[:2]) for line in source_lines[:300]}
    return shared | {"hello world !\thola mundo !"}


def _split_lines(folder: Path) -> dict[str, list[str]]:
    return {
        split: (folder / f"{split}-eng-spa.txt").read_text(encoding="utf-8").splitlines()
        for split in ("train", "val", "test")
    }


def test_download_makes_the_folder_with_a_seeded_split(server: Server, source_lines: list[str], tmp_path: Path):
    data_dir = tmp_path / "data"
    folder = download_spa_eng(data_dir, url=server.url())
    assert folder == data_dir / "spa-eng"
    assert sorted(p.name for p in folder.iterdir()) == ["test-eng-spa.txt", "train-eng-spa.txt", "val-eng-spa.txt"]
    assert sorted(p.name for p in data_dir.iterdir()) == ["spa-eng"]  # no temp folder or zip left behind

    splits = _split_lines(folder)
    expected = _expected_pairs(source_lines)
    n = len(expected)
    assert {s: len(v) for s, v in splits.items()} == {"train": n - 2 * (n // 10), "val": n // 10, "test": n // 10}
    every = [line for lines in splits.values() for line in lines]
    assert all(len(line.split("\t")) == 3 for line in every)
    pairs = ["\t".join(line.split("\t")[:2]) for line in every]
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected  # deduplicated, filtered, normalised
    assert "hello world !\thola mundo !\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 (a) & #2 (b)" in every
    assert splits["train"][:50] != source_lines[:50]  # shuffled


def test_the_split_is_deterministic_and_follows_the_seed(server: Server, source_lines: list[str], tmp_path: Path):
    one = download_spa_eng(tmp_path / "one", url=server.url())
    two = download_spa_eng(tmp_path / "two", url=server.url())
    for name in ("train-eng-spa.txt", "val-eng-spa.txt", "test-eng-spa.txt"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    assert split_spa_eng(source_lines) == _split_lines(one)
    assert split_spa_eng(source_lines, seed=7)["val"] != _split_lines(one)["val"]
    words = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)]  # 17,576
    big = split_spa_eng([f"the {w} .\tel {w} .\tx" for w in words])
    assert (len(big["val"]), len(big["test"])) == (1000, 1000)  # 1000 held out each for a large source


def test_resolve_downloads_once_through_the_env_url_and_the_pairs_loader_reads_it(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(URL_ENV, server.url())
    data_dir = tmp_path / "data"
    entries = {e.name: e for e in list_datasets(data_dir)}
    spa_eng = entries["spa-eng"]
    assert (spa_eng.data_kind, spa_eng.builtin, spa_eng.available) == ("pairs", True, False)
    with pytest.raises(DataError, match="holds text pairs, not images"):
        resolve_dataset("spa-eng", "images", data_dir)
    assert server.requests == 0 and not (data_dir / "spa-eng").exists()
    assert resolve_dataset("spa-eng", "pairs", data_dir, download=False) == f"pairs:{data_dir / 'spa-eng'}"
    assert server.requests == 0

    spec = resolve_dataset("spa-eng", "pairs", data_dir)
    assert spec == f"pairs:{data_dir / 'spa-eng'}" and server.requests == 1
    assert resolve_dataset("spa-eng", "pairs", data_dir) == spec and server.requests == 1  # not fetched again
    assert [e for e in list_datasets(data_dir) if e.name == "spa-eng"][0].available

    splits = load_pairs(spec, data_dir)
    assert len(splits.train) > 200 and splits.val and splits.test and splits.val != splits.test
    assert ("hola mundo !", "hello world !") in splits.train + splits.val + splits.test


def test_url_argument_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(URL_ENV, raising=False)
    assert spa_eng_url() == SPA_ENG_URL == "https://www.manythings.org/anki/spa-eng.zip"
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:1/x.zip")
    assert spa_eng_url() == "http://127.0.0.1:1/x.zip"
    assert spa_eng_url("http://example.invalid/y.zip") == "http://example.invalid/y.zip"


def _assert_one_line_and_no_folder(exc: DataError, data_dir: Path, url: str) -> str:
    message = str(exc)
    assert "\n" not in message and url in message
    assert "train-eng-spa.txt" in message and str(data_dir / "spa-eng") in message and "POST /datasets" in message
    assert not data_dir.exists() or list(data_dir.iterdir()) == []  # no half folder, no temp folder
    return message


def test_a_404_leaves_no_folder_and_says_what_to_do(server: Server, tmp_path: Path):
    url = server.url("missing.zip")
    with pytest.raises(DataError) as caught:
        download_spa_eng(tmp_path / "data", url=url)
    message = _assert_one_line_and_no_folder(caught.value, tmp_path / "data", url)
    assert message.startswith(f"could not download spa-eng from {url} (HTTP 404")


def test_an_unreachable_server_gives_the_same_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = f"http://127.0.0.1:{free_port()}/spa-eng.zip"  # nothing listens there
    monkeypatch.setenv(URL_ENV, url)
    with pytest.raises(DataError, match="^could not download spa-eng from") as caught:
        resolve_dataset("spa-eng", "pairs", tmp_path / "data")
    _assert_one_line_and_no_folder(caught.value, tmp_path / "data", url)


@pytest.mark.parametrize(("name", "why"), [("corrupt.zip", "not a valid zip file"), ("nospa.zip", "holds no spa.txt")])
def test_a_broken_zip_is_refused_and_leaves_no_folder(server: Server, tmp_path: Path, name: str, why: str):
    url = server.url(name)
    with pytest.raises(DataError, match=why) as caught:
        download_spa_eng(tmp_path / "data", url=url)
    _assert_one_line_and_no_folder(caught.value, tmp_path / "data", url)


def test_an_existing_folder_is_used_as_it_is_and_a_foreign_one_is_kept(
    server: Server, shared_data: Path, tmp_path: Path
):
    unreachable = f"http://127.0.0.1:{free_port()}/spa-eng.zip"
    assert download_spa_eng(shared_data, url=unreachable) == shared_data / "spa-eng"  # read-only, no download

    data_dir = tmp_path / "data"
    foreign = data_dir / "spa-eng"
    foreign.mkdir(parents=True)
    (foreign / "notes.md").write_text("mine\n")
    with pytest.raises(DataError, match="spa-eng exists but holds no train-\\*.txt and val-\\*.txt; remove it or put"):
        download_spa_eng(data_dir, url=server.url())
    assert sorted(p.name for p in data_dir.iterdir()) == ["spa-eng"] and (foreign / "notes.md").read_text() == "mine\n"

    (foreign / "notes.md").unlink()  # an empty folder is simply filled
    assert download_spa_eng(data_dir, url=server.url()) == foreign and (foreign / "val-eng-spa.txt").is_file()
