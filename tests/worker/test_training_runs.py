"""`python -m worker` trains queued runs end to end on both backends, and fails bad runs cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta

import pytest
import torch

from core.storage import run_key
from ml.checkpoint import load_checkpoint
from ml.data.images import load_images
from ml.models.cnn import CNN
from tests.fixtures.services import Stack
from tests.support import ROOT

pytestmark = pytest.mark.services
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_recorded_while_training(stack: Stack, run_id: str, n_epochs: int) -> None:
    """One row per epoch, each written as its epoch ended: row k's timestamp is at least epoch k's
    duration after row k-1's (had they been written at the end, they would be microseconds apart)."""
    run, rows = stack.run(run_id), stack.epochs(run_id)
    assert [r.epoch for r in rows] == list(range(1, n_epochs + 1))
    assert all(run.started_at <= r.created_at <= run.finished_at for r in rows)
    for before, after in zip(rows, rows[1:], strict=False):
        assert after.created_at - before.created_at >= timedelta(seconds=after.seconds) - timedelta(
            milliseconds=5)


def _assert_artifacts(stack: Stack, run_id: str) -> dict:
    artifacts = stack.artifacts(run_id)
    assert {name: a.kind for name, a in artifacts.items()} == {
        "checkpoint.pt": "checkpoint", "best.pt": "checkpoint", "loss.png": "plot", "validation.png": "plot"}
    for name, artifact in artifacts.items():
        assert artifact.path == run_key(run_id, name)
        content = stack.store.objects.get_bytes(artifact.path)
        assert artifact.size_bytes == len(content) > 0
        if name.endswith(".png"):
            assert content[:8] == PNG_MAGIC
    path = stack.store.cached_checkpoint(run_id)
    assert path is not None
    return load_checkpoint(path)


