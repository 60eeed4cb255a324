"""The whole service as users run it: `python -m api` + `python -m worker` processes on real backends.

Two backends: PostgreSQL + Redis (what docker compose runs) and the embedded default (a SQLite
database and a SQLite-backed Celery broker, what `make run` runs). Each test gets its own database,
queue and artifacts folder; every process is killed at teardown, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port, wait_for
from tests.worker.conftest import (  # noqa: F401 - fixtures re-exported for this folder
    ROOT,
    Stack,
    make_stack,
    pg_database,
    redis_db,
)

pytestmark = pytest.mark.services



class ApiProcess:
    """`python -m api` on a free port, in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env={**env, "PORT": str(self.port)},
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"api exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                return self.client.get("/readyz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, "the API to be ready", 60, 0.2, lambda: self.log()[-4000:])

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


class Service:
    """An API process and worker processes sharing one Stack (database, broker, queue, artifacts)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.api = ApiProcess(stack.env, stack.tmp / "api.log")
        self.http = self.api.client

    def logs(self) -> str:
        return f"--- api.log\n{self.api.log()[-3000:]}\n{self.stack.logs()}"

    def train(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = self.http.post("/train", json=body, headers=headers or {})
        assert response.status_code == 202, response.text
        return response.json()

    def metrics(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/runs/{run_id}/metrics")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_finished(self, run_id: str, timeout: float = 180) -> dict[str, Any]:
        return wait_for(lambda: (m := self.metrics(run_id))["status"] in ("succeeded", "failed", "cancelled") and m,
                        f"run {run_id} to finish", timeout, 0.25, self.logs)

    def watch(self, run_id: str, timeout: float = 180) -> list[tuple[str, int]]:
        """Poll the metrics until the run finishes; the (status, epochs seen) states observed, in order."""
        seen: list[tuple[str, int]] = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics(run_id)
            state = (m["status"], len(m["epochs"]))
            if not seen or seen[-1] != state:
                seen.append(state)
            if m["status"] in ("succeeded", "failed", "cancelled"):
                return seen
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} did not finish; states {seen}\n{self.logs()}")
            time.sleep(0.05)

    def close(self) -> None:
        self.api.stop()


@pytest.fixture(params=["postgres", "sqlite"])
def service(request: pytest.FixtureRequest, make_stack: Callable[..., Stack]) -> Iterator[Service]:  # noqa: F811
    """A running API plus one worker on `request.param`'s backend."""
    stack = make_stack(request.param, lease_seconds=4, heartbeat_seconds=1)
    svc = Service(stack)
    try:
        svc.api.wait_ready()
        stack.start_worker().wait_ready()
        yield svc
    finally:
        svc.close()
