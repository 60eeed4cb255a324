"""Liveness, readiness and Prometheus metrics.

`/readyz` checks the database (the migrated `runs` table answers) and the broker: Redis is pinged,
a SQLAlchemy (`sqla+…`) broker gets a `SELECT 1`, any other transport a kombu connection. The queue
depth on `/metrics` (one `queue` label per training queue: `<prefix>gpu`, `<prefix>cpu`) is LLEN of the queue
for Redis, the visible messages of that queue in kombu's tables for a SQLAlchemy broker, and -1 when it
cannot be told.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from celery import Celery
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, create_engine, inspect, select, text

from api.observability import get_metrics
from api.schemas import Health, Readiness, ServingStats
from core.errors import one_line
from core.models import Run
from core.queue import training_queues
from core.runs import runs_by_status_counts
from core.settings import Settings

log = logging.getLogger("inkwell.api.health")
router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _redis_url(broker_url: str) -> str | None:
    """The first URL of a Redis broker setting (kombu allows `url1;url2` failover lists), else None."""
    first = broker_url.split(";")[0].strip()
    return first if first.startswith(REDIS_SCHEMES) else None


def _sqla_url(broker_url: str) -> str | None:
    """The SQLAlchemy URL behind a kombu `sqla+…` (or `sqlalchemy+…`) broker URL, else None."""
    for prefix in ("sqla+", "sqlalchemy+"):
        if broker_url.startswith(prefix):
            return broker_url[len(prefix):]
    return None


@contextmanager
def _redis_client(url: str) -> Iterator[redis.Redis]:
    timeout = BROKER_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def _broker_engine(request: Request, url: str) -> Engine:
    """One engine per app for a SQLAlchemy broker's database (created on first use)."""
    engine = getattr(request.app.state, "broker_engine", None)
    if engine is None:
        engine = create_engine(url, pool_pre_ping=True)
        request.app.state.broker_engine = engine
    return engine


def check_database(request: Request) -> str:
    """Return "ok", or why the database cannot serve (unreachable, or not migrated)."""
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            conn.execute(select(Run.id).limit(1))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"error: {one_line(exc)}"
    return "ok"


def check_broker(request: Request) -> str:
    """Return "ok", or why the broker cannot be reached."""
    settings: Settings = request.app.state.settings
    celery: Celery = request.app.state.celery
    try:
        if (url := _redis_url(settings.broker_url)) is not None:
            with _redis_client(url) as client:
                client.ping()
        elif (url := _sqla_url(settings.broker_url)) is not None:
            with _broker_engine(request, url).connect() as conn:
                conn.execute(text("SELECT 1"))
        else:
            with celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"error: {one_line(exc)}"
    return "ok"


def queue_depth(request: Request, queue: str) -> int:
    """Messages waiting in training queue `queue`; -1 when unknown (broker down, or a transport we can't count)."""
    settings: Settings = request.app.state.settings
    try:
        if (url := _redis_url(settings.broker_url)) is not None:
            with _redis_client(url) as client:
                return int(client.llen(queue))
        if (url := _sqla_url(settings.broker_url)) is not None:
            return _sqla_queue_depth(_broker_engine(request, url), request.app.state.celery, queue)
    except Exception as exc:  # noqa: BLE001 - the gauge says -1 instead
        log.warning("queue depth unknown: %s", one_line(exc))
    return -1


def _sqla_queue_depth(engine: Engine, celery: Celery, queue: str) -> int:
    options: dict[str, Any] = celery.conf.broker_transport_options or {}
    queue_table = options.get("queue_tablename", "kombu_queue")
    message_table = options.get("message_tablename", "kombu_message")
    if not inspect(engine).has_table(message_table):
        return 0  # kombu creates its tables on the first message
    stmt = text(
        f'SELECT COUNT(*) FROM "{message_table}" m JOIN "{queue_table}" q ON m.queue_id = q.id '
        "WHERE q.name = :name AND m.visible"
    )
    with engine.connect() as conn:
        return int(conn.execute(stmt, {"name": queue}).scalar_one())


@router.get("/healthz", summary="Liveness: the process is up", response_model=Health)
async def healthz() -> Health:  # async: nothing blocking, so no threadpool hop
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: database and broker reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the database or the broker is unreachable"}},
)
def readyz(request: Request) -> Any:
    database, broker = check_database(request), check_broker(request)
    if database == "ok" and broker == "ok":
        return Readiness(status="ready", database=database, broker=broker)
    failed = [name for name, state in (("database", database), ("broker", broker)) if state != "ok"]
    body = Readiness(status="not ready", database=database, broker=broker,
                     detail=f"{' and '.join(failed)} unreachable")
    return JSONResponse(body.model_dump(), status_code=503)


@router.get("/serving/stats", summary="This API process's model serving: queue depth, batch sizes, wait and model "
            "time of recent batches, refusals (per endpoint)", response_model=ServingStats)
async def serving_stats(request: Request) -> ServingStats:
    state = request.app.state
    return ServingStats(endpoints=[b.summary() for b in (state.batchers, state.search_batchers)])


@router.get(
    "/metrics",
    summary="Prometheus metrics: request latency by route, queue depths, runs by status, inference batches",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    m = get_metrics(request.app)
    try:
        with request.app.state.sessionmaker() as session:
            counts = runs_by_status_counts(session)
        for status, count in counts.items():
            m.runs_by_status.labels(status).set(count)
    except Exception as exc:  # noqa: BLE001 - metrics must answer even when the database does not
        log.warning("runs by status unavailable: %s", one_line(exc))
    for queue in training_queues(request.app.state.settings):
        m.queue_depth.labels(queue).set(queue_depth(request, queue))
    for batchers in (request.app.state.batchers, request.app.state.search_batchers):
        m.inference_queue_depth.labels(batchers.endpoint).set(batchers.queue_depth())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
