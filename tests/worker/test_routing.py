"""CPU/GPU routing and the worker registry with real processes: a cpu worker trains cpu and any runs, leaves
gpu runs in the gpu queue, skips the duplicate of an any run, and shows itself (and its run) in GET /workers."""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import torch

from core.settings import Settings
from tests.fixtures.services import StackService, service_env
from tests.support import ROOT, wait_for
from worker.__main__ import DeviceUnavailable, worker_device

pytestmark = pytest.mark.services
SMALL = {"model": "cnn", "dataset": "mnist-8k", "epochs": 1, "limit": 64, "batch_size": 32}
NO_CUDA = ("INKWELL_WORKER_DEVICE=gpu but no CUDA device is available (torch.cuda.is_available() is False); "
           "start it with INKWELL_WORKER_DEVICE=cpu or auto")


def _run_ids(client: redis.Redis, queue: str) -> list[tuple[str, bytes]]:
    """(run id, raw message) of each message waiting in Redis list `queue`."""
    return [(json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0], raw) for raw in client.lrange(queue, 0, -1)]


def test_a_cpu_worker_takes_cpu_and_any_runs_only_and_shows_in_the_registry(make_stack) -> None:
    stack = make_stack("postgres", heartbeat_seconds=1)
    prefix = stack.settings.queue_prefix
    svc = StackService(stack)
    broker = redis.Redis.from_url(stack.settings.broker_url)
    try:
        worker = stack.start_worker(INKWELL_WORKER_DEVICE="cpu")
        svc.api.wait_ready()
        worker.wait_ready()

        def workers() -> list[dict]:
            response = svc.http.get("/workers")
            assert response.status_code == 200, response.text
            return response.json()["workers"]

        (me,) = wait_for(workers, "the worker in GET /workers", 10, 0.1, stack.logs)
        assert {k: me[k] for k in ("name", "host", "pid", "queues", "device", "current_run")} == {
            "name": worker.name, "host": socket.gethostname(), "pid": worker.proc.pid, "queues": [f"{prefix}cpu"],
            "device": "cpu", "current_run": None}

        gpu_run = svc.train(SMALL, device="gpu")["run_id"]
        posted = time.monotonic()
        cpu_run = svc.train(SMALL, device="cpu", epochs=3, limit=256, batch_size=16)["run_id"]
        wait_for(lambda: [w["current_run"] for w in workers()] == [cpu_run], "the run in the worker's registry row",
                 60, 0.05, stack.logs)
        done = svc.wait_finished(cpu_run)
        assert done["status"] == "succeeded", (done["error"], stack.logs())
        assert (done["worker"], done["host"], done["device"], done["device_request"]) == (
            worker.name, socket.gethostname(), "cpu", "cpu")

        # Nobody serves the gpu queue: the gpu run stays queued, its message waiting there.
        time.sleep(max(0.0, 3.0 - (time.monotonic() - posted)))
        queued = svc.run(gpu_run)
        assert (queued["status"], queued["attempt"], queued["host"], queued["device"]) == ("queued", 0, None, None)
        assert [run_id for run_id, _ in _run_ids(broker, f"{prefix}gpu")] == [gpu_run]
        assert (stack.waiting("gpu"), stack.waiting("cpu")) == (1, 0)

        # An any run goes to both queues: the cpu worker trains it, its gpu message waits for a gpu worker ...
        any_run = svc.train(SMALL)["run_id"]
        done = svc.wait_finished(any_run)
        assert (done["status"], done["attempt"], done["worker"], done["device_request"]) == (
            "succeeded", 1, worker.name, "any")
        (duplicate,) = [raw for run_id, raw in _run_ids(broker, f"{prefix}gpu") if run_id == any_run]
        # ... and whoever gets that duplicate acknowledges it and skips the run (here: moved to the cpu queue)
        tag = json.loads(duplicate)["properties"]["delivery_tag"]
        assert broker.lrem(f"{prefix}gpu", 1, duplicate) == 1
        broker.lpush(f"{prefix}cpu", duplicate)
        wait_for(lambda: f"run {any_run} not claimed" in worker.log(), "the duplicate to be skipped", 30, 0.1,
                 stack.logs)
        wait_for(lambda: not broker.hexists("unacked", tag) and stack.waiting("cpu") == 0,
                 "the duplicate to be acknowledged", 10, 0.1, stack.logs)
        again = svc.run(any_run)
        assert (again["status"], again["attempt"], again["finished_at"]) == ("succeeded", 1, done["finished_at"])
        assert svc.run(gpu_run)["status"] == "queued" and stack.waiting("gpu") == 1

        wait_for(lambda: [w["current_run"] for w in workers()] == [None], "the worker to be idle", 10, 0.1)
        worker.kill(signal.SIGTERM, timeout=30)  # a clean stop takes the worker out of the registry
        assert worker.proc.returncode is not None
        assert workers() == []
    finally:
        broker.close()
        svc.stop()


def test_a_gpu_worker_without_cuda_exits_2_before_connecting_to_anything(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    env = service_env(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none", broker_url="redis://127.0.0.1:1/0",
                      artifacts_dir=tmp_path / "artifacts", data_dir=tmp_path, queue_prefix="x-", worker_device="gpu")
    out = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (2, "", NO_CUDA + "\n")
    assert not (tmp_path / "artifacts").exists()  # nothing was set up either


def test_ping_counts_the_queue_of_the_worker_or_both(redis_db: str, tmp_path: Path) -> None:
    env = service_env(database_url=f"sqlite:///{tmp_path / 'db'}", broker_url=redis_db, artifacts_dir=tmp_path,
                      data_dir=tmp_path, queue_prefix=f"ping-{time.time_ns()}-")
    prefix = env["INKWELL_QUEUE_PREFIX"]
    try:
        for device, expected in (("auto", f"queue '{prefix}gpu': 0 waiting, queue '{prefix}cpu': 0 waiting"),
                                 ("cpu", f"queue '{prefix}cpu': 0 waiting")):
            out = subprocess.run([sys.executable, "-m", "worker", "--ping"], cwd=ROOT, capture_output=True, text=True,
                                 env={**env, "INKWELL_WORKER_DEVICE": device}, timeout=60)
            assert out.returncode == 0, out.stderr
            assert out.stdout == f"broker reachable: {redis_db} ({expected})\n"
    finally:
        client = redis.Redis.from_url(redis_db)
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_the_worker_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INKWELL_DEVICE", raising=False)
    for cuda, auto in ((False, "cpu"), (True, "gpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        assert worker_device(Settings(worker_device="auto")) == auto
        assert worker_device(Settings(worker_device="cpu")) == "cpu"
    assert worker_device(Settings(worker_device="gpu")) == "gpu"  # CUDA available (the last loop's)
    monkeypatch.setenv("INKWELL_DEVICE", "cpu")  # training pinned to the CPU: not a gpu worker
    assert worker_device(Settings(worker_device="auto")) == "cpu"
    with pytest.raises(DeviceUnavailable, match="INKWELL_DEVICE=cpu"):
        worker_device(Settings(worker_device="gpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("INKWELL_DEVICE")
    with pytest.raises(DeviceUnavailable) as failed:
        worker_device(Settings(worker_device="gpu"))
    assert str(failed.value) == NO_CUDA
