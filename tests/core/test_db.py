"""Engine setup: SQLite pragmas, UTC timestamps, session_scope commit/rollback."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from core import runs as repo
from core.db import get_engine, make_engine, normalize_url, reset_engine, session_scope
from core.migrate import upgrade_head
from core.models import Run
from core.settings import reset_settings


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'x.db'}")  # parent folder created
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    engine.dispose()


def test_postgres_url_uses_psycopg() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_timestamps_round_trip_as_utc(engine) -> None:
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    plus_two = timezone(timedelta(hours=2))
    with factory() as s:
        run = repo.create_runs(s, [{"epochs": 1}], "cnn", "mnist")[0]
        local = datetime(2024, 5, 1, 14, 30, 0, 123456, tzinfo=plus_two)
        s.get(Run, run.id).heartbeat_at = local
        s.commit()
    with factory() as s:
        stored = s.get(Run, run.id)
        assert stored.heartbeat_at == local and stored.heartbeat_at.utcoffset() == timedelta(0)
        assert stored.heartbeat_at.hour == 12


def test_session_scope_commits_and_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKWELL_DATABASE_URL", f"sqlite:///{tmp_path / 'scope.db'}")
    reset_settings()
    reset_engine()
    try:
        upgrade_head()
        with session_scope() as s:
            rid = repo.create_runs(s, [{"epochs": 2}], "seq2seq", "pairs:x")[0].id
        with pytest.raises(RuntimeError), session_scope() as s:
            s.get(Run, rid).dataset = "changed"
            raise RuntimeError("boom")
        with session_scope() as s:
            assert s.get(Run, rid).dataset == "pairs:x"
        assert str(get_engine().url).endswith("scope.db")
    finally:
        reset_engine()
        reset_settings()
