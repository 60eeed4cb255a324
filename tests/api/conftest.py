"""API test fixtures: apps on fresh migrated databases, a Redis test queue per test, a fake worker.

Every test that builds an app (make_app, app, client, fake_worker, make_serving) runs twice: on SQLite
and on PostgreSQL (the `db_backend` parameter; the PostgreSQL variant is marked `services`).
`make_app(**overrides)` builds an app with `create_app(Settings(...))`; the defaults are an empty
migrated database (a new SQLite file under tmp_path; on PostgreSQL the session's migrated database,
emptied, for the test's first app and a copy of the migrated template for any further one, see
tests/fixtures/postgres.py), artifacts in tmp_path, DATA_DIR = the shared data, and the broker
`redis://127.0.0.1:6379/14` with training queues named uniquely for the test (a queue prefix, so
`queue_len()` is exactly what this test queued). `fake_worker` writes what a worker would (claim, epochs, finish).

A test that only makes sense on one database says so with
`@pytest.mark.parametrize("db_backend", ["sqlite"])`, and why, in a comment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from core import results, runs
from core.migrate import upgrade_head
from core.models import Run
from core.settings import Settings
from tests.fixtures.postgres import empty_tables
from tests.support import TEST_PROCESS

TEST_BROKER = "redis://127.0.0.1:6379/14"
CLOSED_BROKER = "redis://127.0.0.1:1/14"  # nothing listens on port 1: connection refused at once
WORKER = "test-worker"


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(TEST_BROKER, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"the API tests need Redis at {TEST_BROKER}: {exc}")
    yield client
    client.close()


@pytest.fixture
def queue_prefix() -> str:
    """This test's INKWELL_QUEUE_PREFIX: its training queues are `<prefix>gpu` and `<prefix>cpu`."""
    return f"test-train-{uuid.uuid4().hex[:12]}-"


@pytest.fixture
def queue_name(queue_prefix: str) -> str:
    """This test's gpu queue. A run asking for any device (the default) has one message there and one in
    the cpu queue."""
    return f"{queue_prefix}gpu"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def db_backend(request: pytest.FixtureRequest) -> str:
    """The database the test's apps use: "sqlite" or "postgresql"."""
    return request.param


@pytest.fixture
def make_app(
    tmp_path: Path, shared_data: Path, queue_prefix: str, redis_client: redis.Redis, db_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., FastAPI]]:
    """A factory of apps, each on its own database of `db_backend`, empty and migrated (unless
    migrate=False: no schema at all); keyword arguments override Settings."""
    made: list[FastAPI] = []

    def make(migrate: bool = True, **overrides: Any) -> FastAPI:
        root = tmp_path / f"app{len(made)}"
        if db_backend == "postgresql" and migrate and not made:  # the session's migrated database, emptied
            shared = request.getfixturevalue("pg_migrated")
            empty_tables(shared)
            database_url = shared.url.render_as_string(hide_password=False)
        elif db_backend == "postgresql":  # a further app of this test: a database of its own
            database_url = request.getfixturevalue("pg_database")(migrated=migrate)
        else:
            database_url = f"sqlite:///{root / 'inkwell.db'}"
            if migrate:
                upgrade_head(database_url)
        values: dict[str, Any] = {
            "database_url": database_url, "broker_url": TEST_BROKER, "artifacts_dir": root / "artifacts",
            "cache_dir": root / "cache",
            "data_dir": shared_data, "queue_prefix": queue_prefix, "api_key": None, **TEST_PROCESS, **overrides,
        }
        app = create_app(Settings(**values))
        made.append(app)
        assert app.state.engine.dialect.name == db_backend
        return app

    yield make
    for app in made:
        app.state.engine.dispose()
        if engine := getattr(app.state, "broker_engine", None):
            engine.dispose()
    for device in ("gpu", "cpu"):
        queue = f"{queue_prefix}{device}"
        redis_client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def queue_len(redis_client: redis.Redis, queue_prefix: str) -> Callable[..., int]:
    """queue_len(device="gpu"): how many messages wait in this test's training queue of `device`."""
    return lambda device="gpu": int(redis_client.llen(f"{queue_prefix}{device}"))


class FakeWorker:
    """Writes to the database what a worker writes while training (no Celery, no model)."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def create(self, model: str = "cnn", dataset: str | None = None, n: int = 1, sweep_id: str | None = None,
               **config: Any) -> list[str]:
        """Queued runs made directly in the database (nothing sent to the broker)."""
        dataset = dataset or ("mnist-8k" if model == "cnn" else "spa-eng")
        configs = [{"model": model, "data": dataset, "epochs": 3, "learning_rate": 0.001 * (i + 1), **config}
                   for i in range(n)]
        with self.factory() as session:
            return [r.id for r in runs.create_runs(session, configs, model, dataset, sweep_id=sweep_id)]

    def start(self, run_id: str) -> Run:
        with self.factory() as session:
            run = runs.claim_run(session, run_id, WORKER, "cpu", 600)
        assert run is not None, f"could not claim {run_id}"
        return run

    def epoch(self, run_id: str, epoch: int, train_loss: float | None, val_metric: float | None,
              seconds: float = 0.5) -> None:
        with self.factory() as session:
            results.record_epoch(session, run_id, epoch, train_loss, val_metric, seconds)

    def finish(self, run_id: str, status: str = "succeeded", test_metric: float | None = None,
               error: str | None = None) -> Run:
        with self.factory() as session:
            if test_metric is not None:
                model = runs.get_run(session, run_id).model
                name = "test_accuracy" if model == "cnn" else "test_error_rate"
                results.record_final(session, run_id, name, test_metric)
            run = runs.finish_run(session, run_id, status, error=error, worker=WORKER)
        assert run is not None
        return run

    def train(self, run_id: str, val_metrics: list[float], status: str = "succeeded",
              test_metric: float | None = None) -> None:
        """Claim, one epoch per validation value (loss 1/epoch), then finish."""
        self.start(run_id)
        for epoch, value in enumerate(val_metrics, start=1):
            self.epoch(run_id, epoch, 1.0 / epoch, value)
        self.finish(run_id, status, test_metric)

    def run(self, run_id: str) -> Run:
        with self.factory() as session:
            run = runs.get_run(session, run_id)
        assert run is not None
        return run


@pytest.fixture
def fake_worker(app: FastAPI) -> FakeWorker:
    return FakeWorker(app.state.sessionmaker)
