"""docker-compose.yml is valid (checked by docker-compose itself) and wires the services the README promises."""

from __future__ import annotations

import fnmatch
import json
import os
import posixpath
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose_config(env: dict[str, str] | None = None) -> dict:
    """`docker-compose config` (the file as docker-compose resolves it), with `env` instead of os.environ."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    proc = subprocess.run([exe, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config()


def test_services_and_entrypoints(compose):
    services = compose["services"]
    assert set(services) == {"api", "worker", "redis", "postgres", "migrate"}
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["api"]["command"] == ["python", "-m", "api"]
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    for name in ("api", "worker", "migrate"):
        assert services[name]["build"]["context"] == str(ROOT)


def test_startup_order_uses_health_and_the_one_shot_migration(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "api", "worker"):
        assert "healthcheck" in services[name], name
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_worker_reserves_a_gpu_and_services_share_named_volumes(compose):
    worker = compose["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert {"artifacts", "data", "pgdata"} <= set(compose["volumes"])
    for name in ("api", "worker"):
        env = compose["services"][name]["environment"]
        assert env["INKWELL_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["INKWELL_BROKER_URL"].startswith("redis://")
        mounts = {v.split(":")[0] for v in compose["services"][name]["volumes"]}
        assert {"artifacts", "data"} <= mounts


def _published(port: str | dict) -> str:
    """HOST_IP:PUBLISHED:TARGET of a port entry: docker-compose prints the short form ("…/tcp") or a mapping."""
    if isinstance(port, str):
        return port.split("/")[0]
    return f"{port.get('host_ip', '')}:{port['published']}:{port['target']}"


def test_api_listens_on_the_compose_network_but_is_published_on_loopback():
    # Without the variables a user may have exported, so the defaults themselves are checked.
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "INKWELL_PUBLISH_HOST", "INKWELL_HOST")}
    services = compose_config(env)["services"]
    # `python -m api` binds 127.0.0.1 by default: in its container it must bind every interface.
    assert services["api"]["environment"]["INKWELL_HOST"] == "0.0.0.0"
    assert "INKWELL_HOST" not in services["worker"]["environment"]  # the worker listens on nothing
    for name in ("api", "worker", "migrate"):  # the shared variables are still there
        assert services[name]["environment"]["INKWELL_DATABASE_URL"].startswith("postgresql+psycopg://")
    (port,) = services["api"]["ports"]
    assert _published(port) == "127.0.0.1:8000:8000"
    assert not any("ports" in services[name] for name in services if name != "api")  # nothing else published

    env.update(INKWELL_PUBLISH_HOST="0.0.0.0", PORT="8123")
    (port,) = compose_config(env)["services"]["api"]["ports"]
    assert _published(port) == "0.0.0.0:8123:8000"


PACKAGES = ("core", "ml", "api", "worker", "migrations")  # what the three services import or run
EXEC_FORM = {"ADD", "COPY", "RUN", "CMD", "ENTRYPOINT", "SHELL", "HEALTHCHECK", "VOLUME"}  # may take ["a", "b"]


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: keyword (upper case), --flags, arguments, and the line it starts on."""

    keyword: str
    flags: list[str]
    args: list[str]  # exec (JSON array) form: the array; shell form: the words as a POSIX shell splits them
    exec_form: bool
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comment lines dropped (also inside continued instructions),
    backslash continuations joined, leading --flags split off, the JSON array form recognised."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and empty lines never end an instruction that continues
        if not pending:
            start = number
        continued = line.endswith("\\")
        pending.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        keyword, _, rest = " ".join(pending).partition(" ")
        pending = []
        keyword = keyword.upper()
        flags = []
        rest = rest.strip()
        while keyword in ("COPY", "ADD", "RUN") and rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if keyword in EXEC_FORM and rest.startswith("["):
            args = json.loads(rest)
            assert isinstance(args, list) and all(isinstance(a, str) for a in args), f"line {start}: {rest}"
            instructions.append(Instruction(keyword, flags, args, True, start))
        else:
            instructions.append(Instruction(keyword, flags, shlex.split(rest), False, start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def copy_targets(instructions: list[Instruction]) -> list[tuple[int, str, str]]:
    """(index, source, absolute path it lands at) per source of every COPY, following WORKDIR.

    A directory's contents land in the destination itself; a file lands inside the destination when
    that ends with "/" (or is "." or gets several sources), else it is renamed to the destination.
    """
    workdir, out = "/", []
    for i, ins in enumerate(instructions):
        if ins.keyword == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, ins.args[0]))
        elif ins.keyword == "COPY":
            *sources, dest = ins.args
            into = posixpath.normpath(posixpath.join(workdir, dest))
            folder = dest.endswith("/") or dest in (".", "./") or len(sources) > 1
            for src in sources:
                is_file = (ROOT / src).is_file()
                out.append((i, src, posixpath.join(into, posixpath.basename(src)) if is_file and folder else into))
    return out


