"""The worker registry: each worker process keeps one `workers` row fresh; `GET /workers` lists the live ones.

A worker writes its row when it is ready and again every `heartbeat_seconds` (with the run it is working
on), and deletes it when it stops cleanly. A worker that died without stopping leaves a row that ages:
rows not seen for `STALE_BEATS` heartbeats are not listed, and `forget_stale_workers` deletes old ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.db import FRESH
from core.models import Worker, utcnow
from core.upsert import upsert

STALE_BEATS = 3  # a worker not seen for this many heartbeats is not listed as live


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker process says about itself; `queues` are the queue names it consumes."""

    name: str
    host: str
    pid: int
    queues: tuple[str, ...]
    device: str
    started_at: datetime


def record_worker(session: Session, info: WorkerInfo, current_run: str | None, *,
                  now: datetime | None = None) -> None:
    """Write (or refresh) `info`'s row: last seen now, working on `current_run`; commits."""
    now = now or utcnow()
    values = {"name": info.name, "host": info.host, "pid": info.pid, "queues": ",".join(info.queues),
              "device": info.device, "current_run": current_run, "started_at": info.started_at,
              "last_seen_at": now}
    upsert(session, Worker, values, keys=["name"],
           update=["host", "pid", "queues", "device", "current_run", "started_at", "last_seen_at"])
    session.commit()


def remove_worker(session: Session, name: str) -> None:
    """Delete the row of worker `name` (it stopped); commits."""
    session.execute(delete(Worker).where(Worker.name == name))
    session.commit()


def live_workers(session: Session, heartbeat_seconds: float, *, now: datetime | None = None) -> list[Worker]:
    """Workers seen within the last `STALE_BEATS` heartbeats, sorted by name."""
    since = (now or utcnow()) - timedelta(seconds=STALE_BEATS * heartbeat_seconds)
    stmt = select(Worker).where(Worker.last_seen_at >= since).order_by(Worker.name)
    return list(session.scalars(stmt, execution_options=FRESH))


def forget_stale_workers(session: Session, older_than_seconds: float, *, now: datetime | None = None) -> int:
    """Delete rows not seen for `older_than_seconds` (workers that died without stopping); commits."""
    since = (now or utcnow()) - timedelta(seconds=older_than_seconds)
    deleted = session.execute(delete(Worker).where(Worker.last_seen_at < since)).rowcount
    session.commit()
    return deleted
