"""Run repository on SQLite and PostgreSQL: claims, leases, upserts, cancel, best run, lookups."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import delete, func, select

from core import results
from core import runs as repo
from core.models import EpochMetric, Run, utcnow


def _queue(session, n=1, model="cnn", **kw):
    configs = [{"epochs": 3 + i, "learning_rate": 0.001 * (i + 1)} for i in range(n)]
    return repo.create_runs(session, configs, model, kw.pop("dataset", "mnist"), **kw)


def test_create_and_idempotency_lookup(session) -> None:
    sweep = _queue(session, 3, sweep_id="s" * 32, idempotency_key="key-1")
    other = _queue(session, 1, idempotency_key="key-2")
    found = repo.find_by_idempotency_key(session, "key-1")
    assert [r.id for r in found] == [r.id for r in sweep]
    assert [r.epochs_total for r in found] == [3, 4, 5]
    assert all(r.status == "queued" and r.attempt == 0 and not r.cancel_requested for r in found)
    assert [r.id for r in repo.find_by_idempotency_key(session, "key-2")] == [other[0].id]
    assert repo.find_by_idempotency_key(session, "nope") == []
    assert {r.id for r in repo.list_runs(session, sweep_id="s" * 32)} == {r.id for r in sweep}
    assert len(repo.list_runs(session, limit=2)) == 2
    assert repo.get_run(session, sweep[1].id).config == {"epochs": 4, "learning_rate": 0.002}
    assert repo.get_run(session, "0" * 32) is None
    assert sweep[0].created_at.tzinfo is not None


def test_claim_lease_and_heartbeat(session) -> None:
    run = _queue(session)[0]
    t0 = utcnow()
    first = repo.claim_run(session, run.id, "w1", "cpu", 60, now=t0)
    assert first is not None and (first.status, first.attempt, first.worker) == ("running", 1, "w1")
    assert first.lease_expires_at == t0 + timedelta(seconds=60)
    assert repo.claim_run(session, run.id, "w2", "cuda", 60, now=t0 + timedelta(seconds=59)) is None
    assert repo.heartbeat(session, run.id, "w1", 60, now=t0 + timedelta(seconds=50))  # lease now t0+110
    assert repo.claim_run(session, run.id, "w2", "cuda", 60, now=t0 + timedelta(seconds=100)) is None

    taken = repo.claim_run(session, run.id, "w2", "cuda", 60, now=t0 + timedelta(seconds=111))
    assert taken is not None and (taken.worker, taken.device, taken.attempt) == ("w2", "cuda", 2)
    assert taken.started_at == t0  # the first start is kept
    assert not repo.heartbeat(session, run.id, "w1", 60)  # w1 lost its lease
    assert repo.heartbeat(session, run.id, "w2", 60)
    assert repo.finish_run(session, run.id, "failed", "stale", worker="w1").status == "running"

    done = repo.finish_run(session, run.id, "succeeded", worker="w2")
    assert (done.status, done.error, done.lease_expires_at) == ("succeeded", None, None)
    far = t0 + timedelta(days=1)
    assert repo.claim_run(session, run.id, "w3", "cpu", 60, now=far) is None
    assert not repo.heartbeat(session, run.id, "w2", 60)
    assert repo.get_run(session, run.id).status == "succeeded"


def test_claim_after_a_sub_second_lease_expires(session) -> None:
    """A 0.3 s lease, on an injected clock: stored with sub-second precision, claimable once it lapsed."""
    run = _queue(session)[0]
    t0 = utcnow()
    first = repo.claim_run(session, run.id, "w1", "cpu", 0.3, now=t0)
    assert first is not None and first.lease_expires_at == t0 + timedelta(seconds=0.3)
    assert repo.claim_run(session, run.id, "w2", "cpu", 0.3, now=t0 + timedelta(seconds=0.2)) is None
    assert repo.claim_run(session, run.id, "w2", "cpu", 0.3, now=t0 + timedelta(seconds=0.3)) is None  # not yet

    later = t0 + timedelta(seconds=0.5)
    taken = repo.claim_run(session, run.id, "w2", "cpu", 0.3, now=later)
    assert taken is not None and (taken.worker, taken.attempt, taken.status) == ("w2", 2, "running")
    assert taken.lease_expires_at == later + timedelta(seconds=0.3) and taken.started_at == t0
    assert not repo.heartbeat(session, run.id, "w1", 0.3, now=later)  # the stale worker lost its lease
    assert repo.finish_run(session, run.id, "succeeded", worker="w1").status == "running"  # and cannot finish it
    assert repo.heartbeat(session, run.id, "w2", 0.3, now=later + timedelta(seconds=0.2))
    assert repo.claim_run(session, run.id, "w3", "cpu", 0.3, now=later + timedelta(seconds=0.45)) is None
    assert repo.get_run(session, run.id).worker == "w2"


def _race(factory, run_id: str, workers: tuple[str, ...]) -> dict[str, Run | None]:
    """Every worker claims `run_id` at the same moment, each from its own thread and session."""
    barrier = threading.Barrier(len(workers))
    results: dict[str, Run | None] = {}

    def claim(worker: str) -> None:
        with factory() as own:
            barrier.wait()
            results[worker] = repo.claim_run(own, run_id, worker, "cpu", 60)

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_claims_have_one_winner(session, factory) -> None:
    for run in _queue(session, 6):
        results = _race(factory, run.id, ("a", "b"))
        winners = [w for w, r in results.items() if r is not None]
        assert len(results) == 2 and len(winners) == 1
        stored = repo.get_run(session, run.id)
        assert (stored.worker, stored.attempt, stored.status) == (winners[0], 1, "running")


def test_never_claims_cancelled_runs(session) -> None:
    queued, running, stale = (r.id for r in _queue(session, 3))
    assert repo.request_cancel(session, queued).status == "cancelled"
    assert repo.claim_run(session, queued, "w", "cpu", 60) is None

    t0 = utcnow()
    repo.claim_run(session, running, "w", "cpu", 60, now=t0)
    after = repo.request_cancel(session, running, now=t0 + timedelta(seconds=1))
    assert (after.status, after.cancel_requested) == ("running", True)
    assert repo.is_cancel_requested(session, running)
    assert repo.claim_run(session, running, "w2", "cpu", 60, now=t0 + timedelta(hours=1)) is None
    assert repo.finish_run(session, running, "cancelled").status == "cancelled"

    repo.claim_run(session, stale, "w", "cpu", 60, now=t0 - timedelta(hours=1))  # worker died long ago
    assert repo.request_cancel(session, stale, now=t0).status == "cancelled"


def test_request_cancel_semantics(session) -> None:
    queued, running, done = (r.id for r in _queue(session, 3))
    assert not repo.is_cancel_requested(session, queued)
    t0 = utcnow()
    cancelled = repo.request_cancel(session, queued, now=t0)
    assert cancelled.status == "cancelled" and cancelled.finished_at == t0
    repo.claim_run(session, running, "w", "cpu", 60, now=t0)
    assert repo.request_cancel(session, running, now=t0 + timedelta(seconds=59)).status == "running"
    assert repo.is_cancel_requested(session, running)
    repo.claim_run(session, done, "w", "cpu", 60)
    repo.finish_run(session, done, "succeeded")
    unchanged = repo.request_cancel(session, done)
    assert (unchanged.status, unchanged.cancel_requested) == ("succeeded", False)
    assert not repo.is_cancel_requested(session, done)
    assert repo.request_cancel(session, "f" * 32) is None
    assert repo.finish_run(session, done, "failed", "late").status == "succeeded"  # finished stays finished
    assert repo.runs_by_status_counts(session) == {
        "queued": 0, "running": 1, "succeeded": 1, "failed": 0, "cancelled": 1}


def test_record_epoch_upserts_and_tracks_best(session) -> None:
    cnn, s2s = _queue(session)[0], _queue(session, model="seq2seq")[0]
    rng = random.Random(3)
    values = {run.id: [rng.random() for _ in range(4)] for run in (cnn, s2s)}
    for run in (cnn, s2s):
        for epoch, v in enumerate(values[run.id], start=1):
            results.record_epoch(session, run.id, epoch, 1.0 / epoch, v, 0.5)
    assert repo.get_run(session, cnn.id).best_val_metric == max(values[cnn.id])
    assert repo.get_run(session, s2s.id).best_val_metric == min(values[s2s.id])

    best_epoch = values[cnn.id].index(max(values[cnn.id])) + 1
    results.record_epoch(session, cnn.id, best_epoch, 9.0, 0.01, 2.5)  # redo the best epoch, worse this time
    rows = results.epochs(session, cnn.id)
    assert [r.epoch for r in rows] == [1, 2, 3, 4]
    again = [r for r in rows if r.epoch == best_epoch]
    assert len(again) == 1
    assert (again[0].train_loss, again[0].val_metric, again[0].seconds) == (9.0, 0.01, 2.5)
    expected = [0.01 if i + 1 == best_epoch else v for i, v in enumerate(values[cnn.id])]
    assert repo.get_run(session, cnn.id).best_val_metric == max(expected)
    count = session.scalar(select(func.count()).select_from(EpochMetric).where(EpochMetric.run_id == cnn.id))
    assert count == 4


def test_final_metrics_artifacts_and_cascade(session) -> None:
    run = _queue(session)[0]
    results.record_final(session, run.id, "test_accuracy", 0.5)
    results.record_final(session, run.id, "test_accuracy", 0.75)
    results.record_final(session, run.id, "test_loss", float("nan"))
    assert results.final_metrics(session, run.id) == {"test_accuracy": 0.75, "test_loss": None}
    first = results.add_artifact(session, run.id, "plot", "loss.png", f"runs/{run.id}/loss.png", 10)
    second = results.add_artifact(session, run.id, "plot", "loss.png", f"runs/{run.id}/loss.png", 20)
    assert first.id == second.id and second.size_bytes == 20
    results.record_epoch(session, run.id, 1, 0.3, 0.9, 1.0)
    session.execute(delete(Run).where(Run.id == run.id))  # foreign keys cascade (SQLite too)
    session.commit()
    assert results.epochs(session, run.id) == [] and results.final_metrics(session, run.id) == {}


def _succeed(session, run_id: str, metric: float | None) -> None:
    repo.claim_run(session, run_id, "w", "cpu", 60)
    if metric is not None:
        results.record_epoch(session, run_id, 1, 0.1, metric, 1.0)
    repo.finish_run(session, run_id, "succeeded")


def test_best_run_and_promotion(session) -> None:
    rng = random.Random(7)
    for model in ("cnn", "seq2seq"):
        assert results.best_run(session, model) is None
        metrics = {r.id: rng.random() for r in _queue(session, 5, model=model)}
        for run_id, metric in metrics.items():
            _succeed(session, run_id, metric)
        failed = _queue(session, model=model)[0]
        repo.claim_run(session, failed.id, "w", "cpu", 60)
        results.record_epoch(session, failed.id, 1, 0.1, 1.0 if model == "cnn" else 0.0, 1.0)  # best, but failed
        repo.finish_run(session, failed.id, "failed", "boom")
        pick = max if model == "cnn" else min
        assert results.best_run(session, model).id == pick(metrics, key=metrics.__getitem__)

    best = results.best_run(session, "cnn")
    assert results.promoted_run(session, "cnn") is None
    assert results.promote(session, "cnn", best.id).run_id == best.id
    assert results.promoted_run(session, "cnn").id == best.id
    other = next(r for r in repo.list_runs(session, model="cnn", status="succeeded") if r.id != best.id)
    results.promote(session, "cnn", other.id)
    assert results.promoted_run(session, "cnn").id == other.id
    for bad in (results.best_run(session, "seq2seq").id, _queue(session)[0].id):  # wrong model, not succeeded
        try:
            results.promote(session, "cnn", bad)
        except ValueError:
            continue
        raise AssertionError("promote accepted a bad run")
    assert results.promoted_run(session, "cnn").id == other.id
    assert Counter(r.status for r in repo.list_runs(session)) == {
        k: v for k, v in repo.runs_by_status_counts(session).items() if v}
