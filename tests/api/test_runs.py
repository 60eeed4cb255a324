"""GET /runs, /runs/{id}, cancel, metrics, plots, checkpoint download (epochs written as a worker would)."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from PIL import Image

from core import results, runs
from core.storage import checkpoint_key, run_key

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def test_run_shows_progress_latest_epoch_and_timestamps(client, fake_worker):
    (run_id,) = fake_worker.create("cnn", epochs=4)
    body = client.get(f"/runs/{run_id}").json()
    got = (body["status"], body["epochs_done"], body["latest_epoch"], body["attempt"])
    assert got == ("queued", 0, None, 0)
    assert body["started_at"] is None and body["test_metric"] is None
    fake_worker.start(run_id)
    fake_worker.epoch(run_id, 1, 0.9, 0.61, seconds=1.5)
    fake_worker.epoch(run_id, 2, 0.5, 0.72, seconds=1.25)
    body = client.get(f"/runs/{run_id}").json()
    assert body["status"] == "running" and body["worker"] == "test-worker" and body["device"] == "cpu"
    assert body["epochs_done"] == 2 and body["epochs_total"] == 4 and body["attempt"] == 1
    assert body["latest_epoch"] == {"epoch": 2, "train_loss": 0.5, "val_accuracy": 0.72, "seconds": 1.25}
    assert body["best_val_metric"] == 0.72 and body["metric"] == "accuracy"
    for key in ("created_at", "started_at", "heartbeat_at"):
        stamp = datetime.fromisoformat(body[key])
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    fake_worker.finish(run_id, test_metric=0.7)
    body = client.get(f"/runs/{run_id}").json()
    assert body["status"] == "succeeded" and body["test_metric"] == 0.7
    assert body["test_metric_name"] == "test_accuracy" and body["finished_at"] is not None


def test_list_filters_by_status_model_and_sweep(client, fake_worker):
    cnn_a, cnn_b = fake_worker.create("cnn", n=2, sweep_id="ab" * 16)
    (s2s,) = fake_worker.create("seq2seq")
    fake_worker.train(cnn_a, [0.5])

    def ids(**params) -> list[str]:
        r = client.get("/runs", params=params)
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["runs"]]

    assert ids() == [s2s, cnn_b, cnn_a]  # newest first
    assert ids(model="cnn") == [cnn_b, cnn_a]
    assert ids(status="succeeded") == [cnn_a]
    assert ids(status="queued", model="seq2seq") == [s2s]
    assert ids(sweep_id="ab" * 16) == [cnn_b, cnn_a]
    assert ids(limit=1) == [s2s]
    listed = client.get("/runs").json()["runs"]
    assert next(x for x in listed if x["id"] == cnn_a)["latest_epoch"]["val_accuracy"] == 0.5
    assert client.get("/runs", params={"status": "bogus"}).status_code == 422
    assert client.get("/runs", params={"limit": 0}).status_code == 422


BAD_IDS = ["0" * 32, "not-a-run", "ABCDEF" * 5 + "AB", "x" * 300, "%00", "..%2F..%2Fetc"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_unknown_or_malformed_run_ids_are_404(client, bad):
    for path in ("", "/metrics", "/plots/loss.png", "/checkpoint", "/events"):
        r = client.get(f"/runs/{bad}{path}")
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert "detail" in r.json()
    assert client.post(f"/runs/{bad}/cancel").status_code == 404


def test_cancel_queued_at_once_running_by_request_finished_is_409(client, fake_worker):
    queued, running, done = fake_worker.create("cnn", n=3)
    r = client.post(f"/runs/{queued}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert client.post(f"/runs/{queued}/cancel").status_code == 200  # idempotent
    fake_worker.start(running)
    r = client.post(f"/runs/{running}/cancel")
    assert r.status_code == 202
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    with fake_worker.factory() as session:
        assert runs.is_cancel_requested(session, running)
    fake_worker.train(done, [0.4])
    r = client.post(f"/runs/{done}/cancel")
    assert r.status_code == 409 and "succeeded" in r.json()["detail"]
    assert fake_worker.run(done).status == "succeeded"


def test_metrics_for_the_cnn_use_accuracy(client, fake_worker):
    (run_id,) = fake_worker.create("cnn", epochs=3)
    empty = client.get(f"/runs/{run_id}/metrics").json()
    assert empty == {"run_id": run_id, "model": "cnn", "status": "queued", "epochs_total": 3, "epochs": [],
                     "test_accuracy": None}
    fake_worker.start(run_id)
    values = [(0.9, 0.5, 2.0), (0.6, 0.7, 2.5)]
    for epoch, (loss, acc, secs) in enumerate(values, start=1):
        fake_worker.epoch(run_id, epoch, loss, acc, seconds=secs)
    during = client.get(f"/runs/{run_id}/metrics").json()
    assert during["status"] == "running" and during["test_accuracy"] is None
    assert during["epochs"] == [
        {"epoch": i, "train_loss": loss, "val_accuracy": acc, "seconds": secs}
        for i, (loss, acc, secs) in enumerate(values, start=1)
    ]
    fake_worker.finish(run_id, test_metric=0.68)
    after = client.get(f"/runs/{run_id}/metrics").json()
    assert after["status"] == "succeeded" and after["test_accuracy"] == 0.68


def test_metrics_for_seq2seq_use_error_rate(client, fake_worker):
    (run_id,) = fake_worker.create("seq2seq", epochs=2)
    fake_worker.start(run_id)
    fake_worker.epoch(run_id, 1, 2.5, 0.8)
    fake_worker.epoch(run_id, 2, float("nan"), 0.6)  # a non-finite loss is stored as null
    fake_worker.finish(run_id, test_metric=0.65)
    body = client.get(f"/runs/{run_id}/metrics").json()
    assert set(body) == {"run_id", "model", "status", "epochs_total", "epochs", "test_error_rate"}
    assert [(e["epoch"], e["train_loss"], e["val_error_rate"]) for e in body["epochs"]] == [(1, 2.5, 0.8),
                                                                                          (2, None, 0.6)]
    assert all("val_accuracy" not in e for e in body["epochs"])
    assert body["test_error_rate"] == 0.65
    assert client.get(f"/runs/{run_id}").json()["best_val_metric"] == 0.6  # lower is better


def test_plots_are_pngs_that_follow_the_training(client, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    for name in ("loss", "validation"):
        r = client.get(f"/runs/{run_id}/plots/{name}.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["cache-control"] == "no-store"
        assert png_size(r.content)[0] > 100
    before = client.get(f"/runs/{run_id}/plots/loss.png").content
    fake_worker.start(run_id)
    fake_worker.epoch(run_id, 1, 0.9, 0.5)
    fake_worker.epoch(run_id, 2, 0.4, 0.8)
    after = client.get(f"/runs/{run_id}/plots/loss.png").content
    assert after != before  # the "no epochs yet" picture became a curve
    (s2s,) = fake_worker.create("seq2seq")
    fake_worker.train(s2s, [0.9, 0.7])
    assert png_size(client.get(f"/runs/{s2s}/plots/validation.png").content)[0] > 100
    assert client.get(f"/runs/{run_id}/plots/accuracy.png").status_code == 404
    assert client.get(f"/runs/{run_id}/plots/loss.jpg").status_code == 404


def test_checkpoint_download_for_finished_runs_only(client, app, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    fake_worker.start(run_id)
    r = client.get(f"/runs/{run_id}/checkpoint")
    assert r.status_code == 409 and "running" in r.json()["detail"]
    payload = bytes(range(256)) * 10
    app.state.store.objects.put_bytes(checkpoint_key(run_id), payload)
    fake_worker.finish(run_id)
    r = client.get(f"/runs/{run_id}/checkpoint")
    assert r.status_code == 200 and r.content == payload
    assert r.headers["content-type"] == "application/octet-stream"
    assert run_id in r.headers["content-disposition"]
    (other,) = fake_worker.create("cnn")
    fake_worker.train(other, [0.1], status="failed")
    r = client.get(f"/runs/{other}/checkpoint")
    assert r.status_code == 404 and "no checkpoint" in r.json()["detail"]


def test_checkpoint_registered_as_an_artifact_is_served(client, app, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    fake_worker.train(run_id, [0.3])
    app.state.store.objects.put_bytes(run_key(run_id, "final.pt"), b"weights")
    with fake_worker.factory() as session:
        results.add_artifact(session, run_id, "checkpoint", "final.pt", run_key(run_id, "final.pt"), 7)
    assert client.get(f"/runs/{run_id}/checkpoint").content == b"weights"
