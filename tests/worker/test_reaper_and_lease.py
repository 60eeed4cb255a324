"""The reaper, the lease keeper and the cancel check in-process, against real databases and brokers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from core import runs as repo
from core.models import utcnow
from core.queue import TRAIN_TASK, make_celery, queue_name
from ml.config import TrainConfig
from ml.errors import DataError
from tests.support import wait_for
from worker.lease import LeaseKeeper
from worker.reaper import reap_interval, reap_once, resend_unsent
from worker.training import StopCheck, error_line, resolve_config

BACKENDS = ["postgres", "sqlite"]  # PostgreSQL + Redis, SQLite + the SQLite-backed broker


def _claimed(stack, n: int, *, expired: bool, worker: str = "dead@host") -> list[str]:
    """n runs claimed by `worker`, with a lease that ended a minute ago (expired) or lasts a minute."""
    ids = stack.create_runs("cnn", "mnist-8k", sweep=[{"learning_rate": 0.001 * (i + 1)} for i in range(n)])
    now = utcnow() - timedelta(seconds=120) if expired else utcnow()
    with stack.factory() as session:
        for run_id in ids:
            assert repo.claim_run(session, run_id, worker, "cpu", 60, now=now) is not None
    return ids


def _drain(stack, device: str) -> list[str]:
    """Consume every message on the stack's training queue of `device`; returns the run ids they carry."""
    found = []
    with stack.app.connection_for_read() as conn:
        queue = conn.SimpleQueue(queue_name(device, stack.settings))
        try:
            while True:
                try:
                    message = queue.get(timeout=2)
                except queue.Empty:
                    return found
                assert message.headers["task"] == TRAIN_TASK
                args, _kwargs, _embed = message.decode()  # Celery message protocol 2
                found.extend(args)
                message.ack()
        finally:
            queue.close()


@pytest.mark.services
@pytest.mark.parametrize("kind", BACKENDS)
def test_reaper_requeues_only_runs_whose_lease_expired(make_stack, kind) -> None:
    stack = make_stack(kind)
    (dead,) = _claimed(stack, 1, expired=True)
    (alive,) = _claimed(stack, 1, expired=False, worker="alive@host")
    (queued,) = stack.create_runs("cnn", "mnist-8k")

    with stack.factory() as session:
        assert reap_once(session, stack.app, stack.settings) == [dead]
        assert reap_once(session, stack.app, stack.settings) == []  # nothing left to reap
    reaped = stack.run(dead)
    assert (reaped.status, reaped.worker, reaped.attempt) == ("queued", None, 1)
    assert reaped.lease_expires_at is None
    assert reaped.task_id is not None
    assert (stack.run(alive).status, stack.run(alive).worker) == ("running", "alive@host")
    assert stack.run(queued).status == "queued"
    assert _drain(stack, "gpu") == _drain(stack, "cpu") == [dead]  # it asked for any device: both queues

    # The dead holder can no longer finish it; the next claim is attempt 2.
    with stack.factory() as session:
        assert repo.finish_run(session, dead, "succeeded", worker="dead@host").status == "queued"
        assert repo.claim_run(session, dead, "next@host", "cpu", 60).attempt == 2


