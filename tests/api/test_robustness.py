"""No control-plane route answers a malformed request with a 5xx: garbage ids, bodies, queries and headers."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

GARBAGE_IDS = ["x", "0" * 32, "A" * 32, "g" * 32, "é", "%00", "%2e%2e", "..", "a" * 4000, "1;DROP TABLE runs",
               "%F0%9F%92%A9", " ", "0" * 31 + "%0A"]
GET_ROUTES = ["/runs/{}", "/runs/{}/metrics", "/runs/{}/events", "/runs/{}/plots/loss.png",
              "/runs/{}/plots/{}.png", "/runs/{}/checkpoint", "/sweeps/{}", "/sweeps/{}/plot.png"]
POST_ROUTES = ["/runs/{}/cancel", "/models/{}/promote"]
TRAIN_BODIES = [
    [], "text", 123, None, {"model": None}, {"model": ["cnn"]}, {"model": "cnn", "seed": 2**100},
    {"model": "cnn", "learning_rates": "abc"}, {"model": "cnn", "dataset": "\x00"},
    {"model": "cnn", "dataset": "é" * 255}, {"model": "cnn", "dataset": ""}, {"model": "cnn", "dataset": "."},
    {"model": "cnn", "dataset": "a" * 10_000}, {"model": "cnn", "batch_size": "many"},
    {"model": "cnn", "learning_rate": "fast"}, {"model": "seq2seq", "direction": "up"},
    {"model": "cnn", "learning_rates": [[0.1]]}, {"model": {"nested": {"deeper": [1, 2, 3]}}},
]


@pytest.fixture
def lenient(app) -> TestClient:
    """A client that reports server errors as responses instead of raising them."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_garbage_ids_never_500(lenient, fake_worker):
    fake_worker.create("cnn")
    for bad in GARBAGE_IDS:
        for route in GET_ROUTES:
            path = route.format(bad, bad)
            r = lenient.get(path, headers={"Last-Event-ID": bad.encode()[:60]})
            assert r.status_code < 500, (path, r.status_code, r.text)
        for route in POST_ROUTES:
            path = route.format(bad)
            r = lenient.post(path, json={"run_id": bad})
            assert r.status_code < 500, (path, r.status_code, r.text)


def test_garbage_bodies_and_queries_never_500(lenient, fake_worker):
    (run_id,) = fake_worker.create("cnn")
    for body in TRAIN_BODIES:
        r = lenient.post("/train", json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert "detail" in r.json()
    raw_bodies = [b"\xff\xfe\x00", b"{", b'{"model": "cnn"' * 1000, b"", b"null",
                  b'{"model": "cnn", "epochs": 1e400}', b'{"model": "cnn", "learning_rate": Infinity}']
    for raw in raw_bodies:
        r = lenient.post("/train", content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (raw[:20], r.status_code, r.text)
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = lenient.post("/train", content=b"model=cnn", headers=form)
    assert 400 <= r.status_code < 500
    for key in ("x" * 300, ""):
        r = lenient.post("/train", json={"model": "cnn"}, headers={"Idempotency-Key": key})
        assert r.status_code == 422, (key[:10], r.status_code)
    for params in ({"status": ""}, {"limit": "abc"}, {"limit": -1}, {"model": "gan"}, {"sweep_id": "x" * 100},
                   {"sweep_id": "%00"}, {"limit": 10**30}):
        r = lenient.get("/runs", params=params)
        assert r.status_code < 500, (params, r.status_code, r.text)
    for body in ([], "x", {"run_id": None}, {"run_id": 5}, {"run_id": run_id * 3}, {"run_id": "é" * 64}):
        r = lenient.post("/models/cnn/promote", json=body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert lenient.put("/train", json={}).status_code == 405
    assert lenient.delete(f"/runs/{run_id}").status_code == 405