def test_the_dockerfile_parser_joins_lines_and_reads_both_forms():
    text = """# syntax=docker/dockerfile:1
FROM python:3.11-slim AS base
workdir /app
COPY --chown=1000 --chmod=644 ["requirements.txt", "ml", "a b/"]
RUN pip install \\
    # a comment inside the instruction
    -r requirements.txt \\
 && echo "two  words"

CMD ["python", "-m", "api"]
"""
    parsed = parse_dockerfile(text)
    assert [(i.keyword, i.line) for i in parsed] == [("FROM", 2), ("WORKDIR", 3), ("COPY", 4), ("RUN", 5),
                                                     ("CMD", 10)]
    assert parsed[0].args == ["python:3.11-slim", "AS", "base"]
    copy = parsed[2]
    assert copy.flags == ["--chown=1000", "--chmod=644"]
    assert copy.exec_form and copy.args == ["requirements.txt", "ml", "a b/"]
    assert parsed[3].args == ["pip", "install", "-r", "requirements.txt", "&&", "echo", "two  words"]
    assert not parsed[3].exec_form
    assert parsed[4].exec_form and parsed[4].args == ["python", "-m", "api"]
    assert copy_targets(parsed) == [(2, "requirements.txt", "/app/a b/requirements.txt"), (2, "ml", "/app/a b")]
    with pytest.raises(AssertionError, match="continued"):
        parse_dockerfile("FROM x\nRUN a \\\n")


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


def _dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    parts = Path(path).parts
    return any(fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(parts[0], pat) for pat in patterns)


def test_dockerfile_installs_requirements_and_copies_every_package(dockerfile):
    keywords = [i.keyword for i in dockerfile]
    assert keywords[0] == "FROM" and dockerfile[0].args[0].startswith("python:3.11")  # pyproject: 3.11
    copies = copy_targets(dockerfile)
    landed = {src: dest for _, src, dest in copies}
    for package in PACKAGES:
        assert landed.get(package) == f"/app/{package}", f"{package} is not copied to /app/{package}"
    assert landed.get("alembic.ini") == "/app/alembic.ini"  # alembic runs from /app (the migrate service)
    # Every Python package of the service is in the image (tests and benchmarks stay out).
    service_packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert service_packages <= set(landed), service_packages - set(landed)
    for _, src, _ in copies:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"

    # requirements.txt is installed, from /app, after it is copied and before any code (layer caching).
    installs = [i for i, ins in enumerate(dockerfile) if ins.keyword == "RUN"
                and _shell_has(ins.args, ["pip", "install", "-r", "requirements.txt"])]
    assert len(installs) == 1, "exactly one RUN pip install -r requirements.txt"
    (install,) = installs
    copied_at = {src: i for i, src, _ in copies}
    assert landed["requirements.txt"] == "/app/requirements.txt" and copied_at["requirements.txt"] < install
    early = [src for src in (*PACKAGES, "alembic.ini") if copied_at[src] < install]
    assert not early, f"{early} copied before the requirements are installed (every code change reinstalls)"
    workdirs = [ins for ins in dockerfile[:install] if ins.keyword == "WORKDIR"]
    assert workdirs and workdirs[-1].args == ["/app"]

    # It serves the API by default, as a non-root user, on the port it exposes.
    (cmd,) = [ins for ins in dockerfile if ins.keyword == "CMD"]
    assert cmd.exec_form and cmd.args == ["python", "-m", "api"]
    users = [ins.args[0] for ins in dockerfile if ins.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    env = dict(word.split("=", 1) for ins in dockerfile if ins.keyword == "ENV" for word in ins.args)
    (expose,) = [ins for ins in dockerfile if ins.keyword == "EXPOSE"]
    assert expose.args == [env["PORT"]]
    assert {"INKWELL_ARTIFACTS_DIR", "INKWELL_DATA_DIR"} <= set(env)


def _shell_has(words: list[str], command: list[str]) -> bool:
    """Whether `command` appears as consecutive words of a shell-form RUN."""
    return any(words[i:i + len(command)] == command for i in range(len(words)))