@pytest.mark.services
@pytest.mark.parametrize("kind", BACKENDS)
def test_concurrent_reapers_requeue_each_run_exactly_once(make_stack, kind) -> None:
    stack = make_stack(kind)
    dead = _claimed(stack, 6, expired=True)
    barrier = threading.Barrier(3)
    results: list[list[str]] = [[], [], []]

    def reaper(i: int) -> None:
        app = make_celery(stack.settings)
        try:
            with stack.factory() as session:
                barrier.wait()
                results[i] = reap_once(session, app, stack.settings)
        finally:
            app.close()

    threads = [threading.Thread(target=reaper, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    together = [run_id for result in results for run_id in result]
    assert sorted(together) == sorted(dead)  # every expired run once, none twice
    assert sorted(_drain(stack, "gpu")) == sorted(_drain(stack, "cpu")) == sorted(dead)  # one message per queue
    assert all(stack.run(run_id).status == "queued" for run_id in dead)


@pytest.mark.services
def test_the_reaper_sends_a_run_again_to_the_queues_of_its_device(make_stack) -> None:
    stack = make_stack("sqlite", heartbeat_seconds=1, lease_seconds=2)
    (cpu_run,) = stack.create_runs("cnn", "mnist-8k", device_request="cpu")
    with stack.factory() as session:
        repo.claim_run(session, cpu_run, "dead@host", "cpu", 60, now=utcnow() - timedelta(seconds=120))
    (gpu_run,) = stack.create_runs("cnn", "mnist-8k", device_request="gpu")  # never sent
    later = utcnow() + timedelta(seconds=stack.settings.unsent_grace_seconds + 1)
    with stack.factory() as session:
        assert reap_once(session, stack.app, stack.settings) == [cpu_run]
        assert resend_unsent(session, stack.app, stack.settings, now=later) == [gpu_run]
    assert _drain(stack, "cpu") == [cpu_run]
    assert _drain(stack, "gpu") == [gpu_run]
    assert (stack.run(cpu_run).sends, stack.run(gpu_run).sends) == (1, 1)


@pytest.mark.services
def test_lease_keeper_renews_then_notices_a_takeover(make_stack) -> None:
    stack = make_stack("postgres")
    (run_id,) = stack.create_runs("cnn", "mnist-8k")
    with stack.factory() as session:
        first_expiry = repo.claim_run(session, run_id, "me@host", "cpu", 2).lease_expires_at
    keeper = LeaseKeeper(stack.factory, run_id, "me@host", lease_seconds=2, interval=0.2).start()
    try:  # renewals every 0.2 s: wait (bounded) until one has moved the expiry by more than 0.5 s
        wait_for(lambda: stack.run(run_id).lease_expires_at > first_expiry + timedelta(seconds=0.5),
                 "the lease keeper to renew the lease", 10, 0.05)
        assert not keeper.lost

        with stack.factory() as session:  # another worker takes over (as after an expired lease)
            later = utcnow() + timedelta(seconds=5)
            taken = repo.claim_run(session, run_id, "other@host", "cpu", 60, now=later)
        assert taken is not None and taken.attempt == 2
        wait_for(lambda: keeper.lost, "the lease keeper to notice the takeover", 10, 0.05)
        assert stack.run(run_id).worker == "other@host"
    finally:
        keeper.stop()
    assert not keeper._thread.is_alive()


@pytest.mark.services
def test_stop_check_asks_the_database_at_most_once_per_second(make_stack) -> None:
    stack = make_stack("postgres")
    (run_id,) = stack.create_runs("cnn", "mnist-8k")
    clock = [100.0]
    with stack.factory() as session:
        repo.claim_run(session, run_id, "me@host", "cpu", 60)
        lease = LeaseKeeper(stack.factory, run_id, "me@host", 60, 30)  # not started: never lost
        check = StopCheck(session, run_id, lease, poll_seconds=1.0, clock=lambda: clock[0])
        assert check() is False
        stack.request_cancel(run_id)
        clock[0] += 0.5
        assert check() is False  # throttled: the request is not seen yet
        clock[0] += 0.5
        assert check() is True
        lease._lost.set()
        assert StopCheck(session, run_id, lease)() is True  # a lost lease stops at once


def test_error_line_is_one_short_line() -> None:
    message = error_line(ValueError("first line\nsecond   line\t" + "x" * 1000))
    assert message.startswith("ValueError: first line second line x")
    assert "\n" not in message and len(message) == 500
    assert error_line(KeyError()) == "KeyError"
    assert error_line(DataError("bad")) == "DataError: bad"


def test_resolve_config_maps_dataset_names_inside_the_data_dir(shared_data) -> None:
    class StoredRun:  # the two fields resolve_config reads, as a stored Run holds them
        def __init__(self, model: str, dataset: str, **overrides) -> None:
            self.model, self.dataset, self.dataset_sha256 = model, dataset, None
            self.config = TrainConfig.for_model(model, dataset, **overrides).to_dict()

    cnn, spec = resolve_config(StoredRun("cnn", "mnist-8k", epochs=3, limit=50), shared_data)
    assert (cnn.data, cnn.epochs, cnn.limit, spec) == ("mnist-8k", 3, 50, f"idx:{shared_data / 'mnist-8k'}")
    pairs, spec = resolve_config(StoredRun("seq2seq", "spa-eng", hidden_size=16), shared_data)
    assert (pairs.data, pairs.hidden_size, spec) == ("spa-eng", 16, f"pairs:{shared_data / 'spa-eng'}")
    assert resolve_config(StoredRun("cnn", "kmnist"), shared_data) == (TrainConfig.for_model("cnn", "kmnist"),
                                                                       "kmnist")
    for bad in ("nope", "../data", "/etc", ".hidden"):
        with pytest.raises(DataError, match="unknown dataset"):
            resolve_config(StoredRun("cnn", bad), shared_data)


def test_reap_interval_is_half_a_lease_and_at_least_a_second() -> None:
    assert reap_interval(60) == 30
    assert reap_interval(4) == 2
    assert reap_interval(0.5) == 1
