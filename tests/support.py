"""Small helpers the process-level test suites share (worker, e2e, browser, make run)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]  # the repository (where `python -m api` and alembic run)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 120.0, interval: float = 0.1,
             on_timeout: Callable[[], str] | None = None) -> Any:
    """Poll until `predicate()` is truthy and return its value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{extra}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signal_group(proc: subprocess.Popen, sig: int, timeout: float) -> None:
    """Send `sig` to the process's whole group (started with start_new_session=True) and wait for it to
    exit; SIGKILL the group if it is still there after `timeout` s."""
    for current, wait in ((sig, timeout), (signal.SIGKILL, 10.0)):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, current)
            except ProcessLookupError:
                pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Settings every test app shares: leave the test process's torch threads and garbage collector alone, and
# check the serving run on every request (tests change runs behind the app's back, then ask at once;
# tests/api/test_serving_view.py covers the time-bounded view of the default setting).
TEST_PROCESS = {"inference_threads": 0, "gc_freeze": False, "serving_refresh_seconds": 0}
