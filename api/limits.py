"""Bounded work: a byte cap on JSON bodies, and a gate in front of inference.

`JsonBodyLimit` (pure ASGI middleware) refuses a JSON body over INKWELL_MAX_BODY_BYTES with 413 and a
JSON error: at once when Content-Length says so, else as soon as the bytes received pass the cap (it
reads no further). Uploads (multipart, image/*) have their own limit (api/image_request.py).

`InferenceAdmission` (pure ASGI middleware) bounds the inference requests in the process, from their first
byte to their answer: beyond INKWELL_INFERENCE_MAX_IN_FLIGHT a new one is answered 503 with `Retry-After` at
once, before its body is read or parsed. Under overload a refusal must cost next to nothing, or refusing
eats the time the accepted requests need (measured: docs/benchmarks.md); and requests piling up in the event
loop never reach the batchers' own queue bound, so this is what keeps the accepted requests' latency bounded.

`InferenceGate` lets `concurrency` requests run model work at once and `waiting` more wait their turn;
beyond that a request is refused at once with 503 and `Retry-After` instead of queueing without limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import HTTPException, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RETRY_AFTER_SECONDS = 1


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


class JsonBodyLimit:
    """Reads a JSON request body itself (at most `limit` bytes) and hands it to the app in one piece."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"detail": f"the JSON body is larger than the limit of {self.limit} bytes "
                                     "(INKWELL_MAX_BODY_BYTES)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)


INFERENCE_PATHS = frozenset({"/predict", "/transliterate", "/activation-maps"})


class InferenceAdmission:
    """At most `limit` inference requests in flight in this process; more get 503 + Retry-After at once."""

    def __init__(self, app: ASGIApp, limit: int, on_reject: Callable[[str], None] | None = None) -> None:
        self.app, self.limit, self.on_reject = app, limit, on_reject
        self.in_flight = 0  # only touched on the event loop: no lock needed

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"{self.in_flight} inference requests are in progress (the limit of this "
                                     "process, INKWELL_INFERENCE_MAX_IN_FLIGHT); retry shortly"}).encode()
        await send({"type": "http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(RETRY_AFTER_SECONDS).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in INFERENCE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if self.on_reject is not None:
                self.on_reject(scope["path"])
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class InferenceGate:
    """At most `concurrency` model calls at once and `waiting` queued; more get 503 + Retry-After."""

    def __init__(self, concurrency: int, waiting: int) -> None:
        self.capacity = concurrency + waiting
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self.admitted = 0  # running or waiting now

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self.admitted >= self.capacity:
                raise HTTPException(503, "the server is busy with other inference requests; retry shortly",
                                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            self.admitted += 1
        try:
            with self._slots:
                yield
        finally:
            with self._lock:
                self.admitted -= 1


def counting_body(request: Request, allowed: int, refuse: Callable[[], Exception]) -> Request:
    """The same request, its body raising `refuse()` as soon as more than `allowed` bytes have arrived
    (an upload over its limit is refused without reading the rest)."""
    receive, seen = request.receive, 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > allowed:
                raise refuse()
        return message

    return Request(request.scope, counted)
