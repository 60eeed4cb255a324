"""What the batchers of one endpoint did: batch sizes, time waited in the queue, model time, refusals.

Fed from the batcher threads (`observe_batch`) and the routes (`observe_rejected`); read by `GET /metrics`
(Prometheus histograms, summed over processes by Prometheus itself) and by `GET /serving/stats` (this
process's recent batches with percentiles, drawn on the dashboard's Serving page).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram

RECENT = 2048  # batches kept for the percentiles of /serving/stats
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServingMetrics:
    """The Prometheus side: one set of series per endpoint label."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.batch_size = Histogram("inkwell_inference_batch_size", "Items in one model call (a batch)",
                                    ["endpoint"], buckets=BATCH_SIZE_BUCKETS, registry=registry)
        self.wait = Histogram("inkwell_inference_queue_wait_seconds",
                              "Time the oldest item of a batch waited for the model", ["endpoint"],
                              buckets=SECONDS_BUCKETS, registry=registry)
        self.model = Histogram("inkwell_inference_batch_seconds", "Model time of one batch", ["endpoint"],
                               buckets=SECONDS_BUCKETS, registry=registry)
        self.rejected = Counter("inkwell_inference_rejected", "Requests refused with 503: the queue was full",
                                ["endpoint"], registry=registry)


def _percentiles(values: list[float], scale: float = 1.0) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    arr = np.asarray(values) * scale
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "max": round(float(arr.max()), 3)}


class EndpointStats:
    """One endpoint's batches in this process (thread-safe)."""

    def __init__(self, endpoint: str, metrics: ServingMetrics | None, clock=time.monotonic) -> None:
        self.endpoint, self.metrics, self.clock = endpoint, metrics, clock
        self._lock = threading.Lock()
        self._recent: deque[tuple[float, int, float, float]] = deque(maxlen=RECENT)  # at, size, waited, seconds
        self.batches = self.items = self.rejected = 0

    def observe_batch(self, size: int, waited: float, seconds: float) -> None:
        with self._lock:
            self.batches += 1
            self.items += size
            self._recent.append((self.clock(), size, waited, seconds))
        if self.metrics is not None:
            self.metrics.batch_size.labels(self.endpoint).observe(size)
            self.metrics.wait.labels(self.endpoint).observe(waited)
            self.metrics.model.labels(self.endpoint).observe(seconds)

    def observe_rejected(self) -> None:
        with self._lock:
            self.rejected += 1
        if self.metrics is not None:
            self.metrics.rejected.labels(self.endpoint).inc()

    def summary(self, queue_depth: int, queue_limit: int, max_batch: int) -> dict[str, Any]:
        """This endpoint now: queue, totals, and the recent batches' size and time percentiles."""
        with self._lock:
            recent = list(self._recent)
            batches, items, rejected = self.batches, self.items, self.rejected
        sizes = [r[1] for r in recent]
        histogram = {str(b): 0 for b in BATCH_SIZE_BUCKETS}
        for size in sizes:
            bucket = next((b for b in BATCH_SIZE_BUCKETS if size <= b), BATCH_SIZE_BUCKETS[-1])
            histogram[str(bucket)] += 1
        return {
            "endpoint": self.endpoint,
            "queue_depth": queue_depth,
            "queue_limit": queue_limit,
            "max_batch": max_batch,
            "batches": batches,
            "items": items,
            "rejected": rejected,
            "recent_batches": len(recent),
            "mean_batch_size": round(sum(sizes) / len(sizes), 2) if sizes else None,
            "batch_sizes": histogram,  # recent batches by size bucket: "8" counts sizes 5..8
            "queue_wait_ms": _percentiles([r[2] for r in recent], 1000.0),
            "batch_ms": _percentiles([r[3] for r in recent], 1000.0),
        }
