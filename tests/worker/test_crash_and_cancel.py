"""A SIGKILLed worker, a cancel and a lost lease, with real worker processes."""

from __future__ import annotations

import re
import signal
from datetime import timedelta

import pytest

from core import runs as repo
from core.models import utcnow
from tests.fixtures.services import Stack
from tests.support import wait_for

pytestmark = pytest.mark.services
SLOW = {"limit": 2000, "batch_size": 8}  # about 1-2 s per epoch on one CPU thread


def _epoch_lines(log: str, run_id: str) -> list[int]:
    return [int(e) for e in re.findall(rf"run {run_id} epoch (\d+)/\d+: train_loss", log)]


def _wait_epoch(stack: Stack, run_id: str, epoch: int) -> None:
    wait_for(lambda: len(stack.epochs(run_id)) >= epoch, f"epoch {epoch} of run {run_id}",
             on_timeout=stack.logs)


def test_sigkilled_worker_run_is_reaped_and_resumed_by_another_worker(make_stack) -> None:
    stack = make_stack("postgres", lease_seconds=4, heartbeat_seconds=1)
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=4, **SLOW)
    first = stack.start_worker()
    first.wait_ready()
    stack.enqueue(run_id)

    _wait_epoch(stack, run_id, 1)
    assert stack.run(run_id).status == "running"  # metrics are readable while it trains
    first.kill(signal.SIGKILL)
    before = {r.epoch: (r.created_at, r.train_loss, r.val_metric) for r in stack.epochs(run_id)}
    killed = stack.run(run_id)
    assert killed.status == "running" and killed.attempt == 1 and killed.worker == first.name
    assert len(before) < 4, "the run finished before it could be killed; make its epochs slower"

    second = stack.start_worker()
    second.wait_ready()
    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())
    assert (run.attempt, run.worker, run.error) == (2, second.name, None)

    rows = stack.epochs(run_id)
    assert [r.epoch for r in rows] == [1, 2, 3, 4]
    # Rows written before the crash are untouched: it resumed, it did not start over.
    assert {r.epoch: (r.created_at, r.train_loss, r.val_metric) for r in rows if r.epoch in before} == before
    log = second.log()
    assert f"reaper: run {run_id} lost its worker {first.name} during attempt 1; requeued" in log
    resumed = re.search(rf"run {run_id} claimed by {re.escape(second.name)} on .*: attempt 2, .*"
                        r"resuming after epoch (\d+)", log)
    assert resumed is not None, log[-3000:]
    done = int(resumed.group(1))
    assert done >= max(before)
    assert _epoch_lines(log, run_id) == list(range(done + 1, 5)) and done + 1 > 1
    first_epochs = _epoch_lines(first.log(), run_id)
    assert first_epochs[:1] == [1] and set(first_epochs) <= set(before)
    assert stack.final_metrics(run_id)["test_accuracy"] is not None


def test_cancel_stops_a_running_run_within_an_epoch(make_stack) -> None:
    stack = make_stack("sqlite")
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=6, **SLOW)
    worker = stack.start_worker()
    worker.wait_ready()
    stack.enqueue(run_id)

    _wait_epoch(stack, run_id, 1)
    requested = stack.request_cancel(run_id)
    assert requested.status == "running" and requested.cancel_requested
    at_request = len(stack.epochs(run_id))

    run = stack.wait_status(run_id)
    assert run.status == "cancelled", stack.logs()
    assert run.error is None and run.finished_at is not None and run.lease_expires_at is None
    rows = stack.epochs(run_id)
    assert at_request <= len(rows) <= at_request + 1 < 6
    assert stack.final_metrics(run_id) == {} and stack.artifacts(run_id) == {}
    assert f"run {run_id} finished: cancelled" in worker.log()
    assert worker.proc.poll() is None


def test_a_worker_that_lost_its_lease_stops_without_touching_the_run(make_stack) -> None:
    stack = make_stack("sqlite", lease_seconds=4, heartbeat_seconds=0.5)
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=6, **SLOW)
    worker = stack.start_worker()
    worker.wait_ready()
    stack.enqueue(run_id)

    _wait_epoch(stack, run_id, 1)
    with stack.factory() as session:  # as if its lease had run out and another worker claimed the run
        later = utcnow() + timedelta(seconds=10)
        taken = repo.claim_run(session, run_id, "thief@host", "cpu", 600, now=later)
    assert taken is not None and taken.attempt == 2
    at_takeover = len(stack.epochs(run_id))

    wait_for(lambda: f"run {run_id}: lease lost; stopped without writing anything more" in worker.log(),
             "the worker to notice it lost the lease", on_timeout=stack.logs)
    run = stack.run(run_id)
    assert (run.status, run.worker, run.attempt, run.error, run.finished_at) == (
        "running", "thief@host", 2, None, None)
    assert len(stack.epochs(run_id)) <= at_takeover + 1 < 6
    assert stack.final_metrics(run_id) == {}
    assert f"run {run_id} finished" not in worker.log()
    assert worker.proc.poll() is None
