"""Request dependencies: settings, a database session per request, the Celery client and the run named in
the path (404 when there is none). Who may call a route is decided app-wide in api/access.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, HTTPException, Path, Request
from sqlalchemy.orm import Session

from core.models import Run
from core.runs import get_run
from core.settings import Settings
from core.storage import RUN_ID


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


def get_celery(request: Request) -> Celery:
    return request.app.state.celery


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]


def is_id(value: str) -> bool:
    """Whether `value` has the shape of a run or sweep id (32 lowercase hex characters)."""
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def find_run(session: Session, run_id: str) -> Run:
    """The run, or 404 (also for ids that are not 32 hex characters)."""
    run = get_run(session, run_id) if is_id(run_id) else None
    if run is None:
        raise HTTPException(404, f"no run {run_id[:64]!r}")
    return run


# Documented as an id (pattern); any other string is answered 404 like an unknown id, not 422.
IdPath = Annotated[str, Path(json_schema_extra={"pattern": RUN_ID.pattern})]


def get_path_run(run_id: IdPath, session: SessionDep) -> Run:
    return find_run(session, run_id)


RunDep = Annotated[Run, Depends(get_path_run)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
