"""`python -m api` is local by default: it listens on 127.0.0.1 only, unless INKWELL_HOST says otherwise.

The listening sockets are read from /proc (the process's own socket inodes matched against
/proc/net/tcp and tcp6), and connections are made to loopback addresses only: 127.0.0.2 is this machine
too, so a server bound to 0.0.0.0 would answer there while one bound to 127.0.0.1 refuses.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from core.settings import Settings
from tests.support import ROOT, free_port, wait_for

LISTEN = "0A"  # TCP state of a listening socket in /proc/net/tcp


def _ipv4(word: str) -> str:
    return socket.inet_ntoa(struct.pack("=I", int(word, 16)))  # the kernel prints the address in host order


def _ipv6(words: str) -> str:
    packed = b"".join(struct.pack("=I", int(words[i : i + 8], 16)) for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, packed)


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on (IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, parse in (("/proc/net/tcp", _ipv4), ("/proc/net/tcp6", _ipv6)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == LISTEN and fields[9] in inodes:
                found.add((parse(address), int(port, 16)))
    return found


def test_host_defaults_to_loopback(monkeypatch):
    monkeypatch.delenv("INKWELL_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    monkeypatch.setenv("INKWELL_HOST", "  ")
    assert Settings().host == "127.0.0.1"
    monkeypatch.setenv("INKWELL_HOST", "0.0.0.0")
    assert Settings().host == "0.0.0.0"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux /proc")
@pytest.mark.parametrize("inkwell_host, bound, refused", [(None, "127.0.0.1", "127.0.0.2"),
                                                         ("127.0.0.2", "127.0.0.2", "127.0.0.1")])
def test_python_m_api_listens_where_inkwell_host_says(tmp_path, shared_data, inkwell_host, bound, refused):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INKWELL_")}
    env.update(PORT=str(port), INKWELL_DATABASE_URL=f"sqlite:///{tmp_path / 'inkwell.db'}",
               INKWELL_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.db'}",
               INKWELL_ARTIFACTS_DIR=str(tmp_path / "artifacts"), INKWELL_DATA_DIR=str(shared_data))
    if inkwell_host is not None:
        env["INKWELL_HOST"] = inkwell_host
    migrated = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr

    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        return (tmp_path / "api.log").read_text(errors="replace")[-3000:]

    def serving() -> set[tuple[str, int]]:
        assert proc.poll() is None, output()
        return listening(proc.pid)

    try:
        assert wait_for(serving, "python -m api to listen", 90, 0.2, output) == {(bound, port)}
        with httpx.Client(timeout=10) as client:
            assert client.get(f"http://{bound}:{port}/healthz").status_code == 200
            with pytest.raises(httpx.ConnectError):  # another address of this same machine: nobody there
                client.get(f"http://{refused}:{port}/healthz")
        assert listening(proc.pid) == {(bound, port)}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
