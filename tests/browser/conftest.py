"""The dashboard in a real browser against the real service: `python -m api` and `python -m worker`.

One stack per session on the embedded default (a SQLite database and a SQLite-backed Celery broker in a
temporary folder, a unique train queue, the shared data), migrated with `alembic upgrade head`. Both
processes run in their own process groups and are killed at the end. Headless Chromium (Debian's
/usr/bin/chromium) is driven with Playwright; every test gets a fresh page that records console errors
and page errors, and leaves a screenshot under test-results/screenshots/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-results" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 90.0
TRAIN_TIMEOUT = 180.0  # two shared cores: be patient
API_KEY = "browser-test-key"



class Process:
    """A `python -m <module>` subprocess in its own process group, output in a log file."""

    def __init__(self, module: str, env: dict[str, str], log_path: Path) -> None:
        self.module = module
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, tail: int = 3000) -> str:
        return f"--- {self.module} log\n{self.log_path.read_text(errors='replace')[-tail:]}"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(f"{self.module} exited with {self.proc.returncode}\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        self._log.close()


@dataclass
class Service:
    """The running API (at `url`) and worker, and a plain HTTP client for the tests' own checks."""

    url: str
    http: httpx.Client
    processes: list[Process] = field(default_factory=list)

    def logs(self) -> str:
        return "\n".join(p.log() for p in self.processes)

    def train(self, **body: Any) -> dict[str, Any]:
        r = self.http.post("/train", json=body)
        assert r.status_code == 202, r.text
        return r.json()

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/runs/{run_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_finished(self, run_id: str, timeout: float = TRAIN_TIMEOUT) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            for p in self.processes:
                p.check_alive()
            run = self.run(run_id)
            return run if run["status"] in ("succeeded", "failed", "cancelled") else None

        return wait_for(finished, f"run {run_id} to finish", timeout, 0.25, self.logs)

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.http.close()


def _start(tmp: Path, shared_data: Path, modules: tuple[str, ...], **extra_env: str) -> Service:
    """Migrate a fresh SQLite database in `tmp`, start `python -m <module>` per module, wait until ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INKWELL_")}
    env.update(
        INKWELL_DATABASE_URL=f"sqlite:///{tmp / 'inkwell.db'}",
        INKWELL_BROKER_URL=f"sqla+sqlite:///{tmp / 'broker.db'}",
        INKWELL_ARTIFACTS_DIR=str(tmp / "artifacts"), INKWELL_DATA_DIR=str(shared_data),
        INKWELL_TRAIN_QUEUE=f"browser-{uuid.uuid4().hex[:12]}", PORT=str(port),
        PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **extra_env,
    )
    migrate = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    url = f"http://127.0.0.1:{port}"
    svc = Service(url=url, http=httpx.Client(base_url=url, timeout=30))
    try:
        for module in modules:
            svc.processes.append(Process(module, env, tmp / f"{module}.log"))

        def ready() -> bool:
            for proc in svc.processes:
                proc.check_alive()
            try:
                if svc.http.get("/readyz", timeout=2).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
            return all(" ready: queue " in p.log_path.read_text(errors="replace")
                       for p in svc.processes if p.module == "worker")

        wait_for(ready, f"{' and '.join(modules)} to be ready", START_TIMEOUT, 0.25, svc.logs)
    except BaseException:
        svc.stop()
        raise
    return svc


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Service]:
    """The API and one worker on the embedded default."""
    svc = _start(tmp_path_factory.mktemp("dashboard-stack"), shared_data, ("api", "worker"))
    yield svc
    svc.stop()


@pytest.fixture
def keyed_api(tmp_path: Path, shared_data: Path) -> Iterator[Service]:
    """Just the API (no worker: queued runs stay queued), with INKWELL_API_KEY set to API_KEY."""
    svc = _start(tmp_path, shared_data, ("api",), INKWELL_API_KEY=API_KEY)
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
    run = service.wait_finished(run_id)
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
