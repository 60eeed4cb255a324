"""Alembic: `upgrade head` builds exactly the models' schema; `downgrade base` removes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.pool import NullPool

from core.db import make_engine
from core.migrate import ALEMBIC_INI, ROOT, alembic_config
from core.models import Base
from core.settings import reset_settings

MODEL_TABLES = set(Base.metadata.tables)


def _diff(url: str) -> list:
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def _schema(url: str) -> tuple[set[str], set[str], str | None]:
    """(tables, names of indexes/uniques/foreign keys, current revision) as the database reports them."""
    engine = make_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            tables = set(insp.get_table_names())
            names: set[str] = set()
            for table in tables & MODEL_TABLES:
                names |= {i["name"] for i in insp.get_indexes(table)}
                names |= {u["name"] for u in insp.get_unique_constraints(table)}
                names |= {f["name"] for f in insp.get_foreign_keys(table)}
            return tables, names, MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _expected_names() -> set[str]:
    names: set[str] = set()
    for table in Base.metadata.tables.values():
        names |= {str(i.name) for i in table.indexes}
        names |= {str(c.name) for c in table.constraints if c.__class__.__name__ in
                  ("UniqueConstraint", "ForeignKeyConstraint")}
    return names


def _cycle(config: Config, url: str) -> None:
    head = ScriptDirectory.from_config(config).get_current_head()
    command.upgrade(config, "head")
    tables, names, revision = _schema(url)
    assert tables == MODEL_TABLES | {"alembic_version"}
    assert names == _expected_names()  # constraint names follow the naming convention on every backend
    assert revision == head
    assert _diff(url) == []

    command.downgrade(config, "base")
    tables, _, revision = _schema(url)
    assert tables - {"alembic_version"} == set()
    assert revision is None
    # the comparison does see a difference when the schema is missing
    assert {d[1].name for d in _diff(url) if d[0] == "add_table"} == MODEL_TABLES

    command.upgrade(config, "head")
    assert _schema(url)[0] == MODEL_TABLES | {"alembic_version"}
    assert _diff(url) == []


def test_sqlite_cycle_with_url_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INKWELL_DATABASE_URL", "sqlite:///./nested/var/inkwell.db")  # relative, no folder yet
    reset_settings()
    try:
        config = Config(str(ALEMBIC_INI))
        config.attributes["configure_logger"] = False
        _cycle(config, f"sqlite:///{tmp_path / 'nested' / 'var' / 'inkwell.db'}")
    finally:
        reset_settings()
    assert (tmp_path / "nested" / "var" / "inkwell.db").is_file()


@pytest.mark.services
def test_postgresql_cycle_with_url_attribute(pg_database) -> None:
    url = pg_database()
    _cycle(alembic_config(url), url)


def test_alembic_cli_from_repo_root(tmp_path: Path) -> None:
    db = tmp_path / "cli" / "inkwell.db"
    env = {**os.environ, "INKWELL_DATABASE_URL": f"sqlite:///{db}"}
    alembic = Path(sys.executable).with_name("alembic")
    result = subprocess.run([str(alembic), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert _schema(f"sqlite:///{db}")[0] == MODEL_TABLES | {"alembic_version"}
    assert _diff(f"sqlite:///{db}") == []
