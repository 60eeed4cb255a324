"""SQLAlchemy engine and session factory built from the settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.settings import ensure_sqlite_parent, get_settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Reads pass this so rows already in the session are overwritten: other processes change runs under us.
FRESH = {"populate_existing": True}


def normalize_url(url: str | URL) -> URL:
    """Parse `url`; bare `postgresql://` (and `postgres://`) URLs use the installed psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite setup: foreign keys, WAL (api and worker write concurrently), busy wait."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")  # stays "memory" for in-memory databases
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for `url` with the per-backend settings this project relies on.

    SQLite: usable from any thread, foreign keys on, WAL journal and a busy timeout; the file's
    folder is created. PostgreSQL: connections are pinged before use. `kwargs` go to create_engine.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        ensure_sqlite_parent(parsed.render_as_string(hide_password=False))
        connect_args = {"check_same_thread": False, **kwargs.pop("connect_args", {})}
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    """The process-wide engine for `settings.database_url`."""
    return make_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def get_sessionmaker() -> sessionmaker[Session]:
    """The process-wide session factory bound to `get_engine()`.

    Objects stay readable after commit (expire_on_commit=False) so a Run returned by the
    repository can be used after its session has closed.
    """
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """A session that commits on success, rolls back on error and always closes."""
    session = (factory or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def reset_engine() -> None:
    """Dispose of the cached engine and forget it and its session factory (tests, settings changes)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose()
    get_engine.cache_clear()
    get_sessionmaker.cache_clear()
