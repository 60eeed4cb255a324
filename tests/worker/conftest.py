"""Real worker processes against real brokers: PostgreSQL + Redis, or the embedded SQLite pair.

Every test gets its own database (a throwaway PostgreSQL database or a SQLite file), its own queue name
and artifacts folder, so reapers and workers of different tests never see each other's runs. Every
worker is started in its own process group and killed in teardown, also when the test fails. The
harness (Stack, WorkerProcess, make_stack) is tests/fixtures/services.py, shared with tests/e2e.
"""

from __future__ import annotations

from tests.fixtures.services import make_stack, redis_db  # noqa: F401 - fixtures of this folder
