"""Shared test settings: where the real data lives, and a small CPU thread budget."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import ROOT

# Fixtures every folder may use: throwaway PostgreSQL databases (pg_database, pg_migrated).
pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.servers"]

# The real data beside the checkout (../shared/data); INKWELL_TEST_DATA overrides it.
SHARED_DATA = Path(os.environ.get("INKWELL_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "mnist-8k").is_dir() or not (SHARED_DATA / "spa-eng").is_dir():
        pytest.fail(f"test data not found at {SHARED_DATA}; set INKWELL_TEST_DATA to the shared data folder")
    return SHARED_DATA