def test_postgres_redis_worker_trains_a_cnn_run(make_stack, shared_data) -> None:
    stack = make_stack("postgres")
    (run_id,) = stack.create_runs("cnn", "mnist-8k", epochs=3, limit=300, batch_size=32, learning_rate=0.003)
    stack.enqueue(run_id)
    worker = stack.start_worker()
    worker.wait_ready()

    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())
    assert (run.attempt, run.worker, run.error, run.lease_expires_at) == (1, worker.name, None, None)
    assert run.device == "cpu" or run.device.startswith("cuda:0 (")
    _assert_recorded_while_training(stack, run_id, 3)
    saved = _assert_artifacts(stack, run_id)
    rows = stack.epochs(run_id)

    # The checkpoint's history is what the database holds, epoch by epoch.
    assert saved["epoch"] == 3
    assert [h["val_metric"] for h in saved["history"]] == pytest.approx([r.val_metric for r in rows])
    assert [h["train_loss"] for h in saved["history"]] == pytest.approx([r.train_loss for r in rows])
    assert run.best_val_metric == pytest.approx(max(r.val_metric for r in rows))

    # The final metric equals the saved model's accuracy on the test split, computed here independently.
    model = CNN(n_classes=10, dropout=0.3)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    test = load_images(f"idx:{shared_data / 'mnist-8k'}", shared_data, seed=42).test
    with torch.no_grad():
        predicted = model(test.images[:300]).argmax(dim=1)  # (300,)
    accuracy = (predicted == test.labels[:300]).float().mean().item()
    finals = stack.final_metrics(run_id)
    assert set(finals) == {"test_accuracy", "best_test_accuracy"}
    assert finals["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    vals = [r.val_metric for r in rows]
    assert run.best_epoch == vals.index(max(vals)) + 1

    log = worker.log()
    assert len(re.findall(rf"run {run_id} claimed by {re.escape(worker.name)} on ", log)) == 1
    assert [int(e) for e in re.findall(rf"run {run_id} epoch (\d+)/3: train_loss", log)] == [1, 2, 3]
    assert len(re.findall(rf"run {run_id} finished: succeeded, test_accuracy", log)) == 1


def test_embedded_sqlite_worker_trains_a_seq2seq_run(make_stack) -> None:
    stack = make_stack("sqlite")
    (run_id,) = stack.create_runs("seq2seq", "spa-eng", epochs=2, limit=200, batch_size=32, hidden_size=32,
                                  attention=True)
    worker = stack.start_worker()
    worker.wait_ready()
    stack.enqueue(run_id)

    run = stack.wait_status(run_id)
    assert run.status == "succeeded", (run.error, stack.logs())
    assert (run.attempt, run.worker) == (1, worker.name)
    _assert_recorded_while_training(stack, run_id, 2)
    saved = _assert_artifacts(stack, run_id)
    rows = stack.epochs(run_id)
    assert saved["config"]["data"] == "spa-eng"  # the dataset's name: resumable wherever the data lives
    assert saved["config"]["hidden_size"] == 32 and saved["config"]["attention"] is True
    assert [h["val_metric"] for h in saved["history"]] == pytest.approx([r.val_metric for r in rows])
    assert run.best_val_metric == pytest.approx(min(r.val_metric for r in rows))  # error rate: lower is best
    finals = stack.final_metrics(run_id)
    assert set(finals) == {"test_error_rate", "best_test_error_rate"}
    assert finals["test_error_rate"] == pytest.approx(saved["test"]["error_rate"])
    assert finals["test_error_rate"] >= 0


def test_bad_runs_fail_with_one_line_errors_and_the_worker_goes_on(make_stack) -> None:
    stack = make_stack("sqlite")
    (unknown,) = stack.create_runs("cnn", "no-such-dataset", epochs=1, limit=300, batch_size=32)
    (wrong_kind,) = stack.create_runs("cnn", "spa-eng", epochs=1, limit=300, batch_size=32)
    (good,) = stack.create_runs("cnn", "mnist-8k", epochs=1, limit=300, batch_size=32)
    worker = stack.start_worker()
    worker.wait_ready()
    for run_id in (unknown, wrong_kind, good):
        stack.enqueue(run_id)

    failed = stack.wait_status(unknown)
    assert failed.status == "failed"
    assert failed.error.startswith("DataError: unknown dataset 'no-such-dataset'")
    assert failed.finished_at is not None and failed.attempt == 1

    failed = stack.wait_status(wrong_kind)
    assert failed.status == "failed"
    assert failed.error.startswith("DataError: ") and "cannot train a cnn model" in failed.error

    for run_id in (unknown, wrong_kind):
        error = stack.run(run_id).error
        assert "\n" not in error and len(error) <= 500
        assert stack.epochs(run_id) == [] and stack.artifacts(run_id) == {}
        assert stack.final_metrics(run_id) == {}
    assert "Traceback" in worker.log()  # the traceback is logged, not stored

    # A deterministic failure is not retried, and the same worker goes on to the next run.
    assert stack.wait_status(good).status == "succeeded"
    assert stack.run(unknown).attempt == 1 and stack.run(wrong_kind).attempt == 1
    assert worker.proc.poll() is None


def test_ping_says_whether_the_broker_is_reachable(make_stack) -> None:
    stack = make_stack("postgres")

    def ping(broker_url: str) -> subprocess.CompletedProcess[str]:
        env = {**stack.env, "INKWELL_BROKER_URL": broker_url}
        return subprocess.run([sys.executable, "-m", "worker", "--ping", "--timeout", "3"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)

    up = ping(stack.settings.broker_url)
    assert up.returncode == 0, up.stderr
    assert up.stdout.startswith("broker reachable: redis://") and len(up.stdout.strip().splitlines()) == 1

    down = ping("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert down.returncode == 1
    assert down.stderr.startswith("broker unreachable: redis://127.0.0.1:1/0: ")
    assert len(down.stderr.strip().splitlines()) == 1
