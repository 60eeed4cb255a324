"""Databases for the core tests: a fresh SQLite file per test, or the session's migrated PostgreSQL
database (tests/fixtures/postgres.py), emptied first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine
from core.migrate import upgrade_head
from tests.fixtures.postgres import empty_tables


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
        empty_tables(eng)
        yield eng


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as s:
        yield s
