"""Databases for the core tests: a fresh SQLite file per test, throwaway PostgreSQL databases per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.migrate import upgrade_head

# Where throwaway databases are created from (trust auth on this machine).
PG_ADMIN_URL = os.environ.get("INKWELL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = ("promoted_models", "artifacts", "final_metrics", "epoch_metrics", "runs")


def _sqla_url(conninfo: str, dbname: str) -> str:
    base = conninfo.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """A factory of uniquely named, empty PostgreSQL databases; all are dropped at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"inkwell_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _sqla_url(PG_ADMIN_URL, name)

    yield create
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_migrated(pg_database: Callable[[], str]) -> Iterator[Engine]:
    """One migrated PostgreSQL database shared by the repository tests (emptied between tests)."""
    url = pg_database()
    upgrade_head(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """A migrated database, on SQLite (a fresh file) and on PostgreSQL (emptied first)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'inkwell.db'}"
        upgrade_head(url)
        eng = make_engine(url)
        yield eng
        eng.dispose()
    else:
        eng = request.getfixturevalue("pg_migrated")
        _empty(eng)
        yield eng


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as s:
        yield s
