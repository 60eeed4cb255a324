"""Graceful stop (SIGTERM), a stale worker coming back (SIGSTOP/SIGCONT), and a run whose message was
never sent, with real worker processes."""

from __future__ import annotations

import re
import signal
import time

import pytest

from tests.fixtures.services import Stack
from tests.support import wait_for

pytestmark = pytest.mark.services
SLOW = {"limit": 2000, "batch_size": 8}  # about 1-2 s per epoch on one CPU thread
GRACE = 10.0  # docker compose's default stop_grace_period


def _wait_epoch(stack: Stack, run_id: str, epoch: int) -> None:
    wait_for(lambda: len(stack.epochs(run_id)) >= epoch, f"epoch {epoch} of run {run_id}",
             on_timeout=stack.logs)


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_an_idle_worker_exits_within_5_s_of_sigterm(make_stack, backend: str) -> None:
    stack = make_stack(backend)
    worker = stack.start_worker()
    worker.wait_ready()
    started = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    code = worker.proc.wait(timeout=30)
    took = time.monotonic() - started
    assert code == 0, worker.log()[-3000:]
    assert took < 5.0, f"{backend}: idle worker took {took:.1f} s to stop"


def test_sigterm_hands_the_run_back_and_another_worker_finishes_it(make_stack) -> None:
    stack = make_stack("postgres", lease_seconds=30, heartbeat_seconds=2)  # a long lease: no reaper help
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=4, **SLOW)
    first = stack.start_worker()
    first.wait_ready()
    stack.enqueue(run_id)
    _wait_epoch(stack, run_id, 1)

    started = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    first.proc.wait(timeout=GRACE)  # a worker still training would be SIGKILLed here
    stopped = time.monotonic() - started
    back = stack.run(run_id)
    assert back.status == "queued" and back.worker is None and back.attempt == 0, first.log()[-3000:]
    assert back.sends == 1 and back.sent_at is not None  # sent again at once (the test's send is not counted)
    assert f"run {run_id}: message sent again for another worker" in first.log()
    done_before = [r.epoch for r in stack.epochs(run_id)]
    assert len(done_before) < 4, "the run finished before SIGTERM; make its epochs slower"
    assert f"run {run_id}: worker stopping" in first.log() and "handed back to the queue" in first.log()

    second = stack.start_worker()
    second.wait_ready()
    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())
    assert (run.attempt, run.worker) == (1, second.name)  # the interrupted attempt is not counted
    assert [r.epoch for r in stack.epochs(run_id)] == [1, 2, 3, 4]  # no epoch lost, none written twice
    resumed = re.search(rf"run {run_id} claimed by .*resuming after epoch (\d+)", second.log())
    assert resumed is not None and int(resumed.group(1)) == max(done_before)
    assert stopped < GRACE


def test_a_stale_worker_that_comes_back_writes_nothing(make_stack) -> None:
    stack = make_stack("postgres", lease_seconds=4, heartbeat_seconds=1)
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=4, **SLOW)
    stale = stack.start_worker()
    stale.wait_ready()
    stack.enqueue(run_id)
    _wait_epoch(stack, run_id, 1)
    stale.proc.send_signal(signal.SIGSTOP)  # frozen mid-epoch: its lease runs out
    try:
        other = stack.start_worker()
        other.wait_ready()
        wait_for(lambda: stack.run(run_id).worker == other.name, "the other worker to take the run",
                 on_timeout=stack.logs)
        rows_before_cont = {r.epoch: (r.train_loss, r.val_metric) for r in stack.epochs(run_id)}
    finally:
        stale.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "lease lost" in stale.log(), "the stale worker to notice", on_timeout=stack.logs)
    run = stack.wait_status(run_id)
    assert run.status == "succeeded" and run.worker == other.name, (run.error, stack.logs())
    rows = {r.epoch: (r.train_loss, r.val_metric) for r in stack.epochs(run_id)}
    assert sorted(rows) == [1, 2, 3, 4]
    for epoch, values in rows_before_cont.items():
        assert rows[epoch] == values  # nothing the stale worker had in hand overwrote a row
    stale_log = stale.log()
    assert "stopped without writing anything more" in stale_log
    assert f"run {run_id} finished" not in stale_log
    # Every epoch row after the takeover was written by the other worker (its log says so).
    other_epochs = [int(e) for e in re.findall(rf"run {run_id} epoch (\d+)/4", other.log())]
    assert set(rows) - set(rows_before_cont) <= set(other_epochs)


def test_a_run_committed_but_never_sent_is_still_trained(make_stack) -> None:
    """The API died between committing the run and sending its message: a reaper sends it."""
    stack = make_stack("sqlite", lease_seconds=2, heartbeat_seconds=0.5)
    stack.env["INKWELL_UNSENT_GRACE_SECONDS"] = "1"
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=1, limit=200, batch_size=32)  # never enqueued
    worker = stack.start_worker()
    worker.wait_ready()
    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())
    assert run.sends >= 1 and f"reaper: queued run {run_id} had no recent message" in worker.log()
