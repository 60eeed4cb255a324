"""Serving the dashboard's files (no browser needed): the page, its modules, Plotly, and nothing else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.dashboard import STATIC_DIR
from core.settings import Settings
from tests.support import TEST_PROCESS

# `import ... from "./x.js"`, `export ... from "./x.js"` and `import "./x.js"` (relative imports only)
IMPORT = re.compile(
    r"""^\s*(?:import|export)\b[^'"]*?from\s+["'](\.[^"']+)["']|^\s*import\s+["'](\.[^"']+)["']""",
    re.MULTILINE,
)


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                            broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
                            artifacts_dir=tmp_path / "artifacts", cache_dir=tmp_path / "cache", data_dir=tmp_path,
                            **{**TEST_PROCESS, **overrides})
        client = TestClient(create_app(settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.app.state.engine.dispose()


def test_index_and_every_module_it_imports_are_served_as_javascript(make_client) -> None:
    client = make_client()
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert index.headers["cache-control"] == "no-cache"
    entry = re.search(r'<script type="module" src="([^"]+)"', index.text)
    assert entry is not None
    pending, seen = [entry.group(1)], set()
    while pending:  # walk the import graph from app.js: every relative import must resolve
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        r = client.get(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"] == "text/javascript; charset=utf-8", url
        base = url.rsplit("/", 1)[0]
        for match in IMPORT.finditer(r.text):
            target = (Path(base) / (match.group(1) or match.group(2))).as_posix()
            pending.append(re.sub(r"/[^/]+/\.\./", "/", target.replace("/./", "/")))
    served = {f"/static/{p.relative_to(STATIC_DIR).as_posix()}" for p in STATIC_DIR.rglob("*.js")}
    assert seen == served  # no module is unreachable, none is missing
    for href in re.findall(r'(?:href|src)="(/static/[^"]+)"', index.text):
        assert client.get(href).status_code == 200, href


def test_plotly_comes_from_the_installed_package(make_client) -> None:
    client = make_client()
    r = client.get("/static/vendor/plotly.min.js")
    bundle = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    assert r.status_code == 200 and r.content == bundle.read_bytes()
    assert r.headers["content-type"].startswith("text/javascript")
    assert "max-age" in r.headers["cache-control"]
    assert not (STATIC_DIR / "vendor").exists()  # never copied into the repository


def test_unchanged_files_answer_304_with_their_etag(make_client) -> None:
    client = make_client()
    first = client.get("/static/css/app.css")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/css")
    again = client.get("/static/css/app.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = client.get("/static/css/app.css", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.content == first.content
    assert client.head("/").status_code == 200


@pytest.mark.parametrize("path", [
    "/static/../main.py", "/static/%2e%2e/main.py", "/static/js/%2e%2e/%2e%2e/routes/dashboard.py",
    "/static/..%2fmain.py", "/static/%2e%2e%2f%2e%2e%2fcore/settings.py", "/static//etc/passwd",
    "/static/.hidden.js", "/static/js/", "/static/index", "/static/" + "a/" * 150 + "x.js",
    "/static/js/app.js%00.png", "/static/js\\app.js",
])
def test_nothing_outside_the_static_folder_or_off_the_whitelist_is_served(make_client, path: str) -> None:
    r = make_client().get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert "detail" in r.json()


def test_settings_tell_the_page_whether_a_key_is_needed(make_client) -> None:
    assert make_client().get("/dashboard/settings").json()["api_key_required"] is False
    assert make_client(api_key="k").get("/dashboard/settings").json()["api_key_required"] is True
