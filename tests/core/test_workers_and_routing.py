"""CPU/GPU routing (queues per device request, a run's device and host) and the worker registry, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core import runs as repo
from core.models import utcnow
from core.queue import queue_name, queues_for, training_queues
from core.settings import Settings
from core.workers import WorkerInfo, forget_stale_workers, live_workers, record_worker, remove_worker

CONFIG = {"epochs": 3, "learning_rate": 0.001}


def test_queues_for_each_device_request() -> None:
    s = Settings(queue_prefix="team-a-")
    assert queues_for("gpu", s) == ["team-a-gpu"]
    assert queues_for("cpu", s) == ["team-a-cpu"]
    assert queues_for("any", s) == training_queues(s) == ["team-a-gpu", "team-a-cpu"]
    assert queues_for("any", Settings()) == ["gpu", "cpu"]  # no prefix: the queues are gpu and cpu
    assert queue_name("cpu", s) == "team-a-cpu"
    for bad in ("tpu", "", "GPU"):
        with pytest.raises(ValueError, match="device"):
            queues_for(bad, s)
    with pytest.raises(ValueError):
        queue_name("any", s)  # no worker serves "any"


def test_device_request_is_stored_and_part_of_an_idempotent_request(session) -> None:
    (default,) = repo.create_runs(session, [CONFIG], "cnn", "mnist")
    assert repo.get_run(session, default.id).device_request == "any"
    runs, created = repo.create_or_find_runs(session, [CONFIG], "cnn", "mnist", idempotency_key="k",
                                             device_request="cpu")
    assert created and repo.get_run(session, runs[0].id).device_request == "cpu"
    again, created = repo.create_or_find_runs(session, [CONFIG], "cnn", "mnist", idempotency_key="k",
                                              device_request="gpu")
    assert not created and [r.id for r in again] == [r.id for r in runs]
    assert repo.same_request(again, "cnn", "mnist", [CONFIG], "cpu")
    assert not repo.same_request(again, "cnn", "mnist", [CONFIG], "gpu")  # another device: another request
    assert not repo.same_request(again, "cnn", "mnist", [CONFIG])  # "any" is a device request too


def test_a_claim_records_the_host_and_a_second_claim_is_refused(session) -> None:
    (run,) = repo.create_runs(session, [CONFIG], "cnn", "mnist", device_request="any")
    claimed = repo.claim_run(session, run.id, "w1@box-1", "cpu", 60, host="box-1")
    assert (claimed.host, claimed.device, claimed.worker, claimed.attempt) == ("box-1", "cpu", "w1@box-1", 1)
    # the duplicate message of an "any" run, taken by a worker on another machine, claims nothing
    assert repo.claim_run(session, run.id, "w2@box-2", "cuda:0 (GPU)", 60, host="box-2") is None
    stored = repo.get_run(session, run.id)
    assert (stored.host, stored.worker, stored.attempt) == ("box-1", "w1@box-1", 1)


def _info(name: str, started_ago: float = 0, **overrides) -> WorkerInfo:
    values = {"name": name, "host": "box", "pid": 42, "queues": ("p-cpu",), "device": "cpu",
              "started_at": utcnow() - timedelta(seconds=started_ago), **overrides}
    return WorkerInfo(**values)


def test_registry_lists_live_workers_by_name_and_forgets_stopped_and_stale_ones(session) -> None:
    now = utcnow()
    record_worker(session, _info("b@box", queues=("p-gpu",), device="cuda:0 (GPU)"), None, now=now)
    record_worker(session, _info("a@box", started_ago=60), "r" * 32, now=now - timedelta(seconds=2))
    record_worker(session, _info("stale@box"), None, now=now - timedelta(seconds=31))  # > 3 beats of 10 s
    listed = live_workers(session, heartbeat_seconds=10, now=now)
    assert [w.name for w in listed] == ["a@box", "b@box"]
    a, b = listed
    assert (a.queues, a.device, a.current_run, a.pid, a.host) == ("p-cpu", "cpu", "r" * 32, 42, "box")
    assert (b.queues, b.device, b.current_run) == ("p-gpu", "cuda:0 (GPU)", None)
    assert a.started_at <= a.last_seen_at and a.last_seen_at.tzinfo is not None

    # a heartbeat updates the row in place (the run finished), keeping started_at
    record_worker(session, _info("a@box", started_ago=60), None, now=now)
    (a,) = [w for w in live_workers(session, heartbeat_seconds=10, now=now) if w.name == "a@box"]
    assert a.current_run is None and a.last_seen_at == now

    remove_worker(session, "b@box")  # a clean stop
    assert [w.name for w in live_workers(session, heartbeat_seconds=10, now=now)] == ["a@box"]
    assert [w.name for w in live_workers(session, heartbeat_seconds=20, now=now)] == ["a@box", "stale@box"]
    assert forget_stale_workers(session, 30, now=now) == 1
    assert [w.name for w in live_workers(session, heartbeat_seconds=100, now=now)] == ["a@box"]
