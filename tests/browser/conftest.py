"""The dashboard in a real browser against the real service: `python -m api` and `python -m worker`.

One stack per session on the embedded default (a SQLite database and a SQLite-backed Celery broker in a
temporary folder, a unique train queue, the shared data), migrated with `alembic upgrade head`. Both
processes run in their own process groups and are killed at the end. Headless Chromium (Debian's
/usr/bin/chromium) is driven with Playwright; every test gets a fresh page that records console errors
and page errors, and leaves a screenshot under test-results/screenshots/.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.fixtures.services import ApiProcess, Service, WorkerProcess, service_env
from tests.support import ROOT

SCREENSHOTS = ROOT / "test-results" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90.0
TRAIN_TIMEOUT = 180.0  # two shared cores: be patient
API_KEY = "browser-test-key"


def _start(tmp: Path, shared_data: Path, with_worker: bool, **settings: str) -> Service:
    """Migrate a fresh SQLite database in `tmp` (`alembic upgrade head`, as a user does), start the API
    (and a worker), wait until they are ready."""
    env = service_env(database_url=f"sqlite:///{tmp / 'inkwell.db'}",
                      broker_url=f"sqla+sqlite:///{tmp / 'broker.db'}", artifacts_dir=tmp / "artifacts",
                      cache_dir=tmp / "cache",
                      data_dir=shared_data, queue_prefix=f"browser-{uuid.uuid4().hex[:12]}-", **settings)
    migrate = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    svc = Service(ApiProcess(env, tmp / "api.log"))
    try:
        if with_worker:
            svc.workers.append(WorkerProcess(env, tmp / "worker.log"))
        svc.api.wait_ready(START_TIMEOUT)
        for worker in svc.workers:
            worker.wait_ready(START_TIMEOUT)
    except BaseException:
        svc.stop()
        raise
    return svc


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Service]:
    """The API and one worker on the embedded default."""
    svc = _start(tmp_path_factory.mktemp("dashboard-stack"), shared_data, with_worker=True)
    yield svc
    svc.stop()


@pytest.fixture
def keyed_api(tmp_path: Path, shared_data: Path) -> Iterator[Service]:
    """Just the API (no worker: queued runs stay queued), with INKWELL_API_KEY set to API_KEY."""
    svc = _start(tmp_path, shared_data, with_worker=False, api_key=API_KEY)
    svc.http.headers["X-API-Key"] = API_KEY  # the test's own client reads with the key; the page must ask
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def trained_runs(service: Service) -> dict[str, str]:
    """A tiny CNN and a tiny seq2seq with attention, queued through the API at once (run ids by model)."""
    cnn = service.train(model="cnn", dataset="mnist-8k", limit=300, epochs=1, batch_size=32)
    s2s = service.train(model="seq2seq", dataset="spa-eng", limit=200, epochs=1, hidden_size=32,
                        attention=True, batch_size=32)
    return {"cnn": cnn["run_id"], "seq2seq": s2s["run_id"]}


def _succeeded(service: Service, run_id: str) -> str:
    run = service.wait_finished(run_id, TRAIN_TIMEOUT)
    assert run["status"] == "succeeded", f"{run['status']}: {run['error']}\n{service.logs()}"
    return run_id


@pytest.fixture(scope="session")
def trained_cnn(service: Service, trained_runs: dict[str, str]) -> str:
    return _succeeded(service, trained_runs["cnn"])


@pytest.fixture(scope="session")
def trained_seq2seq(service: Service, trained_runs: dict[str, str]) -> str:
    return _succeeded(service, trained_runs["seq2seq"])


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Ui:
    """A page of the dashboard that records console errors and page errors."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def goto(self, route: str) -> None:
        """Open `#/route` and wait until the app has drawn its first page."""
        self.page.goto(f"{self.base_url}/#{route}")
        self.page.wait_for_function("() => !document.querySelector('main .loading')")

    def chart_data(self, selector: str) -> list[dict[str, Any]]:
        """Plotly's traces (`gd.data`) of the chart element `selector`."""
        return self.page.eval_on_selector(
            selector, "el => (el.data || []).map(t => ({type: t.type, name: t.name, "
                      "x: Array.from(t.x || []), y: Array.from(t.y || []), z: t.z || null}))")

    def assert_no_errors(self, allow: tuple[str, ...] = ()) -> None:
        """Fail on any console or page error, except those matching an `allow` pattern."""
        unexpected = [e for e in self.errors if not any(re.search(p, e) for p in allow)]
        assert not unexpected, "browser errors:\n" + "\n".join(unexpected)
        self.errors.clear()


@pytest.fixture
def ui(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Ui]:
    """A fresh page on the session's service (or on `keyed_api` when the test uses that); its screenshot
    is saved at the end, and stray browser errors fail the test."""
    target = "keyed_api" if "keyed_api" in request.fixturenames else "service"
    base_url = request.getfixturevalue(target).url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    view = Ui(page, base_url)
    try:
        yield view
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=True)
        finally:
            context.close()
    view.assert_no_errors()
