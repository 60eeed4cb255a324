"""Evaluations on real worker processes: best checkpoints, results equal to the CLI's, requests served from
SQL, a killed worker's evaluation done again, a cancel."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from core import evaluations as repo
from core.models import Evaluation
from core.runs import finish_run
from core.storage import checkpoint_key_for
from ml.checkpoint import load_checkpoint
from tests.fixtures.services import Stack
from tests.support import ROOT, wait_for
from worker import evaluation as worker_evaluation

pytestmark = pytest.mark.services
CNN = {"epochs": 3, "limit": 300, "batch_size": 64, "learning_rate": 0.01}
SEQ2SEQ = {"epochs": 1, "limit": 128, "hidden_size": 16, "batch_size": 32}


def _submit(stack: Stack, run_id: str, **request) -> tuple[Evaluation, str]:
    with stack.factory() as session:
        return repo.submit_evaluation(session, stack.app, stack.settings, stack.run(run_id), **request)


def _evaluation(stack: Stack, evaluation_id: str) -> Evaluation:
    with stack.factory() as session:
        found = repo.get_evaluation(session, evaluation_id)
        assert found is not None
        return found


def _wait(stack: Stack, evaluation_id: str, statuses=("succeeded", "failed", "cancelled"), timeout=180.0):
    return wait_for(lambda: (e := _evaluation(stack, evaluation_id)).status in statuses and e,
                    f"evaluation {evaluation_id} in {statuses}", timeout, 0.2, stack.logs)


def _cli_evaluate(checkpoint, data: str, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "ml", "evaluate", "--checkpoint", str(checkpoint), "--data", data,
                           "--json", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_run_keeps_its_best_checkpoint_and_its_evaluation_equals_the_cli(make_stack, shared_data, tmp_path):
    stack = make_stack("postgres")
    (run_id,) = stack.create_runs("cnn", "mnist-8k", **CNN)
    # Asked for while the run is still queued: it waits, and is sent when the run succeeds.
    waiting, what = _submit(stack, run_id, split="test", checkpoint="best", limit=CNN["limit"])
    assert what == "created" and waiting.status == "queued" and waiting.sent_at is None
    stack.start_worker().wait_ready()
    stack.enqueue(run_id)
    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())

    vals = [row.val_metric for row in stack.epochs(run_id)]
    assert run.best_epoch == vals.index(max(vals)) + 1  # the earliest of the best validation epochs
    assert {"checkpoint.pt", "best.pt"} <= set(stack.artifacts(run_id))
    best = tmp_path / "best.pt"
    stack.store.objects.get_file(checkpoint_key_for(run_id, "best"), best)
    assert load_checkpoint(best)["epoch"] == run.best_epoch
    finals = stack.final_metrics(run_id)
    assert finals["best_test_accuracy"] == load_checkpoint(best)["test"]["accuracy"]

    done = _wait(stack, waiting.id)
    assert done.status == "succeeded", (done.error, stack.logs())
    assert (done.checkpoint_used, done.checkpoint_epoch, done.metric) == ("best", run.best_epoch, "accuracy")
    assert done.value == finals["best_test_accuracy"]  # the same number fit measured on the same weights
    cli = _cli_evaluate(best, f"idx:{shared_data / 'mnist-8k'}", "--split", "test", "--limit", "300")
    assert (done.value, done.n) == (cli["accuracy"], cli["n"])
    assert sum(map(sum, done.details["confusion"])) == done.n

    # An identical request is the stored row: no new message, no second computation.
    again, what = _submit(stack, run_id, split="test", checkpoint="best", limit=CNN["limit"])
    assert (what, again.id, again.sends, again.value) == ("found", done.id, done.sends, done.value)


def test_beam_1_equals_greedy_and_a_dead_workers_evaluation_is_done_again(make_stack):
    stack = make_stack("sqlite", lease_seconds=4, heartbeat_seconds=1)
    (run_id,) = stack.create_runs("seq2seq", "spa-eng", **SEQ2SEQ)
    first = stack.start_worker()
    first.wait_ready()
    stack.enqueue(run_id)
    assert stack.wait_status(run_id).status == "succeeded", stack.logs()

    limit = SEQ2SEQ["limit"]  # the examples per split fit scored
    greedy, _ = _submit(stack, run_id, split="val", checkpoint="last", limit=limit)
    beam1, _ = _submit(stack, run_id, split="val", checkpoint="last", decoding="beam", beam_size=1, limit=limit)
    greedy, beam1 = _wait(stack, greedy.id), _wait(stack, beam1.id)
    assert greedy.status == beam1.status == "succeeded", stack.logs()
    assert greedy.id != beam1.id and greedy.value == beam1.value and greedy.n == beam1.n == limit
    assert greedy.value == stack.epochs(run_id)[-1].val_metric  # what fit measured after its one epoch
    assert [s["hypothesis"] for s in greedy.details["worst"]] == [s["hypothesis"] for s in beam1.details["worst"]]

    # A worker that claimed an evaluation and died (SIGKILL) leaves it running under a lease nobody renews.
    # Scoring is too quick here to kill a worker mid-way reliably, so the dead worker's claim is made in SQL;
    # the worker process that held the run is killed for real, and a new one must redo the evaluation.
    with stack.factory() as session:
        orphan, _ = repo.create_or_find_evaluation(session, stack.run(run_id), checkpoint="last", dataset="spa-eng",
                                                   dataset_sha256=None, split="val",
                                                   params=repo.canonical_params("transliterate", decoding="beam",
                                                                                beam_size=10))
        assert repo.claim_evaluation(session, orphan.id, first.name, "cpu", lease_seconds=2) is not None
    first.kill(signal.SIGKILL)
    second = stack.start_worker()
    second.wait_ready()
    redone = _wait(stack, orphan.id, timeout=120)
    assert redone.status == "succeeded", (redone.error, stack.logs())
    assert redone.attempt == 2 and redone.worker == second.name and redone.n == redone.total == 1000
    assert f"reaper: evaluation {orphan.id} lost its worker" in second.log()


def test_a_running_evaluation_is_cancelled_and_a_failed_runs_evaluation_fails(make_stack, monkeypatch):
    stack = make_stack("sqlite")
    (run_id,) = stack.create_runs("seq2seq", "spa-eng", **SEQ2SEQ)
    stack.start_worker().wait_ready()
    stack.enqueue(run_id)
    assert stack.wait_status(run_id).status == "succeeded", stack.logs()
    # A cancel sent while a worker scores the evaluation: here the scoring runs in this process (the worker's
    # own code), and the cancel is requested the moment it reports its first progress, as a user would.
    with stack.factory() as session:
        slow, _ = repo.create_or_find_evaluation(session, stack.run(run_id), checkpoint="last", dataset="spa-eng",
                                                 dataset_sha256=None, split="val",
                                                 params=repo.canonical_params("transliterate", decoding="beam",
                                                                              beam_size=10))
    progress = []

    def progress_then_cancel(session, evaluation_id, worker, done, total):
        progress.append(done)
        written = repo.set_progress(session, evaluation_id, worker, done, total)
        with stack.factory() as other:
            repo.request_cancel(other, evaluation_id)
        return written

    monkeypatch.setattr(worker_evaluation, "set_progress", progress_then_cancel)
    settings = stack.settings.model_copy(update={"cache_dir": stack.tmp / "in-process-cache"})
    outcome = worker_evaluation.evaluate_one(slow.id, "in-process-worker", settings=settings, factory=stack.factory)
    cancelled = _evaluation(stack, slow.id)
    assert outcome == "cancelled" and cancelled.status == "cancelled" and cancelled.value is None
    assert 0 < progress[0] < 1000 and cancelled.done == progress[0]  # stopped between batches, not at the end
    monkeypatch.undo()
    # Asked again, the cancelled evaluation is queued again under the same id, and a worker scores it.
    again, what = _submit(stack, run_id, split="val", checkpoint="last", decoding="beam", beam_size=10)
    assert (what, again.id) == ("requeued", slow.id)
    assert _wait(stack, slow.id).status == "succeeded", stack.logs()

    # An evaluation of a run that then fails is failed by the reaper.
    (bad,) = stack.create_runs("seq2seq", "spa-eng", **{**SEQ2SEQ, "epochs": 1})
    orphan, _ = _submit(stack, bad, split="test")
    with stack.factory() as session:
        finish_run(session, bad, "failed", error="made to fail by the test")
    failed = _wait(stack, orphan.id, timeout=60)
    assert failed.status == "failed" and "did not succeed" in failed.error
