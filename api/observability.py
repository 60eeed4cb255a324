"""Prometheus metrics: a per-app registry, the request latency histogram and the gauges /metrics fills.

The histogram is labelled by route *template* (`/runs/{run_id}`, never the concrete path, so the
number of series stays bounded), method and status code. Requests that match no route share the
label `<unmatched>`. A streamed response (server-sent events) is timed until its last byte.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.serving_stats import ServingMetrics

UNMATCHED = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    """One app's metric objects (a registry per app, so several apps in one process never collide)."""

    registry: CollectorRegistry
    request_latency: Histogram
    runs_by_status: Gauge
    queue_depth: Gauge
    inference_queue_depth: Gauge
    serving: ServingMetrics


def make_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    return Metrics(
        registry=registry,
        request_latency=Histogram(
            "inkwell_http_request_duration_seconds", "HTTP request latency by route template",
            ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry,
        ),
        runs_by_status=Gauge("inkwell_runs", "Training runs by status", ["status"], registry=registry),
        queue_depth=Gauge(
            "inkwell_queue_depth", "Training messages waiting in the broker queue (-1: unknown)", ["queue"],
            registry=registry,
        ),
        inference_queue_depth=Gauge(
            "inkwell_inference_queue_depth", "Requests waiting for a model in this process", ["endpoint"],
            registry=registry,
        ),
        serving=ServingMetrics(registry),
    )


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request (set by the router), else `<unmatched>`."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class LatencyMiddleware:
    """Pure ASGI middleware (streams pass through untouched) timing every HTTP request."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception escaping before a response started ends as a 500
        start = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - start
            labels = (route_template(scope), scope.get("method", ""), str(status))
            self.histogram.labels(*labels).observe(elapsed)


def install_metrics(app: FastAPI, metrics: Metrics | None = None) -> Metrics:
    """Keep the app's metrics (new ones unless given) in `app.state.metrics` and time every request."""
    metrics = metrics or make_metrics()
    app.state.metrics = metrics
    app.add_middleware(LatencyMiddleware, histogram=metrics.request_latency)
    return metrics


def get_metrics(app: FastAPI) -> Metrics:
    """The metrics `install_metrics` created for `app`."""
    return app.state.metrics
