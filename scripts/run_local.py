"""`make run`: migrate, then run the API and one Celery worker together; Ctrl-C stops both.

Uses the same entrypoints as docker compose (`alembic upgrade head`, `python -m api`, `python -m worker`).
With no INKWELL_* variables set, everything runs on the embedded default: a SQLite database and a
SQLite-backed Celery broker under ./var, so no server is needed. Set INKWELL_DATABASE_URL and
INKWELL_BROKER_URL to use PostgreSQL and Redis instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    (ROOT / "var").mkdir(exist_ok=True)
    print("inkwell: migrating the database (alembic upgrade head)", flush=True)
    if subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env).returncode:
        print("inkwell: migration failed; see the message above", file=sys.stderr)
        return 1
    procs = {
        name: subprocess.Popen([sys.executable, "-m", name], cwd=ROOT, env=env, start_new_session=True)
        for name in ("api", "worker")
    }
    port = env.get("PORT", "8000")
    print(f"inkwell: API on http://127.0.0.1:{port} (docs at /docs), one worker; Ctrl-C stops both", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    status = 0
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        dead = [name for name, p in procs.items() if p.poll() is not None]
        print(f"inkwell: {', '.join(dead)} exited; stopping the rest", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("\ninkwell: stopping", flush=True)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return status


if __name__ == "__main__":
    sys.exit(main())
