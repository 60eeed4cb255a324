"""GET /workers: the live workers of the registry (rows written here as a worker's heartbeat writes them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from core.models import utcnow
from core.workers import WorkerInfo, record_worker


def _beat(app, name: str, seen_ago: float, current_run: str | None = None, **info) -> None:
    values = {"name": name, "host": "gpu-box", "pid": 7, "queues": ("q-gpu",), "device": "cuda:0 (NVIDIA H100)",
              "started_at": utcnow() - timedelta(minutes=5), **info}
    with app.state.sessionmaker() as session:
        record_worker(session, WorkerInfo(**values), current_run, now=utcnow() - timedelta(seconds=seen_ago))


def test_workers_lists_live_workers_sorted_by_name(app, client, fake_worker) -> None:
    assert client.get("/workers").json() == {"workers": []}
    (run_id,) = fake_worker.create()
    beat = app.state.settings.heartbeat_seconds
    _beat(app, "inkwell-b-2@b", 0, queues=("q-cpu",), device="cpu", host="b", pid=2)
    _beat(app, "inkwell-a-1@a", beat, current_run=run_id, host="a", pid=1)
    _beat(app, "inkwell-dead-3@c", 3 * beat + 5)  # missed three heartbeats: not listed

    r = client.get("/workers")
    assert r.status_code == 200, r.text
    workers = r.json()["workers"]
    assert [w["name"] for w in workers] == ["inkwell-a-1@a", "inkwell-b-2@b"]
    a, b = workers
    assert {k: a[k] for k in ("host", "pid", "queues", "device", "current_run")} == {
        "host": "a", "pid": 1, "queues": ["q-gpu"], "device": "cuda:0 (NVIDIA H100)", "current_run": run_id}
    assert {k: b[k] for k in ("host", "pid", "queues", "device", "current_run")} == {
        "host": "b", "pid": 2, "queues": ["q-cpu"], "device": "cpu", "current_run": None}
    started, seen = datetime.fromisoformat(a["started_at"]), datetime.fromisoformat(a["last_seen_at"])
    assert started.tzinfo is not None and started < seen


def test_workers_needs_a_read_key(make_app) -> None:
    keys = {"read": "read-key-1", "infer": "infer-key-1", "train": "train-key-1"}
    app = make_app(api_keys=",".join(f"{scope}:{key}" for scope, key in keys.items()))
    _beat(app, "inkwell-a-1@a", 0)
    with TestClient(app) as client:
        assert client.get("/workers").status_code == 401
        assert client.get("/workers", headers={"X-API-Key": keys["infer"]}).status_code == 403
        assert client.get("/workers", headers={"X-API-Key": keys["train"]}).status_code == 403
        r = client.get("/workers", headers={"X-API-Key": keys["read"]})
        assert r.status_code == 200 and [w["name"] for w in r.json()["workers"]] == ["inkwell-a-1@a"]
