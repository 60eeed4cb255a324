"""Who may call what: API keys with scopes, checked for every route in one place.

`INKWELL_API_KEYS="admin:KEY1,infer:KEY2,read:KEY3"` (one `scope:key` pair per entry; a key listed under
several scopes has all of them; the old single `INKWELL_API_KEY` is an admin key). Scopes:

- `read`: runs, metrics, events, plots, sweeps, models, datasets, workers, evaluations, comparisons and the
  report (and `/metrics` unless it is public)
- `infer`: /predict, /activation-maps, /transliterate
- `train`: POST /train, POST /runs/{id}/cancel, POST /datasets (uploads), evaluations (create, cancel) and
  POST /report/reproduce: everything that queues work for the workers
- `admin`: everything, including the checkpoint and artifact downloads, promotion and deleting a dataset

With no key configured nothing is checked (the server listens on 127.0.0.1 by default). With any key set,
every route needs a key of its scope: 401 without a (known) key, 403 with a key of another scope. Open
routes: /healthz, /readyz, the dashboard's page and files, /dashboard/settings, /dashboard/session and
/dashboard/logout (how the dashboard learns a key is needed and hands it over), and the API description
(/openapi.json, /docs, /redoc: public, like the routes' names). Keys are compared in constant time, never
logged and never echoed. A key comes in `X-API-Key`, `Authorization: Bearer …`, or the dashboard's HttpOnly,
SameSite=Strict cookie (so its images, downloads and event streams, which cannot set headers, are
authorised too).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from fastapi import HTTPException, Request
from starlette.routing import Match

SCOPES = ("read", "infer", "train", "admin")
COOKIE = "inkwell_api_key"
OPEN = None  # a route anyone may call

# (method, route template) -> scope. Every route of the app must be here (a test checks it), so a new
# route states who may call it; a route missing from the table needs `admin` (fail closed).
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/"): OPEN,
    ("HEAD", "/"): OPEN,
    ("GET", "/dashboard/settings"): OPEN,
    ("POST", "/dashboard/session"): OPEN,
    ("POST", "/dashboard/logout"): OPEN,
    ("GET", "/static/vendor/plotly.min.js"): OPEN,
    ("HEAD", "/static/vendor/plotly.min.js"): OPEN,
    ("GET", "/static/{relative:path}"): OPEN,
    ("HEAD", "/static/{relative:path}"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/docs/oauth2-redirect"): OPEN,
    ("GET", "/redoc"): OPEN,
    ("GET", "/metrics"): "read",  # OPEN when INKWELL_METRICS_PUBLIC is true
    ("GET", "/runs"): "read",
    ("GET", "/runs/{run_id}"): "read",
    ("GET", "/runs/{run_id}/metrics"): "read",
    ("GET", "/runs/{run_id}/events"): "read",
    ("GET", "/runs/{run_id}/plots/{name}.png"): "read",
    ("GET", "/sweeps/{sweep_id}"): "read",
    ("GET", "/sweeps/{sweep_id}/plot.png"): "read",
    ("GET", "/models"): "read",
    ("GET", "/serving/stats"): "read",
    ("GET", "/datasets"): "read",
    ("GET", "/datasets/{name}"): "read",
    ("GET", "/workers"): "read",
    ("POST", "/datasets"): "train",
    ("DELETE", "/datasets/{name}"): "admin",
    ("GET", "/runs/{run_id}/artifacts"): "read",
    ("GET", "/runs/{run_id}/artifacts/{name}"): "admin",  # the checkpoint is one of them
    ("POST", "/predict"): "infer",
    ("POST", "/activation-maps"): "infer",
    ("POST", "/transliterate"): "infer",
    ("POST", "/train"): "train",
    ("POST", "/runs/{run_id}/cancel"): "train",
    ("GET", "/runs/{run_id}/checkpoint"): "admin",
    ("POST", "/models/{model}/promote"): "admin",
    ("POST", "/runs/{run_id}/evaluations"): "train",
    ("GET", "/runs/{run_id}/evaluations"): "read",
    ("GET", "/evaluations/{evaluation_id}"): "read",
    ("GET", "/evaluations/{evaluation_id}/events"): "read",
    ("POST", "/evaluations/{evaluation_id}/cancel"): "train",
    ("GET", "/compare"): "read",
    ("GET", "/compare/metrics.csv"): "read",
    ("GET", "/compare/metrics.json"): "read",
    ("GET", "/report"): "read",
    ("GET", "/report.pdf"): "read",
    ("GET", "/report/activations.png"): "read",
    ("GET", "/report/decoding.png"): "read",
    ("POST", "/report/reproduce"): "train",
}


def parse_keys(spec: str | None, legacy_admin_key: str | None = None) -> dict[str, frozenset[str]]:
    """`scope:key,scope:key` (and the legacy admin key) -> {key: scopes}; ValueError names a bad entry."""
    keys: dict[str, set[str]] = {}
    for i, entry in enumerate((spec or "").split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        scope, sep, key = entry.partition(":")
        scope, key = scope.strip(), key.strip()
        if not sep or scope not in SCOPES or not key:
            raise ValueError(f"INKWELL_API_KEYS entry {i} must be 'scope:key' with a scope of {', '.join(SCOPES)}")
        keys.setdefault(key, set()).add(scope)
    if legacy_admin_key:
        keys.setdefault(legacy_admin_key, set()).add("admin")
    return {key: frozenset(scopes) for key, scopes in keys.items()}


def scopes_of(given: str | None, keys: Mapping[str, frozenset[str]]) -> frozenset[str] | None:
    """The scopes of key `given` (None when unknown); every configured key is compared, in constant time."""
    found: frozenset[str] | None = None
    encoded = (given or "").encode()
    for key, scopes in keys.items():
        if hmac.compare_digest(encoded, key.encode()) and given:
            found = scopes
    return found


def given_key(request: Request) -> str | None:
    """The key a request carries: X-API-Key, else a Bearer token, else the dashboard's cookie."""
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    if key is None:
        key = request.cookies.get(COOKIE)
    return key


def route_scope(request: Request) -> str | None:
    """The scope the request's route needs (OPEN = None)."""
    route = request.scope.get("route")
    template = getattr(route, "path", None)
    method = request.method
    if template is None:  # not matched through a route: find it
        for candidate in request.app.router.routes:
            if candidate.matches(request.scope)[0] == Match.FULL:
                template = getattr(candidate, "path", None)
                break
    scope = ROUTE_SCOPES.get((method, template), "admin") if template is not None else "admin"
    if template == "/metrics" and request.app.state.settings.metrics_public:
        return OPEN
    return scope


async def authorize(request: Request) -> None:
    """The app-wide dependency: 401 without a known key, 403 with a key lacking the route's scope.

    `async` because it does no I/O: a plain `def` dependency costs every request a threadpool hop."""
    keys: Mapping[str, frozenset[str]] = request.app.state.api_keys
    if not keys:
        return
    needed = route_scope(request)
    if needed is OPEN:
        return
    scopes = scopes_of(given_key(request), keys)
    if scopes is None:
        raise HTTPException(401, "missing or unknown API key: send it in the X-API-Key header",
                            headers={"WWW-Authenticate": "Bearer"})
    if "admin" not in scopes and needed not in scopes:
        raise HTTPException(403, f"this API key does not have the {needed!r} scope this route needs")
