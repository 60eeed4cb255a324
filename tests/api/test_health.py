"""/healthz, /readyz, /metrics (latency histogram, runs by status, queue depth) and the OpenAPI docs."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import CLOSED_BROKER

MY_ROUTES = {
    ("/healthz", "get"), ("/readyz", "get"), ("/metrics", "get"), ("/datasets", "get"), ("/train", "post"),
    ("/runs", "get"), ("/runs/{run_id}", "get"), ("/runs/{run_id}/cancel", "post"),
    ("/runs/{run_id}/metrics", "get"), ("/runs/{run_id}/events", "get"),
    ("/runs/{run_id}/plots/{name}.png", "get"), ("/runs/{run_id}/checkpoint", "get"),
    ("/sweeps/{sweep_id}", "get"), ("/sweeps/{sweep_id}/plot.png", "get"),
    ("/models", "get"), ("/models/{model}/promote", "post"),
}


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a Prometheus text page by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


# The SQLAlchemy broker here is a SQLite file whatever the API's database is; the embedded default
# pairs it with a SQLite database, so these broker tests run on SQLite only.
SQLITE_BROKER_TEST = pytest.mark.parametrize("db_backend", ["sqlite"])


@SQLITE_BROKER_TEST
def test_readyz_ok_with_redis_and_with_a_sqlalchemy_broker(client, make_app, tmp_path):
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    with TestClient(make_app(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text


def test_readyz_503_names_the_broker_when_it_is_down(make_app):
    with TestClient(make_app(broker_url=CLOSED_BROKER)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["database"] == "ok" and body["broker"].startswith("error")
    assert "broker" in body["detail"] and "database" not in body["detail"]


def test_readyz_503_names_the_database_when_it_has_no_schema(make_app):
    with TestClient(make_app(migrate=False)) as client:  # a new, empty database: no runs table
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["database"].startswith("error") and r.json()["broker"] == "ok"
    assert "database" in r.json()["detail"]


def test_metrics_histogram_by_route_template_runs_by_status_and_queue_depth(client, fake_worker, queue_len,
                                                                             queue_name):
    ids = [client.post("/train", json={"model": "cnn", "epochs": 1}).json()["run_id"] for _ in range(3)]
    fake_worker.train(ids[0], [0.5])
    client.get(f"/runs/{ids[1]}")
    client.get(f"/runs/{ids[2]}")
    client.get("/runs/" + "0" * 32)
    client.get("/no/such/page")
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    count = "inkwell_http_request_duration_seconds_count"
    assert got[(count, (("method", "GET"), ("route", "/runs/{run_id}"), ("status", "200")))] == 2
    assert got[(count, (("method", "GET"), ("route", "/runs/{run_id}"), ("status", "404")))] == 1
    assert got[(count, (("method", "POST"), ("route", "/train"), ("status", "202")))] == 3
    assert got[(count, (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))] == 1
    assert ids[1] not in r.text  # labelled by template, never by the concrete path
    assert re.search(r'inkwell_http_request_duration_seconds_bucket\{.*le="0.005".*\}', r.text)
    assert got[("inkwell_runs", (("status", "queued"),))] == 2
    assert got[("inkwell_runs", (("status", "succeeded"),))] == 1
    assert got[("inkwell_runs", (("status", "failed"),))] == 0
    assert got[("inkwell_queue_depth", (("queue", queue_name),))] == queue_len() == 3


@SQLITE_BROKER_TEST
def test_queue_depth_for_a_sqlalchemy_broker_counts_kombus_messages(make_app, tmp_path, queue_name):
    app = make_app(broker_url=f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    with TestClient(app) as c:
        depth = ("inkwell_queue_depth", (("queue", queue_name),))
        assert samples(c.get("/metrics").text)[depth] == 0  # no table yet: nothing was ever sent
        for _ in range(2):
            assert c.post("/train", json={"model": "cnn", "epochs": 1}).status_code == 202
        assert samples(c.get("/metrics").text)[depth] == 2


def test_queue_depth_is_minus_one_when_the_broker_is_down(make_app, queue_name):
    with TestClient(make_app(broker_url=CLOSED_BROKER)) as c:
        got = samples(c.get("/metrics").text)
    assert got[("inkwell_queue_depth", (("queue", queue_name),))] == -1


def test_openapi_lists_every_route_with_a_summary(client):
    spec = client.get("/openapi.json").json()
    listed = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert MY_ROUTES <= listed
    for path, method in MY_ROUTES:
        assert spec["paths"][path][method].get("summary"), (path, method)
    train = spec["paths"]["/train"]["post"]
    assert {"202", "422", "503"} <= set(train["responses"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
