"""Losing the object store mid-run (a private SeaweedFS server, stopped and started again by the test).

While the store is down the worker retries its writes (the run finishes once the store is back, with every
epoch), or fails the run with a clear error after INKWELL_STORE_RETRY_SECONDS; the API answers 503, never 500.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests.fixtures.seaweedfs import SeaweedFS
from tests.fixtures.services import Stack, StackService
from tests.support import wait_for

pytestmark = pytest.mark.services


@pytest.fixture
def weed(tmp_path: Path) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path / "weed")
    server.folder.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _on_store(stack: Stack, weed: SeaweedFS, retry_seconds: float) -> None:
    stack.env.update(weed.env(), INKWELL_ARTIFACTS_URL=f"s3://outage-{uuid.uuid4().hex[:8]}/art",
                     INKWELL_S3_ENDPOINT_URL=weed.endpoint_url, INKWELL_STORE_RETRY_SECONDS=str(retry_seconds))


def _wait_epochs(svc: StackService, run_id: str, n: int) -> None:
    wait_for(lambda: len(svc.metrics(run_id)["epochs"]) >= n, f"run {run_id} to record {n} epoch(s)", 180, 0.1,
             svc.logs)


def test_a_store_outage_is_waited_out_and_the_api_answers_503(make_stack: Callable[..., Stack],
                                                              weed: SeaweedFS) -> None:
    stack = make_stack("postgres", lease_seconds=20, heartbeat_seconds=2)
    _on_store(stack, weed, retry_seconds=90)
    svc = StackService(stack)
    try:
        svc.api.wait_ready()
        worker = stack.start_worker()
        worker.wait_ready()
        first = svc.train(model="cnn", dataset="mnist-8k", epochs=1, limit=300, batch_size=32)["run_id"]
        assert svc.wait_finished(first)["status"] == "succeeded"
        run_id = svc.train(model="cnn", dataset="mnist-8k", epochs=5, limit=600, batch_size=16)["run_id"]
        _wait_epochs(svc, run_id, 1)

        weed.stop()
        http = svc.http
        checks = {
            "checkpoint": http.get(f"/runs/{first}/checkpoint"),
            "artifact": http.get(f"/runs/{first}/artifacts/loss.png"),
            "predict": http.post("/predict", json={"pixels": [[0] * 28] * 13 + [[255] * 28] * 2 + [[0] * 28] * 13,
                                                   "run_id": first}),
            "upload": http.post("/datasets", data={"name": "while-down"},
                                files=[("file", ("train-a.txt", b"hi .\thola .\n")),
                                       ("file", ("val-a.txt", b"go .\tve .\n"))]),
        }
        for what, response in checks.items():
            assert response.status_code == 503, (what, response.status_code, response.text)
            assert "artifact store" in response.json()["detail"] and response.headers["retry-after"]
        assert http.get(f"/runs/{run_id}/metrics").status_code == 200  # SQL reads do not need the store
        wait_for(lambda: "artifact store unreachable" in worker.log(), "the worker to retry a write", 60, 0.2,
                 svc.logs)
        weed.start()

        done = svc.wait_finished(run_id, timeout=240)
        assert done["status"] == "succeeded", svc.logs()
        assert [e["epoch"] for e in svc.metrics(run_id)["epochs"]] == [1, 2, 3, 4, 5]
        saved = torch.load(io.BytesIO(http.get(f"/runs/{run_id}/checkpoint").content), weights_only=False)
        assert saved["epoch"] == 5 and "test" in saved
        assert http.get(f"/runs/{first}/checkpoint").status_code == 200  # the API recovers on its own
    finally:
        svc.stop()


def test_a_store_that_stays_down_fails_the_run_with_a_clear_error(make_stack: Callable[..., Stack],
                                                                  weed: SeaweedFS) -> None:
    stack = make_stack("postgres", lease_seconds=20, heartbeat_seconds=2)
    _on_store(stack, weed, retry_seconds=6)
    svc = StackService(stack)
    try:
        svc.api.wait_ready()
        stack.start_worker().wait_ready()
        run_id = svc.train(model="cnn", dataset="mnist-8k", epochs=6, limit=600, batch_size=16)["run_id"]
        _wait_epochs(svc, run_id, 1)
        weed.stop()
        failed = svc.wait_finished(run_id, timeout=120)
        assert failed["status"] == "failed", svc.logs()
        assert failed["error"].startswith("StoreUnavailable: cannot write 'runs/")
        assert "gave up after 6 s of retries" in failed["error"]
        assert svc.http.get(f"/runs/{run_id}/checkpoint").status_code == 503
    finally:
        svc.stop()
