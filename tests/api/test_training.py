"""POST /train and GET /datasets: validation, queuing (seen in Redis), sweeps, idempotency, auth, 503."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import runs
from ml.config import TrainConfig
from ml.kinds import get_kind
from tests.api.conftest import CLOSED_BROKER


def queued_messages(redis_client: redis.Redis, queue: str) -> list[dict]:
    """The Celery messages waiting in `queue`: task name, id and decoded args."""
    out = []
    for raw in redis_client.lrange(queue, 0, -1):
        msg = json.loads(raw)
        body = json.loads(base64.b64decode(msg["body"]))
        out.append({"task": msg["headers"]["task"], "id": msg["headers"]["id"], "args": body[0]})
    return out


def test_train_cnn_queues_one_run_with_assignment_defaults(client, redis_client, queue_name, fake_worker):
    r = client.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "epochs": 2, "limit": 64})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["run_ids"] == [body["run_id"]] and body["sweep_id"] is None
    run = fake_worker.run(body["run_id"])
    assert (run.status, run.model, run.dataset, run.epochs_total) == ("queued", "cnn", "mnist-8k", 2)
    expected = TrainConfig.for_model("cnn", "mnist-8k", epochs=2, limit=64).to_dict()
    assert run.config == expected
    assert run.config["learning_rate"] == get_kind("cnn").defaults["learning_rate"]
    assert run.config["batch_size"] == get_kind("cnn").defaults["batch_size"]
    messages = queued_messages(redis_client, queue_name)
    assert [(m["task"], m["args"]) for m in messages] == [("inkwell.train_run", [run.id])]
    assert run.task_id == messages[0]["id"]


def test_train_defaults_the_dataset_per_model(client, fake_worker, queue_len):
    r = client.post("/train", json={"model": "seq2seq", "attention": True, "hidden_size": 32})
    assert r.status_code == 202, r.text
    run = fake_worker.run(r.json()["run_id"])
    assert run.dataset == "spa-eng" and run.config["data"] == "spa-eng"
    assert run.config["attention"] is True and run.config["hidden_size"] == 32
    assert run.config["learning_rate"] == get_kind("seq2seq").defaults["learning_rate"]
    assert run.epochs_total == get_kind("seq2seq").defaults["epochs"]
    r = client.post("/train", json={"model": "cnn"})
    assert r.status_code == 202, r.text
    assert fake_worker.run(r.json()["run_id"]).dataset == "kmnist"
    assert queue_len() == 2


def test_sweep_creates_one_run_per_rate_and_queues_them_all(client, fake_worker, queue_len, redis_client,
                                                             queue_name):
    rates = [0.01, 0.0005, 0.00001]
    payload = {"model": "cnn", "dataset": "mnist-8k", "learning_rates": rates, "epochs": 1}
    r = client.post("/train", json=payload)
    assert r.status_code == 202, r.text
    body = r.json()
    assert len(body["run_ids"]) == 3 and body["run_id"] == body["run_ids"][0]
    assert body["sweep_id"] is not None and len(body["sweep_id"]) == 32
    made = [fake_worker.run(i) for i in body["run_ids"]]
    assert [m.config["learning_rate"] for m in made] == rates
    assert {m.sweep_id for m in made} == {body["sweep_id"]}
    assert queue_len() == 3
    assert sorted(m["args"][0] for m in queued_messages(redis_client, queue_name)) == sorted(body["run_ids"])
    listed = client.get("/runs", params={"sweep_id": body["sweep_id"]}).json()["runs"]
    assert sorted(x["id"] for x in listed) == sorted(body["run_ids"])


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"model": "cnn", "learning_rate": 0}, "learning_rate"),
        ({"model": "cnn", "learning_rate": -0.1}, "learning_rate"),
        ({"model": "cnn", "learning_rate": 11}, "learning_rate"),
        ({"model": "cnn", "epochs": 0}, "epochs"),
        ({"model": "cnn", "epochs": 501}, "epochs"),
        ({"model": "cnn", "batch_size": 0}, "batch_size"),
        ({"model": "cnn", "dropout": 1.0}, "dropout"),
        ({"model": "cnn", "l2_decay": -1}, "l2_decay"),
        ({"model": "cnn", "limit": 0}, "limit"),
        ({"model": "seq2seq", "hidden_size": 4}, "hidden_size"),
        ({"model": "cnn", "optimizer": "rmsprop"}, "optimizer"),
        ({"model": "transformer"}, "model"),
        ({"dataset": "kmnist"}, "model"),
        ({"model": "cnn", "dataset": "nope"}, "unknown dataset"),
        ({"model": "cnn", "dataset": "../etc"}, "unknown dataset"),
        ({"model": "cnn", "dataset": "/work/shared/data/mnist-8k"}, "unknown dataset"),
        ({"model": "cnn", "dataset": "spa-eng"}, "seq2seq"),
        ({"model": "seq2seq", "dataset": "mnist-8k"}, "cnn"),
        ({"model": "seq2seq", "dataset": "kmnist"}, "cnn"),
        ({"model": "cnn", "learnin_rate": 0.1}, "learnin_rate"),
        ({"model": "cnn", "learning_rate": 0.1, "learning_rates": [0.1, 0.2]}, "not both"),
        ({"model": "cnn", "learning_rates": []}, "learning_rates"),
        ({"model": "cnn", "learning_rates": [0.1, 0]}, "learning_rate"),
        ({"model": "cnn", "learning_rates": [0.1] * 11}, "learning_rates"),
        ({"model": "cnn", "device": "tpu"}, "device"),
        ({"model": "cnn", "device": None}, "device"),
    ],
)
def test_invalid_training_requests_are_422_and_queue_nothing(client, queue_len, payload, needle):
    r = client.post("/train", json=payload)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert queue_len() == 0 and queue_len("cpu") == 0
    assert client.get("/runs").json()["runs"] == []


def test_unknown_dataset_lists_the_datasets_that_exist(client):
    detail = client.post("/train", json={"model": "cnn", "dataset": "nope"}).json()["detail"]
    for name in ("kmnist", "mnist", "fashion-mnist", "mnist-8k", "spa-eng"):
        assert name in detail


def test_non_json_and_non_finite_bodies_are_422(client):
    json_type = {"content-type": "application/json"}
    assert client.post("/train", content=b"not json", headers=json_type).status_code == 422
    r = client.post("/train", content=b'{"model": "cnn", "learning_rate": NaN}', headers=json_type)
    assert r.status_code == 422


def test_idempotency_key_returns_the_same_runs_and_queues_nothing_new(client, queue_len):
    payload = {"model": "cnn", "dataset": "mnist-8k", "learning_rates": [0.1, 0.01], "epochs": 1}
    first = client.post("/train", json=payload, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == 202 and queue_len() == 2
    again = client.post("/train", json=payload, headers={"Idempotency-Key": "abc-1"})
    assert again.status_code == 202
    assert again.json() == first.json()
    assert queue_len() == 2
    other = client.post("/train", json=payload, headers={"Idempotency-Key": "abc-2"})
    assert other.status_code == 202 and set(other.json()["run_ids"]).isdisjoint(first.json()["run_ids"])
    assert queue_len() == 4
    changed = client.post("/train", json={**payload, "epochs": 2}, headers={"Idempotency-Key": "abc-1"})
    assert changed.status_code == 422 and "Idempotency-Key" in changed.json()["detail"]
    assert queue_len() == 4


def test_the_device_picks_the_queues_and_is_stored_on_the_runs(client, redis_client, queue_prefix, queue_len):
    def train(**fields) -> list[dict]:
        r = client.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "epochs": 1, **fields})
        assert r.status_code == 202, r.text
        return [client.get(f"/runs/{run_id}").json() for run_id in r.json()["run_ids"]]

    (gpu,) = train(device="gpu")
    assert (queue_len("gpu"), queue_len("cpu")) == (1, 0)
    (cpu,) = train(device="cpu")
    assert (queue_len("gpu"), queue_len("cpu")) == (1, 1)
    (anywhere,) = train()  # the default: both queues, the first worker to claim it trains it
    assert (queue_len("gpu"), queue_len("cpu")) == (2, 2)
    assert [r["device_request"] for r in (gpu, cpu, anywhere)] == ["gpu", "cpu", "any"]
    assert all(r["host"] is None and r["device"] is None for r in (gpu, cpu, anywhere))  # not claimed yet
    in_gpu = queued_messages(redis_client, f"{queue_prefix}gpu")
    in_cpu = queued_messages(redis_client, f"{queue_prefix}cpu")
    assert sorted(m["args"][0] for m in in_gpu) == sorted([gpu["id"], anywhere["id"]])
    assert sorted(m["args"][0] for m in in_cpu) == sorted([cpu["id"], anywhere["id"]])
    # the two messages of the "any" run are one send: one task id, recorded on the run
    sent_twice = {m["id"] for m in in_gpu + in_cpu if m["args"] == [anywhere["id"]]}
    assert len(sent_twice) == 1 and sent_twice == {stored_task_id(client, anywhere["id"])}
    (sweep_a, sweep_b) = train(device="cpu", learning_rates=[0.1, 0.2])
    assert (sweep_a["device_request"], sweep_b["device_request"]) == ("cpu", "cpu")
    assert (queue_len("gpu"), queue_len("cpu")) == (2, 4)


def stored_task_id(client: TestClient, run_id: str) -> str:
    with client.app.state.sessionmaker() as session:
        return runs.get_run(session, run_id).task_id


def test_an_idempotent_retry_must_ask_for_the_same_device(client, queue_len):
    payload = {"model": "cnn", "dataset": "mnist-8k", "epochs": 1, "device": "cpu"}
    first = client.post("/train", json=payload, headers={"Idempotency-Key": "dev-1"})
    assert first.status_code == 202
    again = client.post("/train", json=payload, headers={"Idempotency-Key": "dev-1"})
    assert again.status_code == 202 and again.json() == first.json()
    other = client.post("/train", json={**payload, "device": "gpu"}, headers={"Idempotency-Key": "dev-1"})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert (queue_len("gpu"), queue_len("cpu")) == (0, 1)


WAITING_ADVISORY_LOCKS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def test_concurrent_retries_with_one_key_make_one_set_of_runs(app, db_backend, queue_len, monkeypatch):
    """Two requests with one key start together (a barrier). The one that gets the key's lock looks the
    key up (nothing yet), then holds on until the other request is blocked on that lock: on PostgreSQL
    its advisory lock is seen waiting in pg_locks; on SQLite it has asked for the write lock and has not
    got it 0.5 s later. Without the lock both would find nothing and both would insert."""
    lock_key, lookup = runs._lock_key, runs.find_by_idempotency_key  # what create_or_find_runs calls
    counts = {"asked": 0, "locked": 0, "looked_up": 0}
    changed = threading.Condition()
    problems: list[str] = []

    def count(name: str) -> int:
        with changed:
            counts[name] += 1
            changed.notify_all()
            return counts[name]

    def counted_lock_key(session, key):
        count("asked")
        lock_key(session, key)
        count("locked")

    def second_request_blocked() -> bool:
        if db_backend == "postgresql":
            with app.state.engine.connect() as conn:
                return conn.execute(WAITING_ADVISORY_LOCKS).scalar_one() > 0
        with changed:  # SQLite: the only thing to see is that it does not get through
            return not changed.wait_for(lambda: counts["locked"] == 2, timeout=0.5)

    def held_lookup(session, key):
        found = lookup(session, key)
        if count("looked_up") == 1:  # the lock holder: wait for the other request before inserting
            with changed:
                if not changed.wait_for(lambda: counts["asked"] == 2, timeout=30):
                    problems.append("the second request never asked for the lock")
            deadline = time.monotonic() + 30
            while not second_request_blocked():
                if counts["locked"] == 2 or time.monotonic() > deadline:
                    problems.append(f"the second request was not blocked by the key's lock ({counts})")
                    break
                time.sleep(0.01)
        return found

    monkeypatch.setattr(runs, "_lock_key", counted_lock_key)
    monkeypatch.setattr(runs, "find_by_idempotency_key", held_lookup)
    payload = {"model": "cnn", "dataset": "mnist-8k", "epochs": 1}
    results: list = []
    barrier = threading.Barrier(2)

    def post() -> None:
        with TestClient(app) as c:
            barrier.wait(timeout=30)
            results.append(c.post("/train", json=payload, headers={"Idempotency-Key": "race"}))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert problems == []
    assert counts == {"asked": 2, "locked": 2, "looked_up": 2}
    assert [r.status_code for r in results] == [202, 202]
    assert results[0].json() == results[1].json()
    with app.state.sessionmaker() as session:
        assert len(runs.find_by_idempotency_key(session, "race")) == 1
    assert queue_len() == 1


def test_broker_down_fails_the_runs_and_answers_503(make_app, queue_len):
    app = make_app(broker_url=CLOSED_BROKER)
    with TestClient(app) as c:
        r = c.post("/train", json={"model": "cnn", "dataset": "mnist-8k", "learning_rates": [0.1, 0.2]},
                   headers={"Idempotency-Key": "k"})
        assert r.status_code == 503
        assert "could not queue" in r.json()["detail"]
        listed = c.get("/runs").json()["runs"]
    assert len(listed) == 2
    for run in listed:
        assert run["status"] == "failed" and run["error"].startswith("could not queue: ")
        assert run["finished_at"] is not None
    with app.state.sessionmaker() as session:  # a retry with the same key must try again
        assert runs.find_by_idempotency_key(session, "k") == []
    assert queue_len() == 0


def test_posts_need_the_api_key_when_one_is_set(make_app, queue_len):
    app = make_app(api_key="s3cret")
    payload = {"model": "cnn", "dataset": "mnist-8k", "epochs": 1}
    with TestClient(app) as c:
        assert c.post("/train", json=payload).status_code == 401
        assert c.post("/train", json=payload, headers={"X-API-Key": "wrong"}).status_code == 401
        assert "API key" in c.post("/train", json=payload).json()["detail"]
        assert c.post("/train", json={"model": "gan"}).status_code == 401  # auth before validation
        assert queue_len() == 0
        ok = c.post("/train", json=payload, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 202
        assert c.post("/train", json=payload, headers={"Authorization": "Bearer s3cret"}).status_code == 202
        run_id = ok.json()["run_id"]
        assert c.post(f"/runs/{run_id}/cancel").status_code == 401
        assert c.post("/models/cnn/promote", json={"run_id": run_id}).status_code == 401
        assert c.get("/runs").status_code == 401 and c.get(f"/runs/{run_id}").status_code == 401  # reads too
        key = {"X-API-Key": "s3cret"}
        assert c.get("/runs", headers=key).status_code == 200
        assert c.get(f"/runs/{run_id}", headers=key).status_code == 200
        assert c.post(f"/runs/{run_id}/cancel", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert queue_len() == 2


def test_without_a_configured_key_posts_are_open(client):
    r = client.post("/train", json={"model": "cnn", "epochs": 1}, headers={"X-API-Key": "anything"})
    assert r.status_code == 202


def test_datasets_lists_builtins_and_recognised_folders(client, shared_data):
    found = {d["name"]: d for d in client.get("/datasets").json()["datasets"]}
    assert found["mnist-8k"] == {"name": "mnist-8k", "kind": "images", "model": "cnn", "models": ["cnn"],
                                 "builtin": False, "available": True, "source": "folder"}
    assert found["spa-eng"]["kind"] == "pairs" and found["spa-eng"]["model"] == "seq2seq"
    assert found["spa-eng"]["builtin"] and found["spa-eng"]["available"]  # downloadable, and here already
    for name in ("kmnist", "mnist", "fashion-mnist"):
        assert found[name]["builtin"] and found[name]["kind"] == "images" and found[name]["source"] == "builtin"
    folders = {p.name for p in shared_data.iterdir() if p.is_dir()}
    assert set(found) - {"kmnist", "mnist", "fashion-mnist", "spa-eng"} <= folders


def test_datasets_availability_follows_the_files_in_data_dir(make_app, tmp_path):
    data = tmp_path / "data"
    raw = data / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / f"{stem}.gz").write_bytes(b"")
    (data / "notes").mkdir()
    (data / "notes" / "readme.txt").write_text("not a dataset")
    (data / "phrases").mkdir()
    (data / "phrases" / "train-x.txt").write_text("a\tb\n")
    (data / "phrases" / "val-x.txt").write_text("a\tb\n")
    with TestClient(make_app(data_dir=data)) as c:
        found = {d["name"]: d for d in c.get("/datasets").json()["datasets"]}
        assert not found["mnist"]["available"]  # one of the four files is missing
        (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")
        found = {d["name"]: d for d in c.get("/datasets").json()["datasets"]}
        assert found["mnist"]["available"] and not found["kmnist"]["available"]
        assert "notes" not in found and "MNIST" not in found
        assert found["phrases"]["model"] == "seq2seq"
        assert c.post("/train", json={"model": "seq2seq", "dataset": "phrases"}).status_code == 202
