"""GET /runs/{id}/events: server-sent events follow the database while a fake worker trains."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

import api.events as runs_routes


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runs_routes, "POLL_SECONDS", 0.05)


def sse_events(lines: Iterator[str]) -> Iterator[dict]:
    """Parse an event stream: one dict per event (`event`, `data` decoded, `id`) or comment (`comment`)."""
    fields: dict = {}
    for line in lines:
        if line == "":
            if fields:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def test_stream_reports_each_step_in_order_and_ends_with_the_final_status(client, fake_worker):
    """The worker side takes each next step only after the stream reported the previous one."""
    (run_id,) = fake_worker.create("cnn", epochs=3)
    seen = []
    steps = iter([
        lambda: fake_worker.start(run_id),
        lambda: fake_worker.epoch(run_id, 1, 0.9, 0.5),
        lambda: fake_worker.epoch(run_id, 2, 0.7, 0.6),
        lambda: fake_worker.epoch(run_id, 3, 0.5, 0.75),
        lambda: fake_worker.finish(run_id, test_metric=0.74),
    ])
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines).startswith("retry: ")
        for event in sse_events(lines):
            seen.append(event)
            next(steps, lambda: None)()
    kinds = [(e["event"], e["data"].get("status", e["data"].get("epoch"))) for e in seen]
    assert kinds == [("status", "queued"), ("status", "running"), ("epoch", 1), ("epoch", 2), ("epoch", 3),
                     ("status", "succeeded")]
    assert seen[3]["data"] == {"run_id": run_id, "epoch": 2, "train_loss": 0.7, "val_accuracy": 0.6,
                               "seconds": 0.5, "epochs_total": 3}
    final = seen[-1]["data"]
    assert final["test_metric"] == 0.74 and final["test_metric_name"] == "test_accuracy"
    assert final["epochs_done"] == 3
    assert seen[-1]["id"] == "3-succeeded"


def test_stream_follows_a_worker_thread_and_ends(client, fake_worker):
    (run_id,) = fake_worker.create("seq2seq", epochs=4)

    def work() -> None:
        time.sleep(0.2)
        fake_worker.start(run_id)
        for epoch in range(1, 5):
            time.sleep(0.08)
            fake_worker.epoch(run_id, epoch, 2.0 / epoch, 1.0 - 0.1 * epoch)
        fake_worker.finish(run_id, status="failed", error="boom")

    worker = threading.Thread(target=work)
    started = time.monotonic()
    worker.start()
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        events = [e for e in sse_events(r.iter_lines()) if "event" in e]
    worker.join()
    assert time.monotonic() - started < 20
    epochs = [e["data"]["epoch"] for e in events if e["event"] == "epoch"]
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert epochs == [1, 2, 3, 4]
    assert statuses[0] == "queued" and statuses[-1] == "failed"
    assert len(statuses) == len(set(statuses))  # one event per change
    assert events[-1]["event"] == "status" and events[-1]["data"]["error"] == "boom"
    first_epoch = next(i for i, e in enumerate(events) if e["event"] == "epoch")
    assert "running" in [e["data"]["status"] for e in events[:first_epoch] if e["event"] == "status"]
    assert all("val_error_rate" in e["data"] for e in events if e["event"] == "epoch")


def test_finished_run_streams_its_history_then_ends(client, fake_worker):
    (run_id,) = fake_worker.create("cnn", epochs=2)
    fake_worker.train(run_id, [0.3, 0.4], status="succeeded")
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        events = [e for e in sse_events(r.iter_lines()) if "event" in e]
    assert [e["event"] for e in events] == ["epoch", "epoch", "status"]
    assert events[-1]["data"]["status"] == "succeeded"


def test_last_event_id_resumes_after_that_epoch_and_204_once_the_end_was_seen(client, fake_worker):
    (run_id,) = fake_worker.create("cnn", epochs=3)
    fake_worker.train(run_id, [0.3, 0.4, 0.5])
    with client.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": "2-running"}) as r:
        events = [e for e in sse_events(r.iter_lines()) if "event" in e]
    assert [(e["event"], e["data"].get("epoch", e["data"].get("status"))) for e in events] == [
        ("epoch", 3), ("status", "succeeded")]
    r = client.get(f"/runs/{run_id}/events", headers={"Last-Event-ID": "3-succeeded"})
    assert r.status_code == 204 and r.content == b""


def test_keepalive_while_nothing_happens_and_disconnect_stops_polling(client, fake_worker, monkeypatch):
    monkeypatch.setattr(runs_routes, "KEEPALIVE_SECONDS", 0.2)
    polls = []
    original = runs_routes._snapshot

    def counting(factory, run_id):
        polls.append(time.monotonic())
        return original(factory, run_id)

    monkeypatch.setattr(runs_routes, "_snapshot", counting)
    (run_id,) = fake_worker.create("cnn")
    started = time.monotonic()
    with client.stream("GET", f"/runs/{run_id}/events") as r:
        stream = sse_events(r.iter_lines())
        assert next(stream) == {"retry": str(runs_routes.RETRY_MS)}
        assert next(stream)["event"] == "status"
        assert next(stream) == {"comment": "keep-alive"}
    assert time.monotonic() - started < 10  # closing did not wait for the (never ending) run
    count = len(polls)
    time.sleep(0.4)
    assert len(polls) == count  # nobody polls the database for a client that left


def test_events_for_an_unknown_run_are_404(client):
    assert client.get("/runs/" + "f" * 32 + "/events").status_code == 404
