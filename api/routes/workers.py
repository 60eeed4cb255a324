"""`GET /workers`: the live worker processes, from the worker registry (core/workers.py), not Celery inspect."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, SettingsDep
from api.presenters import worker_out
from api.schemas import WorkerList
from core.workers import STALE_BEATS, live_workers

router = APIRouter(tags=["workers"])


@router.get(
    "/workers",
    summary=f"Live workers (seen within {STALE_BEATS} heartbeats): queues, device and the run each is working on",
    response_model=WorkerList,
)
def workers(session: SessionDep, settings: SettingsDep) -> WorkerList:
    return WorkerList(workers=[worker_out(w) for w in live_workers(session, settings.heartbeat_seconds)])
