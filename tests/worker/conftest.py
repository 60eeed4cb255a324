"""Real worker processes against real brokers: PostgreSQL + Redis, or the embedded SQLite pair.

Every test gets its own database (a throwaway PostgreSQL database or a SQLite file), its own queue name
and artifacts folder, so reapers and workers of different tests never see each other's runs. Every
worker is started in its own process group and killed in teardown, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core import results
from core import runs as repo
from core.db import make_engine
from core.migrate import upgrade_head
from core.models import Artifact, EpochMetric, Run
from core.queue import enqueue_training, make_celery
from core.settings import Settings
from core.storage import ArtifactStore
from ml.config import TrainConfig
from tests.support import wait_for

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("INKWELL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("INKWELL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")  # this suite's own DB
POLL_TIMEOUT = 120.0  # two shared cores: be patient



class WorkerProcess:
    """`python -m worker` in its own session (process group), output in a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        host = socket.gethostname()
        self.name = f"inkwell-{host}-{self.proc.pid}@{host}"  # what the worker names itself

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = POLL_TIMEOUT) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return f"inkwell worker {self.name} ready" in self.log()

        wait_for(ready, f"worker {self.name} to be ready", timeout, 0.2, lambda: self.log()[-4000:])

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Send `sig` to the worker's whole process group and wait for it to exit."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Teardown: SIGKILL at once (every test has its own queue, so nothing needs handing back)."""
        self.kill(signal.SIGKILL)
        self._log.close()


@dataclass
class Stack:
    """One test's database, broker, queue and artifacts folder, and the workers started on them."""

    env: dict[str, str]
    settings: Settings
    engine: Engine
    app: Celery
    tmp: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def factory(self) -> sessionmaker[Session]:
        return sessionmaker(bind=self.engine, expire_on_commit=False)

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts_dir)

    def start_worker(self, **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess({**self.env, **extra_env}, self.tmp / f"worker-{len(self.workers) + 1}.log")
        self.workers.append(worker)
        return worker

    def create_runs(self, model: str, dataset: str, sweep: list[dict[str, Any]] | None = None,
                    **overrides: Any) -> list[str]:
        """Queue runs the way the API does: config = TrainConfig.to_dict() with data = the dataset name."""
        configs = [TrainConfig.for_model(model, dataset, **{**overrides, **one}).to_dict()
                   for one in (sweep or [{}])]
        sweep_id = uuid.uuid4().hex if sweep else None
        with self.factory() as session:
            return [r.id for r in repo.create_runs(session, configs, model, dataset, sweep_id=sweep_id)]

    def enqueue(self, run_id: str) -> str:
        return enqueue_training(self.app, run_id, self.settings)

    def run(self, run_id: str) -> Run:
        with self.factory() as session:
            run = repo.get_run(session, run_id)
            assert run is not None
            return run

    def epochs(self, run_id: str) -> list[EpochMetric]:
        with self.factory() as session:
            return results.epochs(session, run_id)

    def artifacts(self, run_id: str) -> dict[str, Artifact]:
        with self.factory() as session:
            rows = session.scalars(select(Artifact).where(Artifact.run_id == run_id))
            return {a.name: a for a in rows}

    def final_metrics(self, run_id: str) -> dict[str, float | None]:
        with self.factory() as session:
            return results.final_metrics(session, run_id)

    def request_cancel(self, run_id: str) -> Run | None:
        with self.factory() as session:
            return repo.request_cancel(session, run_id)

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.log()[-3000:]}" for w in self.workers)

    def wait_status(self, run_id: str, statuses: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
                    timeout: float = POLL_TIMEOUT) -> Run:
        run = wait_for(lambda: (r := self.run(run_id)).status in statuses and r,
                       f"run {run_id} in {statuses}", timeout, 0.2, self.logs)
        assert isinstance(run, Run)
        return run

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.app.close()
        self.engine.dispose()


def _worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INKWELL_")}
    env.update(
        INKWELL_DATABASE_URL=settings.database_url, INKWELL_BROKER_URL=settings.broker_url,
        INKWELL_ARTIFACTS_DIR=str(settings.artifacts_dir), INKWELL_DATA_DIR=str(settings.data_dir),
        INKWELL_TRAIN_QUEUE=settings.train_queue, INKWELL_LEASE_SECONDS=str(settings.lease_seconds),
        INKWELL_HEARTBEAT_SECONDS=str(settings.heartbeat_seconds),
        PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",  # two shared cores; two workers may run at once
    )
    return env


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """This suite's Redis database, emptied before and after the session."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """A factory of migrated, uniquely named PostgreSQL databases; all are dropped at the end."""
    created: list[str] = []

    def create() -> str:
        name = f"inkwell_worker_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0].replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
        upgrade_head(url)
        return url

    yield create
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_stack(
    tmp_path: Path, shared_data: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Stack]]:
    """make_stack("postgres" | "sqlite", lease_seconds=..., heartbeat_seconds=...) → a Stack."""
    stacks: list[Stack] = []

    def make(kind: str, lease_seconds: float = 10, heartbeat_seconds: float = 2) -> Stack:
        tmp = tmp_path / f"{kind}-{len(stacks)}"
        tmp.mkdir()
        if kind == "postgres":
            database_url = request.getfixturevalue("pg_database")()
            broker_url = request.getfixturevalue("redis_db")
        elif kind == "sqlite":
            database_url = f"sqlite:///{tmp / 'inkwell.db'}"
            upgrade_head(database_url)
            broker_url = f"sqla+sqlite:///{tmp / 'broker.db'}"
        else:
            raise ValueError(kind)
        settings = Settings(
            database_url=database_url, broker_url=broker_url, artifacts_dir=tmp / "artifacts",
            data_dir=shared_data, train_queue=f"test-{uuid.uuid4().hex[:12]}",
            lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds,
        )
        stack = Stack(_worker_env(settings), settings, make_engine(database_url), make_celery(settings), tmp)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.close()
