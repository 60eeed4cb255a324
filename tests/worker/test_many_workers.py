"""Duplicate messages and a sweep shared by two workers, with real worker processes."""

from __future__ import annotations

import re

import pytest

from tests.support import wait_for

pytestmark = pytest.mark.services


def _epoch_lines(log: str, run_id: str) -> list[int]:
    return [int(e) for e in re.findall(rf"run {run_id} epoch (\d+)/\d+: train_loss", log)]


def test_duplicate_messages_train_a_run_once(make_stack) -> None:
    stack = make_stack("postgres")
    workers = [stack.start_worker(), stack.start_worker()]
    for worker in workers:
        worker.wait_ready()
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=2, limit=600, batch_size=16)
    stack.enqueue(run_id)
    stack.enqueue(run_id)  # a duplicate while the first is being trained

    assert stack.wait_status(run_id).status == "succeeded", stack.logs()
    stack.enqueue(run_id)  # a redelivery after it finished

    def both_logs() -> str:
        return "\n".join(w.log() for w in workers)

    wait_for(lambda: both_logs().count(f"run {run_id} not claimed") == 2, "both extra messages to be dropped",
             on_timeout=stack.logs)
    run = stack.run(run_id)
    assert (run.status, run.attempt) == ("succeeded", 1)
    assert [r.epoch for r in stack.epochs(run_id)] == [1, 2]
    assert both_logs().count(f"run {run_id} claimed by") == 1
    assert _epoch_lines(both_logs(), run_id) == [1, 2]


def test_a_sweep_is_shared_by_two_workers(make_stack) -> None:
    stack = make_stack("postgres")
    workers = [stack.start_worker(), stack.start_worker()]
    for worker in workers:
        worker.wait_ready()
    rates = [0.003, 0.001, 0.0005]
    run_ids = stack.create_runs("cnn", "mnist-8k", sweep=[{"learning_rate": lr} for lr in rates], epochs=2,
                                limit=600, batch_size=16)
    for run_id in run_ids:
        stack.enqueue(run_id)

    runs = [stack.wait_status(run_id) for run_id in run_ids]
    assert [r.status for r in runs] == ["succeeded"] * 3, stack.logs()
    assert [r.config["learning_rate"] for r in runs] == rates
    assert len({r.sweep_id for r in runs}) == 1 and runs[0].sweep_id is not None
    assert {r.worker for r in runs} == {w.name for w in workers}
    assert all(r.attempt == 1 for r in runs)
    for run in runs:
        assert [r.epoch for r in stack.epochs(run.id)] == [1, 2]
        assert set(stack.final_metrics(run.id)) == {"test_accuracy", "best_test_accuracy"}
