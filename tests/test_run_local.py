"""`make run`'s launcher: migrates, serves the API with one worker on the embedded default, stops both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.services
def test_run_local_serves_trains_and_stops_on_ctrl_c(tmp_path, shared_data):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INKWELL_")}
    env.update(PORT=str(port), INKWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'inkwell.db'}",
               INKWELL_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
               INKWELL_ARTIFACTS_DIR=str(tmp_path / "artifacts"), INKWELL_DATA_DIR=str(shared_data),
               INKWELL_TRAIN_QUEUE=f"local-{port}")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "scripts/run_local.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def output() -> str:
        return (tmp_path / "run.log").read_text(errors="replace")[-4000:]

    def ready() -> bool:
        assert proc.poll() is None, output()
        try:
            return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, "make run's API", 120, 0.3, output)
        created = client.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "limit": 200, "epochs": 1,
                                              "batch_size": 32})
        assert created.status_code == 202, created.text
        run_id = created.json()["run_id"]
        wait_for(lambda: client.get(f"/runs/{run_id}").json()["status"] == "succeeded", "the run", 180, 0.3, output)
        assert (tmp_path / "inkwell.db").is_file() and (tmp_path / "broker.db").is_file()

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert proc.wait(60) == 0, output()
        started = time.monotonic()
        while time.monotonic() - started < 10:
            try:
                client.get("/healthz", timeout=1)
            except httpx.HTTPError:
                break  # the API is gone too
            time.sleep(0.2)
        else:
            pytest.fail("the API still answers after make run stopped")
        assert "stopping" in output()
    finally:
        client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
