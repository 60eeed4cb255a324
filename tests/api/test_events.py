"""GET /runs/{id}/events: server-sent events follow the database while a fake worker trains."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

# The module that holds the event stream (run_events, _snapshot and its constants): every monkeypatch
# below goes through this one name.
from api import events as events_module
from core import runs
from core.models import utcnow

WAIT = 30.0  # the bound of every wait in this file (two shared cores: generous; never reached when it passes)


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "POLL_SECONDS", 0.05)


class PollCounter:
    """Wraps the stream's database poll (`_snapshot`): counts the polls, knows whether one is running,
    lets a test wait for a number of polls, and holds `exclusive` (when given) while it reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, exclusive: threading.Lock | None = None) -> None:
        self.started = 0
        self.running = 0
        self.changed = threading.Condition()
        self._exclusive = exclusive
        self._original = events_module._snapshot
        monkeypatch.setattr(events_module, "_snapshot", self._poll)

    def _poll(self, factory: Any, run_id: str) -> Any:
        with self.changed:
            self.started += 1
            self.running += 1
            self.changed.notify_all()
        try:
            if self._exclusive is None:
                return self._original(factory, run_id)
            with self._exclusive:
                return self._original(factory, run_id)
        finally:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), f"timed out waiting for {what}"


def end_run_anyway(fake_worker, run_id: str) -> None:
    """Finish the run whatever state it is in (cancelled: its lease is long gone by then), so that a
    stream following it ends and a failing test fails instead of hanging."""
    with fake_worker.factory() as session:
        runs.request_cancel(session, run_id, now=utcnow() + timedelta(days=1))


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


def test_stream_follows_a_worker_thread_and_ends(client, fake_worker, monkeypatch):
    """A worker thread writes in two bursts, each released by what the reader has seen. A burst is
    written while no poll reads (one lock), so a poll sees all of a burst or none of it: several
    changes at once (running and two epochs; two more epochs and the final status), and the stream
    must still report each one, in order, and end."""
    (run_id,) = fake_worker.create("seq2seq", epochs=4)
    go = [threading.Event(), threading.Event()]  # set by the reader: the worker may write its next burst
    burst = threading.Lock()
    PollCounter(monkeypatch, exclusive=burst)
    problems: list[str] = []

    def work() -> None:
        try:
            if not go[0].wait(WAIT):
                problems.append("the stream never reported the queued run")
                return
            with burst:
                fake_worker.start(run_id)
                fake_worker.epoch(run_id, 1, 2.0, 0.9)
                fake_worker.epoch(run_id, 2, 1.0, 0.8)
            if not go[1].wait(WAIT):
                problems.append("the stream never reported epoch 2")
                return
            with burst:
                fake_worker.epoch(run_id, 3, 2.0 / 3, 0.7)
                fake_worker.epoch(run_id, 4, 0.5, 0.6)
                fake_worker.finish(run_id, status="failed", error="boom")
        except BaseException as exc:  # reported by the test below
            problems.append(f"worker thread: {exc!r}")
        finally:
            if not fake_worker.run(run_id).finished:
                end_run_anyway(fake_worker, run_id)

    worker = threading.Thread(target=work)
    started = time.monotonic()
    worker.start()
    events = []
    try:
        with client.stream("GET", f"/runs/{run_id}/events") as r:
            for event in sse_events(r.iter_lines()):
                if "event" not in event:
                    continue
                events.append(event)
                data = event["data"]
                if data.get("status") == "queued":
                    go[0].set()
                if data.get("epoch") == 2:
                    go[1].set()
    finally:
        go[0].set()
        go[1].set()
        worker.join(WAIT)
    assert not worker.is_alive() and problems == []
    assert time.monotonic() - started < 20
    kinds = [(e["event"], e["data"].get("status", e["data"].get("epoch"))) for e in events]
    assert kinds == [("status", "queued"), ("status", "running"), ("epoch", 1), ("epoch", 2), ("epoch", 3),
                     ("epoch", 4), ("status", "failed")]
    assert events[-1]["data"]["error"] == "boom" and events[-1]["data"]["epochs_done"] == 4
    assert events[-1]["id"] == "4-failed"
    assert [e["data"]["val_error_rate"] for e in events if e["event"] == "epoch"] == [0.9, 0.8, 0.7, 0.6]


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


class EndOfRequests:
    """ASGI wrapper: `ended` is set once the handling of an HTTP request (its streaming included) is over."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.ended = threading.Event()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.ended.set()


def test_keepalive_while_nothing_happens_and_disconnect_stops_polling(app, fake_worker, monkeypatch):
    """Polling goes on while the client listens (keep-alives while nothing changes); once the client
    leaves, the request's handling ends (so its polling loop is gone) although the run never finishes."""
    monkeypatch.setattr(events_module, "KEEPALIVE_SECONDS", 0.2)
    polls = PollCounter(monkeypatch)
    (run_id,) = fake_worker.create("cnn")
    tracked = EndOfRequests(app)
    started = time.monotonic()
    with TestClient(tracked) as client:
        with client.stream("GET", f"/runs/{run_id}/events") as r:
            stream = sse_events(r.iter_lines())
            assert next(stream) == {"retry": str(events_module.RETRY_MS)}
            assert next(stream)["event"] == "status"
            assert next(stream) == {"comment": "keep-alive"}
            seen = polls.started
            polls.wait_for(lambda: polls.started >= seen + 3, "the stream to keep polling")  # it is live
            assert not tracked.ended.is_set()
        # Leaving the block disconnected the client: the streaming handler ends, polling loop and all.
        assert tracked.ended.wait(WAIT), "the stream went on after the client left"
        count = polls.started
        assert polls.running == 0
        assert fake_worker.run(run_id).status == "queued"  # the run itself never ended
        assert client.get("/healthz").status_code == 200  # the app still serves
    assert time.monotonic() - started < 10  # closing did not wait for the (never ending) run
    assert polls.started == count  # nobody polled the database for the client that left


def test_events_for_an_unknown_run_are_404(client):
    assert client.get("/runs/" + "f" * 32 + "/events").status_code == 404
