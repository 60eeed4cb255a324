"""Settings: INKWELL_ prefix, PORT, relative paths resolved against the current folder, caching."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.settings import Settings, ensure_dirs, get_settings, reset_settings, sqlite_path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in list(os.environ):
        if name == "PORT" or name.startswith("INKWELL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield
    reset_settings()


def test_defaults_resolve_against_cwd(tmp_path: Path) -> None:
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'inkwell.db'}"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    assert s.artifacts_dir == tmp_path / "var" / "artifacts"
    assert s.data_dir == tmp_path / "data"
    assert (s.result_backend, s.api_key, s.port) == (None, None, 8000)
    assert (s.queue_prefix, s.worker_device) == ("", "auto")
    assert (s.max_upload_bytes, s.max_image_pixels, s.model_cache_size) == (5_000_000, 25_000_000, 4)
    assert (s.heartbeat_seconds, s.lease_seconds) == (10, 60)
    assert not (tmp_path / "var").exists()
    ensure_dirs(s)
    assert (tmp_path / "var").is_dir() and s.artifacts_dir.is_dir()


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INKWELL_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/x")
    monkeypatch.setenv("INKWELL_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("INKWELL_API_KEY", "s3cret")
    monkeypatch.setenv("INKWELL_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("INKWELL_ARTIFACTS_DIR", "out/art")
    monkeypatch.setenv("INKWELL_QUEUE_PREFIX", "team-a-")
    monkeypatch.setenv("INKWELL_WORKER_DEVICE", "cpu")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "99")  # no prefix: ignored
    s = Settings()
    assert s.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/x"
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert (s.api_key, s.max_upload_bytes, s.queue_prefix, s.worker_device) == ("s3cret", 1234, "team-a-", "cpu")
    assert s.artifacts_dir == tmp_path / "out" / "art"
    monkeypatch.setenv("INKWELL_LEASE_SECONDS", "-1")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("INKWELL_LEASE_SECONDS", "60")
    monkeypatch.setenv("INKWELL_WORKER_DEVICE", "tpu")
    with pytest.raises(ValueError, match="worker_device"):
        Settings()


def test_port_from_plain_port_and_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9123")
    assert Settings().port == 9123
    monkeypatch.setenv("INKWELL_PORT", "7001")
    assert Settings().port == 7001  # the prefixed name wins
    assert Settings(port=5555).port == 5555


def test_sqlite_urls_with_query_and_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INKWELL_DATABASE_URL", "sqlite:///db/app.db?timeout=5")
    monkeypatch.setenv("INKWELL_RESULT_BACKEND", "db+sqlite:///res/results.db")
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'db' / 'app.db'}?timeout=5"
    assert sqlite_path(s.database_url) == tmp_path / "db" / "app.db"
    assert s.result_backend == f"db+sqlite:///{tmp_path / 'res' / 'results.db'}"
    ensure_dirs(s)
    assert (tmp_path / "db").is_dir() and (tmp_path / "res").is_dir()
    monkeypatch.setenv("INKWELL_DATABASE_URL", "sqlite://")
    assert Settings().database_url == "sqlite://" and sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")


def test_get_settings_is_cached_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("INKWELL_API_KEY", "changed")
    assert get_settings() is first and first.api_key is None
    reset_settings()
    assert get_settings().api_key == "changed"
