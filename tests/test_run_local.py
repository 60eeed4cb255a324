"""`make run`'s launcher: migrates, serves the API with one worker on the embedded default, stops both,
and leaves nothing running when it is killed itself (SIGKILL: no chance to stop them)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
GRACE = 3  # --grace: seconds the launcher (or its watchdog) waits after SIGTERM before SIGKILL


def launcher_env(tmp_path: Path, shared_data: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INKWELL_")}
    env.update(PORT=str(port), INKWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'inkwell.db'}",
               INKWELL_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
               INKWELL_ARTIFACTS_DIR=str(tmp_path / "artifacts"), INKWELL_DATA_DIR=str(shared_data),
               INKWELL_QUEUE_PREFIX=f"local-{port}-")
    return env


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, ...), None when there is no such pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def running(pid: int) -> bool:
    """`pid` exists and is not a zombie (an orphan's zombie waits for init, which is not us)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def children_of(parent: int) -> dict[int, str]:
    """pid -> command line of every live process whose parent is `parent`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[1] == str(parent):
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


@dataclass
class Launcher:
    """`python scripts/run_local.py` in a session of its own, with its output in a file."""

    proc: subprocess.Popen
    client: httpx.Client
    log_path: Path
    seen: dict[int, str] = field(default_factory=dict)  # its children, remembered while it lived

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.output()
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def api_answers(self) -> bool:
        try:
            self.client.get("/healthz", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def children(self) -> dict[str, int]:
        """{"api": pid, "worker": pid} of the running launcher, plus "watchdog" when it has one."""
        found = children_of(self.proc.pid)
        self.seen.update(found)
        named = {}
        for pid, cmdline in found.items():
            for name, marker in (("api", "-m api"), ("worker", "-m worker"), ("watchdog", "run_local.py")):
                if marker in cmdline:
                    named[name] = pid
        assert {"api", "worker"} <= set(named), found
        return named

    def kill_leftovers(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in self.seen:
            for kill in (os.killpg, os.kill):  # the api and worker lead process groups of their own
                if running(pid):
                    try:
                        kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


@pytest.fixture
def launch(tmp_path: Path, shared_data: Path) -> Iterator[Callable[..., Launcher]]:
    """Start the launcher (arguments passed on); afterwards kill whatever of it still runs."""
    started: list[tuple[Launcher, BinaryIO]] = []

    def start(*args: str) -> Launcher:
        port = free_port()
        log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "scripts/run_local.py", *args], cwd=ROOT,
                                env=launcher_env(tmp_path, shared_data, port), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        launcher = Launcher(proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30), tmp_path / "run.log")
        started.append((launcher, log))
        return launcher

    yield start
    for launcher, log in started:
        launcher.client.close()
        launcher.kill_leftovers()
        log.close()


def wait_until_gone(launcher: Launcher, pids: dict[str, int], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(running(pid) for pid in pids.values()):
        time.sleep(0.1)
    left = {name: pid for name, pid in pids.items() if running(pid)}
    assert not left, f"still running {seconds:g} s after the launcher died: {left}\n{launcher.output()}"
    assert not launcher.api_answers(), "the API still answers"


@pytest.mark.services
def test_run_local_serves_trains_and_stops_on_ctrl_c(launch, tmp_path):
    launcher = launch()
    client = launcher.client
    wait_for(launcher.ready, "make run's API", 120, 0.3, launcher.output)
    pids = launcher.children()
    created = client.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "limit": 200, "epochs": 1,
                                          "batch_size": 32})
    assert created.status_code == 202, created.text
    run_id = created.json()["run_id"]
    wait_for(lambda: client.get(f"/runs/{run_id}").json()["status"] == "succeeded", "the run", 180, 0.3,
             launcher.output)
    assert (tmp_path / "inkwell.db").is_file() and (tmp_path / "broker.db").is_file()

    os.killpg(launcher.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    assert launcher.proc.wait(60) == 0, launcher.output()
    # The launcher waited for the api and worker and reaped its watchdog before it returned.
    assert not any(running(pid) for pid in pids.values()), pids
    assert not launcher.api_answers(), "the API still answers after make run stopped"
    assert "stopping" in launcher.output()
    assert "the launcher is gone" not in launcher.output()  # the watchdog had nothing to do


@pytest.mark.services
def test_sigkilled_launcher_and_watchdog_leave_no_api_or_worker(launch):
    """Even with its watchdog killed too, the idle api and worker stop: the kernel sends them SIGTERM."""
    launcher = launch("--grace", str(GRACE))
    wait_for(launcher.ready, "make run's API", 120, 0.3, launcher.output)
    wait_for(lambda: "ready: queue" in launcher.output(), "make run's worker", 120, 0.3, launcher.output)
    pids = launcher.children()

    # The launcher alone (not its children's process groups), and the watchdog if there is one.
    for name in ("watchdog", "launcher"):
        if pid := {**pids, "launcher": launcher.proc.pid}.get(name):
            os.kill(pid, signal.SIGKILL)
    launcher.proc.wait(10)
    wait_until_gone(launcher, pids, 20)


@pytest.mark.services
def test_sigkilled_launcher_stops_a_training_worker(launch):
    """A worker told to stop (SIGTERM) finishes its training run first: the launcher's watchdog kills it
    after the grace period."""
    launcher = launch("--grace", str(GRACE))
    client = launcher.client
    wait_for(launcher.ready, "make run's API", 120, 0.3, launcher.output)
    pids = launcher.children()
    created = client.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "limit": 2000, "epochs": 200,
                                          "batch_size": 32})
    assert created.status_code == 202, created.text
    run_id = created.json()["run_id"]
    wait_for(lambda: client.get(f"/runs/{run_id}/metrics").json().get("epochs"), "the first epoch", 180, 0.3,
             launcher.output)

    os.kill(launcher.proc.pid, signal.SIGKILL)
    launcher.proc.wait(10)
    wait_until_gone(launcher, pids, GRACE + 15)
    assert "stopping api, worker" in launcher.output()  # the watchdog's doing, not only the kernel's SIGTERM
