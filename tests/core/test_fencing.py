"""Writes fenced by the lease, handing a run back, and finding queued runs whose message is missing
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from core import results
from core import runs as repo
from core.models import Run, utcnow


def _run(session, model: str = "cnn") -> Run:
    return repo.create_runs(session, [{"epochs": 3}], model, "mnist-8k")[0]


def test_a_worker_that_lost_the_run_writes_nothing(session) -> None:
    run = _run(session)
    t0 = utcnow()
    assert repo.claim_run(session, run.id, "w1", "cpu", 60, now=t0 - timedelta(seconds=30)) is not None
    results.record_epoch(session, run.id, 1, 0.9, 0.5, 1.0, worker="w1")  # w1 holds a live lease
    assert repo.claim_run(session, run.id, "w2", "cpu", 60, now=t0 + timedelta(seconds=31)) is not None

    for write in (
        lambda: results.record_epoch(session, run.id, 1, 0.1, 0.99, 1.0, worker="w1"),
        lambda: results.record_epoch(session, run.id, 2, 0.1, 0.99, 1.0, worker="w1"),
        lambda: results.record_final(session, run.id, "test_accuracy", 0.99, worker="w1"),
        lambda: results.add_artifact(session, run.id, "plot", "x.png", "runs/x.png", 1, worker="w1"),
    ):
        with pytest.raises(repo.LeaseLost):
            write()
    assert [(e.epoch, e.val_metric) for e in results.epochs(session, run.id)] == [(1, 0.5)]
    assert results.final_metrics(session, run.id) == {}
    assert repo.finish_run(session, run.id, "succeeded", worker="w1").status == "running"

    results.record_epoch(session, run.id, 2, 0.4, 0.7, 1.0, worker="w2")  # the owner writes
    assert [e.epoch for e in results.epochs(session, run.id)] == [1, 2]


def test_an_expired_lease_fences_even_before_anyone_claims(session) -> None:
    run = _run(session)
    assert repo.claim_run(session, run.id, "w1", "cpu", 1, now=utcnow() - timedelta(seconds=5)) is not None
    with pytest.raises(repo.LeaseLost):
        results.record_epoch(session, run.id, 1, 0.9, 0.5, 1.0, worker="w1")
    with pytest.raises(repo.LeaseLost):
        repo.fence(session, run.id, "w1")
    assert results.epochs(session, run.id) == []
    repo.fence(session, run.id, "w1", now=utcnow() - timedelta(seconds=5))  # while the lease was live
    session.commit()


def test_release_hands_the_run_back_without_counting_the_attempt(session) -> None:
    run = _run(session)
    repo.claim_run(session, run.id, "w1", "cpu", 60)
    assert not repo.release_run(session, run.id, "w2")  # only the holder can
    assert repo.release_run(session, run.id, "w1")
    back = repo.get_run(session, run.id)
    assert (back.status, back.worker, back.attempt, back.lease_expires_at, back.sent_at) == (
        "queued", None, 0, None, None)
    again = repo.claim_run(session, run.id, "w2", "cpu", 60)
    assert again is not None and again.attempt == 1


def test_queued_runs_without_a_recent_message_are_found_once(session) -> None:
    t0 = utcnow()
    never, recent, old, running = (_run(session) for _ in range(4))
    repo.set_task_id(session, recent.id, "t-recent", now=t0 - timedelta(seconds=10))
    repo.set_task_id(session, old.id, "t-old", now=t0 - timedelta(seconds=700))
    repo.claim_run(session, running.id, "w", "cpu", 60)
    session.execute(update(Run).values(created_at=t0 - timedelta(seconds=60)))
    session.commit()

    due = repo.unsent_runs(session, now=t0, unsent_grace=30, resend_after=600)
    assert set(due) == {never.id, old.id}
    assert repo.unsent_runs(session, now=t0, unsent_grace=90, resend_after=600) == [old.id]
    assert repo.take_for_resend(session, never.id, now=t0, sent_before=None)
    session.commit()
    assert not repo.take_for_resend(session, never.id, now=t0, sent_before=None)  # another reaper lost
    session.rollback()
    assert repo.unsent_runs(session, now=t0 + timedelta(seconds=1), unsent_grace=30, resend_after=600) == [old.id]


def test_resend_waits_longer_after_each_send(session) -> None:
    run = _run(session)
    t0 = utcnow()
    for _ in range(3):
        repo.set_task_id(session, run.id, "t", now=t0)  # sends = 3: next one after 600 * 2**2 s
    assert repo.unsent_runs(session, now=t0 + timedelta(seconds=2399), unsent_grace=30, resend_after=600) == []
    assert repo.unsent_runs(session, now=t0 + timedelta(seconds=2400), unsent_grace=30,
                            resend_after=600) == [run.id]
