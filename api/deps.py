"""Request dependencies: settings, a database session per request, the Celery client, the API key check."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from core.settings import Settings


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


def require_api_key(
    request: Request, x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None
) -> None:
    """Mutating requests need `X-API-Key` (or `Authorization: Bearer …`) when INKWELL_API_KEY is set."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    given = x_api_key
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong API key: send it in the X-API-Key header")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
ApiKey = Depends(require_api_key)
