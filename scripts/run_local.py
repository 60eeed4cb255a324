"""`make run`: migrate, then run the API and one Celery worker together; Ctrl-C stops both.

Uses the same entrypoints as docker compose (`alembic upgrade head`, `python -m api`, `python -m worker`).
With no INKWELL_* variables set, everything runs on the embedded default: a SQLite database and a
SQLite-backed Celery broker under ./var, so no server is needed. Set INKWELL_DATABASE_URL and
INKWELL_BROKER_URL to use PostgreSQL and Redis instead. The API listens on 127.0.0.1 unless
INKWELL_HOST says otherwise.

Stopping: Ctrl-C, SIGTERM or SIGHUP (a closed terminal) send SIGTERM to both, and SIGKILL to what still
runs `--grace` seconds later (default 20: a worker in the middle of a training run finishes it only if it
is that quick; the run's lease then expires and it is trained again later). Nothing outlives the launcher
even when it is killed before it can do that (SIGKILL, a CI timeout):

- each child asks the kernel for SIGTERM when the launcher dies (Linux prctl PR_SET_PDEATHSIG), and
- a watchdog process, in a session of its own, notices the launcher is gone (the pipe it reads from
  closes) and stops the children the way the launcher would have: SIGTERM, then SIGKILL after the grace
  period (a worker in warm shutdown would otherwise finish its training run first). Then it exits.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = ("api", "worker")
GRACE_SECONDS = 20.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _say(message: str) -> None:
    try:
        print(f"inkwell: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # the terminal is gone; stopping matters more than saying so


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` making the child get SIGTERM when this process dies, however it dies; None off Linux.

    The kernel sends the signal when the *thread* that forked the child ends, so children are started
    from the main thread (the launcher starts no other thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded here: the child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before the call above: no signal would come
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def start_time(pid: int) -> str | None:
    """The kernel's start time of a live process `pid` (Linux /proc), to tell it from a later one with the
    same pid; None when it is gone, a zombie, or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (command) ": state, ppid, ..., field 22
    return None if fields[0] in ("Z", "X") else fields[19]


def alive(pid: int, started: str | None) -> bool:
    """Whether `pid` is still the process that had start time `started` (any live `pid` without /proc)."""
    if Path("/proc/self/stat").exists():
        return started is not None and start_time(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # each child leads a session of its own, so its group id is its pid
    except (ProcessLookupError, PermissionError):
        pass


def _watch(read_fd: int, children: dict[str, tuple[int, str | None]], grace: float) -> None:
    """The watchdog: block until the launcher is gone (every write end of the pipe is closed), then stop
    whichever children still run: SIGTERM, SIGKILL after `grace` seconds."""
    os.setsid()  # out of the launcher's process group: a signal to that group does not reach it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the launcher's handler is not for this process
    while os.read(read_fd, 64):
        pass  # nobody writes; the read returns b"" when the launcher exits or is killed
    running = {name: pid for name, (pid, started) in children.items() if alive(pid, started)}
    if not running:
        return  # the launcher stopped them itself
    _say(f"the launcher is gone; stopping {', '.join(running)} (SIGTERM, SIGKILL after {grace:g} s)")
    for pid in running.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(pid, children[name][1]) for name, pid in running.items()):
        time.sleep(0.1)
    for name, pid in running.items():
        if alive(pid, children[name][1]):
            _say(f"{name} did not stop within {grace:g} s; killing it")
            _signal_group(pid, signal.SIGKILL)


def start_watchdog(procs: dict[str, subprocess.Popen], grace: float) -> tuple[int, int]:
    """Fork the watchdog; (its pid, the pipe's write end this launcher holds until it exits)."""
    children = {name: (p.pid, start_time(p.pid)) for name, p in procs.items()}
    read_fd, write_fd = os.pipe()  # not inheritable: the api and worker never hold an end of it
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the watchdog: never returns into the launcher's code
        status = 1
        try:
            os.close(write_fd)
            _watch(read_fd, children, grace)
            status = 0
        except BaseException:
            pass  # nothing may escape into the launcher's code in a forked child
        finally:
            os._exit(status)
    os.close(read_fd)
    return pid, write_fd


def stop_watchdog(pid: int, write_fd: int) -> None:
    """Close our end of the pipe (the watchdog finds the children gone and exits) and reap it."""
    os.close(write_fd)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def api_address(env: dict[str, str]) -> str:
    host = env.get("INKWELL_HOST", "").strip() or "127.0.0.1"
    return f"{host}:{env.get('PORT', '8000')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/run_local.py", description=__doc__.splitlines()[0])
    parser.add_argument("--grace", type=float, default=GRACE_SECONDS,
                        help="seconds the api and worker get to stop after SIGTERM before SIGKILL (default 20)")
    args = parser.parse_args(argv)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)  # the terminal was closed
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    (ROOT / "var").mkdir(exist_ok=True)
    print("inkwell: migrating the database (alembic upgrade head)", flush=True)
    try:
        migrated = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130
    if migrated.returncode:
        print("inkwell: migration failed; see the message above", file=sys.stderr)
        return 1

    procs: dict[str, subprocess.Popen] = {}
    watchdog: tuple[int, int] | None = None
    status = 0
    try:
        preexec = die_with_parent()
        for name in CHILDREN:
            procs[name] = subprocess.Popen([sys.executable, "-m", name], cwd=ROOT, env=env,
                                           start_new_session=True, preexec_fn=preexec)
        watchdog = start_watchdog(procs, args.grace)
        print(f"inkwell: API on http://{api_address(env)} (docs at /docs), one worker; Ctrl-C stops both",
              flush=True)
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
                _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + args.grace
        for p in procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p.pid, signal.SIGKILL)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass  # unkillable for now (stuck in the kernel); reaped by init when it goes
        if watchdog is not None:
            stop_watchdog(*watchdog)
    return status


if __name__ == "__main__":
    sys.exit(main())
