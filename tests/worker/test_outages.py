"""Real outages: the broker (Redis) and the database (PostgreSQL) stopped and restarted mid-run, and the
API restarted while a client follows a run's events. Private servers only (tests/fixtures/servers.py)."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.api.test_events import sse_events
from tests.fixtures.services import ApiProcess, Stack, StackService
from tests.support import wait_for

pytestmark = pytest.mark.services
SLOW = {"limit": 2000, "batch_size": 8}  # about 1-2 s per epoch on one CPU thread


def _service(stack: Stack) -> StackService:
    service = StackService(stack)
    service.api.wait_ready()
    return service


def _wait_epoch(stack: Stack, run_id: str, epoch: int) -> None:
    wait_for(lambda: len(stack.epochs(run_id)) >= epoch, f"epoch {epoch} of run {run_id}",
             on_timeout=stack.logs)


def test_redis_down_and_back_mid_run(make_stack, private_redis) -> None:
    stack = make_stack("postgres", broker_url=private_redis.url)
    service = _service(stack)
    try:
        stack.start_worker().wait_ready()
        run_id = service.train(model="cnn", dataset="mnist-8k", epochs=3, **SLOW)["run_id"]
        _wait_epoch(stack, run_id, 1)

        private_redis.stop()
        ready = service.http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["broker"].startswith("error")
        refused = service.http.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "epochs": 1})
        assert refused.status_code == 503, refused.text
        assert "broker is unreachable" in refused.json()["detail"]
        assert service.http.get(f"/runs/{run_id}").status_code == 200  # reads need no broker

        private_redis.start()
        wait_for(lambda: service.http.get("/readyz").status_code == 200, "the API to be ready again", 30)
        run = stack.wait_status(run_id)
        assert run.status == "succeeded", (run.error, stack.logs())
        assert [r.epoch for r in stack.epochs(run_id)] == [1, 2, 3]
    finally:
        service.api.stop()


def test_postgres_restarted_mid_run(make_stack, private_postgres) -> None:
    stack = make_stack("postgres", database_url=private_postgres.url, lease_seconds=30, heartbeat_seconds=2)
    service = _service(stack)
    try:
        worker = stack.start_worker()
        worker.wait_ready()
        run_id = service.train(model="cnn", dataset="mnist-8k", epochs=4, **SLOW)["run_id"]
        _wait_epoch(stack, run_id, 1)

        private_postgres.stop()
        outage = time.monotonic()
        statuses = set()
        while time.monotonic() - outage < 4:  # the API during the outage: 503 JSON, never a 500
            for path in (f"/runs/{run_id}", f"/runs/{run_id}/metrics", "/runs", "/models"):
                response = service.http.get(path)
                statuses.add(response.status_code)
                assert response.status_code in (503,), (path, response.status_code, response.text)
                assert "database" in response.json()["detail"]
            time.sleep(0.3)
        assert service.http.get("/readyz").status_code == 503
        private_postgres.start()

        run = stack.wait_status(run_id)
        assert run.status == "succeeded", (run.error, stack.logs())
        assert [r.epoch for r in stack.epochs(run_id)] == [1, 2, 3, 4]  # no finished epoch lost
        assert statuses == {503}
        assert service.http.get(f"/runs/{run_id}").json()["status"] == "succeeded"
        assert "database unreachable" in worker.log()  # it saw the outage and waited for the database
        assert f"run {run_id} failed" not in worker.log()
    finally:
        service.api.stop()


def test_a_client_following_events_across_an_api_restart_sees_every_epoch_once(make_stack) -> None:
    stack = make_stack("sqlite")
    first = _service(stack)
    second = None
    try:
        stack.start_worker().wait_ready()
        run_id = first.train(model="cnn", dataset="mnist-8k", epochs=4, **SLOW)["run_id"]
        seen: list[dict] = []
        last_id = None
        with httpx.Client(base_url=first.url, timeout=60) as client:
            with client.stream("GET", f"/runs/{run_id}/events") as stream:
                for event in sse_events(stream.iter_lines()):
                    if "event" not in event:
                        continue
                    seen.append(event)
                    last_id = event["id"]
                    if event["event"] == "epoch" and event["data"]["epoch"] == 2:
                        break
        first.api.proc.send_signal(signal.SIGKILL)  # the API dies; the run goes on in the worker
        first.api.proc.wait(30)
        second = ApiProcess(stack.env, stack.tmp / "api-2.log")
        second.wait_ready()
        with second.client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last_id}) as stream:
            seen.extend(e for e in sse_events(stream.iter_lines()) if "event" in e)
        epochs = [e["data"]["epoch"] for e in seen if e["event"] == "epoch"]
        assert epochs == [1, 2, 3, 4], epochs
        assert seen[-1]["event"] == "status" and seen[-1]["data"]["status"] == "succeeded"
        again = second.client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert again.status_code == 204  # the end was delivered: EventSource stops reconnecting
    finally:
        first.api.stop()
        if second is not None:
            second.stop()
