"""The whole service as users run it: `python -m api` + `python -m worker` processes on real backends.

Two backends: PostgreSQL + Redis (what docker compose runs) and the embedded default (a SQLite
database and a SQLite-backed Celery broker, what `make run` runs). Each test gets its own database,
queue and artifacts folder; every process is killed at teardown, also when the test fails. The
harness is tests/fixtures/services.py, shared with tests/worker and tests/browser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fixtures.services import Stack, StackService, make_stack, redis_db  # noqa: F401 - fixtures here

pytestmark = pytest.mark.services


@pytest.fixture(params=["postgres", "sqlite"])
def service(request: pytest.FixtureRequest, make_stack: Callable[..., Stack]) -> Iterator[StackService]:  # noqa: F811
    """A running API plus one worker on `request.param`'s backend."""
    stack = make_stack(request.param, lease_seconds=4, heartbeat_seconds=1)
    svc = StackService(stack)
    try:
        svc.api.wait_ready()
        stack.start_worker().wait_ready()
        yield svc
    finally:
        svc.stop()
