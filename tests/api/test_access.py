"""Who may call what: every route x {no key, wrong key, each scope} answers the documented status."""

from __future__ import annotations

import uuid

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.access import COOKIE, OPEN, ROUTE_SCOPES, SCOPES, parse_keys, scopes_of

KEYS = {scope: f"{scope}-key-{uuid.uuid4().hex}" for scope in SCOPES}
SPEC = ",".join(f"{scope}:{key}" for scope, key in KEYS.items())
RUN = "0" * 32
# A concrete request for every route template (bodies may be invalid: auth comes before validation).
CALLS: dict[tuple[str, str], tuple[str, dict]] = {
    ("GET", "/runs/{run_id}"): (f"/runs/{RUN}", {}),
    ("GET", "/runs/{run_id}/metrics"): (f"/runs/{RUN}/metrics", {}),
    ("GET", "/runs/{run_id}/events"): (f"/runs/{RUN}/events", {}),
    ("GET", "/runs/{run_id}/plots/{name}.png"): (f"/runs/{RUN}/plots/loss.png", {}),
    ("GET", "/runs/{run_id}/checkpoint"): (f"/runs/{RUN}/checkpoint", {}),
    ("POST", "/runs/{run_id}/cancel"): (f"/runs/{RUN}/cancel", {}),
    ("GET", "/sweeps/{sweep_id}"): (f"/sweeps/{RUN}", {}),
    ("GET", "/sweeps/{sweep_id}/plot.png"): (f"/sweeps/{RUN}/plot.png", {}),
    ("POST", "/models/{model}/promote"): ("/models/cnn/promote", {"json": {"run_id": RUN}}),
    ("POST", "/train"): ("/train", {"json": {"model": "no-such-kind"}}),
    ("POST", "/predict"): ("/predict", {"json": {"pixels": []}}),
    ("POST", "/activation-maps"): ("/activation-maps", {"json": {"pixels": []}}),
    ("POST", "/transliterate"): ("/transliterate", {"json": {}}),
    ("GET", "/static/{relative:path}"): ("/static/index.html", {}),
    ("HEAD", "/static/{relative:path}"): ("/static/index.html", {}),
    ("POST", "/dashboard/session"): ("/dashboard/session", {"json": {"api_key": KEYS["read"]}}),
}
GUARDED = sorted(k for k, scope in ROUTE_SCOPES.items() if scope is not OPEN)


def _call(client: TestClient, method: str, template: str, headers: dict[str, str] | None = None):
    path, extra = CALLS.get((method, template), (template, {}))
    return client.request(method, path, headers=headers or {}, **extra)


@pytest.fixture
def keyed(make_app):
    with TestClient(make_app(api_keys=SPEC)) as client:
        yield client


# The documented scopes (README "Access"), written out here so that a change to the table is a decision.
DOCUMENTED = {
    "read": {"/runs", "/runs/{run_id}", "/runs/{run_id}/metrics", "/runs/{run_id}/events",
             "/runs/{run_id}/plots/{name}.png", "/sweeps/{sweep_id}", "/sweeps/{sweep_id}/plot.png", "/models",
             "/datasets", "/datasets/{name}", "/runs/{run_id}/artifacts", "/metrics", "/serving/stats", "/workers",
             "/runs/{run_id}/evaluations", "/evaluations/{evaluation_id}", "/evaluations/{evaluation_id}/events",
             "/compare", "/compare/metrics.csv", "/compare/metrics.json", "/report", "/report.pdf",
             "/report/activations.png", "/report/decoding.png"},
    "infer": {"/predict", "/activation-maps", "/transliterate"},
    "train": {"/train", "/runs/{run_id}/cancel", "/datasets",  # POST /datasets: an upload
              "/runs/{run_id}/evaluations", "/evaluations/{evaluation_id}/cancel", "/report/reproduce"},
    "admin": {"/runs/{run_id}/checkpoint", "/runs/{run_id}/artifacts/{name}", "/models/{model}/promote",
              "/datasets/{name}"},  # DELETE /datasets/{name}
}


