"""Server-sent events for a run: `epoch` per finished (or rewritten) epoch, `status` per status change.

The stream polls the database (the worker writes there, not to the API), sends a keep-alive comment when
nothing happened for a while, and ends after the run's final status. Event ids are
"<last epoch sent>-<last status sent>", so a client reconnecting with `Last-Event-ID` gets only what it missed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from api.presenters import epoch_out, metric_name
from core.models import EpochMetric, Run
from core.results import epochs, final_metrics
from core.runs import get_run

POLL_SECONDS = 0.5  # how often the event stream looks at the database
KEEPALIVE_SECONDS = 15.0  # a comment line after this long without events (keeps proxies from closing)
RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
EVENT_ID = re.compile(r"^(\d{1,6})-([a-z]{1,16})$")  # "<last epoch sent>-<last status sent>"


def resume_point(last_event_id: str | None, run: Run) -> int | None:
    """The epoch to resume after for a `Last-Event-ID`; None when the client already saw the final status."""
    match = EVENT_ID.fullmatch(last_event_id or "")
    if match is None:
        return 0
    if run.finished and match[2] == run.status:
        return None
    return int(match[1])




def _sse(event: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _status_event(found: Run, rows: list[EpochMetric], finals: dict[str, float | None], last_epoch: int,
                  ) -> str:
    name = f"test_{metric_name(found.model)}"
    data = {
        "run_id": found.id, "status": found.status, "attempt": found.attempt, "error": found.error,
        "cancel_requested": bool(found.cancel_requested), "epochs_done": rows[-1].epoch if rows else 0,
        "epochs_total": found.epochs_total, "test_metric_name": name, "test_metric": finals.get(name),
    }
    return _sse("status", data, f"{last_epoch}-{found.status}")


def _snapshot(factory: sessionmaker[Session], run_id: str) -> tuple[Run, list[EpochMetric], dict] | None:
    """The run, then its epochs (in that order: a finished status implies every epoch is already written)."""
    with factory() as session:
        found = get_run(session, run_id)
        if found is None:
            return None
        rows = epochs(session, run_id)
        finals = final_metrics(session, run_id) if found.finished else {}
        return found, rows, finals


async def run_events(
    request: Request, factory: sessionmaker[Session], run_id: str, after_epoch: int = 0,
) -> AsyncIterator[str]:
    """SSE text: `epoch` per new (or rewritten) epoch, `status` per status change; ends when finished."""
    yield f"retry: {RETRY_MS}\n\n"
    sent: dict[int, tuple] = {}
    last_epoch, last_status = after_epoch, ""
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        snap = await run_in_threadpool(_snapshot, factory, run_id)
        if snap is None:
            return  # the run was deleted
        found, rows, finals = snap
        chunks = []
        if found.status != last_status and not found.finished:  # "running" comes before its epochs
            last_status = found.status
            chunks.append(_status_event(found, rows, finals, last_epoch))
        for row in rows:
            values = (row.train_loss, row.val_metric, row.seconds)
            if row.epoch <= after_epoch or sent.get(row.epoch) == values:
                continue
            sent[row.epoch] = values
            last_epoch = max(last_epoch, row.epoch)
            data = {"run_id": run_id, **epoch_out(found.model, row).model_dump(),
                    "epochs_total": found.epochs_total}
            chunks.append(_sse("epoch", data, f"{last_epoch}-{last_status or 'none'}"))
        if found.status != last_status:  # a finished status comes after the last epoch
            last_status = found.status
            chunks.append(_status_event(found, rows, finals, last_epoch))
        if chunks:
            yield "".join(chunks)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if found.finished:
            return
        await asyncio.sleep(POLL_SECONDS)