def test_the_scope_table_is_the_documented_one() -> None:
    table = {scope: {t for (_, t), s in ROUTE_SCOPES.items() if s == scope} for scope in SCOPES}
    assert table == DOCUMENTED
    opened = {t for (_, t), s in ROUTE_SCOPES.items() if s is OPEN}
    assert opened == {"/healthz", "/readyz", "/", "/dashboard/settings", "/dashboard/session", "/dashboard/logout",
                      "/static/vendor/plotly.min.js", "/static/{relative:path}", "/openapi.json", "/docs",
                      "/docs/oauth2-redirect", "/redoc"}


def test_every_route_of_the_app_states_its_scope(app) -> None:
    served = {(method, route.path) for route in app.routes if isinstance(route, APIRoute) for method in route.methods}
    assert served - set(ROUTE_SCOPES) == set(), "add these routes to api.access.ROUTE_SCOPES"


@pytest.mark.parametrize("method, template", GUARDED)
def test_guarded_route_by_key(keyed: TestClient, method: str, template: str) -> None:
    needed = ROUTE_SCOPES[(method, template)]
    missing = _call(keyed, method, template)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"]
    assert _call(keyed, method, template, {"X-API-Key": "wrong"}).status_code == 401
    for scope, key in KEYS.items():
        response = _call(keyed, method, template, {"X-API-Key": key})
        body = response.text
        assert key not in body  # a key is never echoed
        if scope in (needed, "admin"):
            assert response.status_code not in (401, 403), (scope, response.status_code, body)
        else:
            assert response.status_code == 403, (scope, response.status_code, body)
            assert needed in response.json()["detail"]
    bearer = _call(keyed, method, template, {"Authorization": f"Bearer {KEYS['admin']}"})
    assert bearer.status_code not in (401, 403)


@pytest.mark.parametrize("method, template", sorted(k for k, s in ROUTE_SCOPES.items() if s is OPEN))
def test_open_routes_need_no_key(keyed: TestClient, method: str, template: str) -> None:
    response = _call(keyed, method, template)
    assert response.status_code not in (401, 403), response.text


def test_without_keys_nothing_is_checked(client) -> None:
    assert client.get("/runs").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/dashboard/settings").json()["api_key_required"] is False


def test_metrics_can_be_made_public(make_app) -> None:
    with TestClient(make_app(api_keys=SPEC, metrics_public=True)) as client:
        assert client.get("/metrics").status_code == 200
        assert KEYS["read"] not in client.get("/metrics").text
        assert client.get("/runs").status_code == 401


def test_the_dashboard_session_cookie_carries_the_key(keyed: TestClient) -> None:
    assert keyed.get("/dashboard/settings").json()["api_key_required"] is True
    refused = keyed.post("/dashboard/session", json={"api_key": "wrong"})
    assert refused.status_code == 401 and COOKIE not in refused.cookies
    opened = keyed.post("/dashboard/session", json={"api_key": KEYS["read"]})
    assert opened.status_code == 200 and opened.json() == {"scopes": ["read"]}
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert keyed.get("/runs").status_code == 200  # the client keeps the cookie, as a browser does
    assert keyed.post("/train", json={"model": "cnn"}).status_code == 403  # a read key cannot train
    assert keyed.post("/dashboard/logout").status_code == 204
    keyed.cookies.clear()
    assert keyed.get("/runs").status_code == 401


def test_key_parsing_and_constant_time_lookup() -> None:
    keys = parse_keys("read:a, infer:b ,read:b", legacy_admin_key="root")
    assert keys == {"a": {"read"}, "b": {"infer", "read"}, "root": {"admin"}}
    assert scopes_of("b", keys) == {"infer", "read"} and scopes_of("c", keys) is None
    assert scopes_of("", keys) is None and scopes_of(None, keys) is None
    for bad in ("read", "owner:x", "read:", ":x"):
        with pytest.raises(ValueError, match="scope:key"):
            parse_keys(bad)
    assert parse_keys(None) == {} and parse_keys(" , ") == {}
