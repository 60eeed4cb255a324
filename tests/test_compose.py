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


def compose_config(env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()) -> dict:
    """`docker-compose config` (the file as docker-compose resolves it), with `env` instead of os.environ
    and the services of `profiles` enabled too."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    proc = subprocess.run([exe, *flags, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    # Only the services `up` starts: those with no `profiles`, or one of the enabled ones. docker-compose v2's
    # `config` already leaves the others out; v1's prints every service with its `profiles`.
    config["services"] = {name: service for name, service in config["services"].items()
                          if not service.get("profiles") or set(service["profiles"]) & set(profiles)}
    return config


def _without(*names: str) -> dict[str, str]:
    """os.environ without `names`, so the file's own defaults are what gets checked."""
    return {k: v for k, v in os.environ.items() if k not in names}


AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
INKWELL = ("migrate", "api", "worker", "worker-gpu")  # the services that run the inkwell image
WORKERS = ("worker", "worker-gpu")


@pytest.fixture(scope="module")
def compose() -> dict:
    return compose_config(_without(*AWS_VARS, "INKWELL_QUEUE_PREFIX"))


@pytest.fixture(scope="module")
def compose_gpu() -> dict:
    """The file with `--profile gpu`: every service, the GPU worker included."""
    return compose_config(_without(*AWS_VARS, "INKWELL_QUEUE_PREFIX"), profiles=("gpu",))


def test_services_and_entrypoints(compose, compose_gpu):
    services = compose["services"]
    assert set(services) == {"api", "worker", "redis", "postgres", "migrate", "objectstore"}
    assert set(compose_gpu["services"]) == set(services) | {"worker-gpu"}
    services = compose_gpu["services"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["api"]["command"] == ["python", "-m", "api"]
    for name in WORKERS:
        assert services[name]["command"] == ["python", "-m", "worker"]
    for name in INKWELL:
        assert services[name]["build"]["context"] == str(ROOT)
        assert services[name]["image"] == "inkwell:latest"  # one image, built once


def test_the_gpu_worker_is_only_in_the_gpu_profile(compose, compose_gpu):
    # A plain `docker compose up` must work on a machine without a GPU: no service of it asks for one.
    assert "worker-gpu" not in compose["services"]
    for name, service in compose["services"].items():
        assert "profiles" not in service, name
        assert "deploy" not in service, f"{name} reserves devices in the default stack"
    assert compose_gpu["services"]["worker-gpu"]["profiles"] == ["gpu"]


def test_gpu_worker_reserves_an_nvidia_gpu_and_the_cpu_worker_does_not(compose_gpu):
    services = compose_gpu["services"]
    gpu, cpu = services["worker-gpu"], services["worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert str(device.get("count", "")) in ("1", "all") or device.get("device_ids")
    assert gpu["environment"]["INKWELL_WORKER_DEVICE"] == "gpu"
    assert "deploy" not in cpu
    assert cpu["environment"]["INKWELL_WORKER_DEVICE"] == "cpu"
    # Otherwise the two workers are the same service: same command, health, shutdown and dependencies.
    for key in ("command", "healthcheck", "stop_grace_period", "depends_on", "restart"):
        assert gpu[key] == cpu[key], key
    same = {k: v for k, v in gpu["environment"].items() if k != "INKWELL_WORKER_DEVICE"}
    assert same == {k: v for k, v in cpu["environment"].items() if k != "INKWELL_WORKER_DEVICE"}


def test_startup_order_uses_health_and_the_one_shot_migration(compose_gpu):
    services = compose_gpu["services"]
    for name in ("postgres", "redis", "objectstore", "api", *WORKERS):
        assert "healthcheck" in services[name], name
    for name in ("api", *WORKERS):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        for needed in ("postgres", "redis", "objectstore"):
            assert deps[needed]["condition"] == "service_healthy", (name, needed)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_object_store_is_seaweedfs_s3_with_a_healthcheck_and_its_own_volume(compose):
    store = compose["services"]["objectstore"]
    image, _, tag = store["image"].partition(":")
    assert image == "chrislusf/seaweedfs" and tag and tag != "latest"  # a pinned release
    command = store["command"]
    assert command[:2] == ["server", "-s3"]
    port = next((a.split("=", 1)[1] for a in command if a.startswith("-s3.port=")), "8333")
    test = store["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and any(f":{port}/" in word for word in test), test
    assert dict(map(_mount, store["volumes"])) == {"objectstore": "/data"}  # the image keeps its data in /data
    assert "objectstore" in compose["volumes"]
    assert "ports" not in store  # reached over the compose network only
    # It accepts exactly the credentials the inkwell services sign with (the defaults: test values).
    inkwell = compose["services"]["api"]["environment"]
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert store["environment"][var] == inkwell[var] != ""
    endpoint = inkwell["INKWELL_S3_ENDPOINT_URL"]
    assert endpoint == f"http://objectstore:{port}"


def test_every_inkwell_service_has_the_s3_settings_and_its_own_cache(compose_gpu):
    for name in INKWELL:
        env = compose_gpu["services"][name]["environment"]
        assert env["INKWELL_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert env["INKWELL_BROKER_URL"].startswith("redis://"), name
        assert env["INKWELL_ARTIFACTS_URL"] == "s3://inkwell/artifacts", name
        assert env["INKWELL_S3_ENDPOINT_URL"].startswith("http://objectstore:"), name
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"], name
        cache = env["INKWELL_CACHE_DIR"]
        assert cache.startswith("/"), name
        # The cache is the container's own: no volume is mounted on it or above it.
        for volume in compose_gpu["services"][name].get("volumes", []):
            _, target = _mount(volume)
            assert not (cache + "/").startswith(target.rstrip("/") + "/"), (name, volume)


def test_s3_credentials_are_test_values_unless_exported():
    env = _without(*AWS_VARS)
    env.update(AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="s3cr3t", AWS_DEFAULT_REGION="eu-west-3")
    services = compose_config(env, profiles=("gpu",))["services"]
    for name in (*INKWELL, "objectstore"):
        assert services[name]["environment"]["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE", name
        assert services[name]["environment"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t", name
    for name in INKWELL:
        assert services[name]["environment"]["AWS_DEFAULT_REGION"] == "eu-west-3", name


def _mount(volume: str | dict) -> tuple[str, str]:
    """(source, target) of a volume entry: docker-compose v1 prints "source:target[:mode]" (an anonymous
    volume is just "target"), v2 a mapping. The source of an anonymous volume is ""."""
    if isinstance(volume, dict):
        return volume.get("source") or "", volume["target"]
    parts = volume.split(":")
    return ("", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def _volume_sources(service: dict) -> set[str]:
    """Named volumes and host paths mounted into a service (not anonymous volumes: they are its own)."""
    return {source for source, _ in map(_mount, service.get("volumes", [])) if source}


def test_no_disk_is_shared_between_the_api_and_the_workers(compose_gpu):
    # Workers may run on other machines: they share nothing with the API or each other but the database,
    # the broker and the object store. A named volume would also be shared by every replica of a scaled
    # worker, so a worker mounts none at all.
    services = compose_gpu["services"]
    for name in WORKERS:
        assert not _volume_sources(services[name]), f"{name} mounts {_volume_sources(services[name])}"
        assert not services[name].get("volumes_from"), name
    assert not _volume_sources(services["api"]) & set().union(*(_volume_sources(services[n]) for n in WORKERS))
    # The stores keep their data on volumes no inkwell service sees.
    inkwell_mounts = set().union(*(_volume_sources(services[n]) for n in INKWELL))
    for store in ("postgres", "redis", "objectstore"):
        assert not _volume_sources(services[store]) & inkwell_mounts, store
    # The old shared folders are gone.
    assert not {"artifacts", "data"} & set(compose_gpu.get("volumes", {}))


def test_queue_prefix_reaches_the_api_and_every_worker():
    env = _without("INKWELL_QUEUE_PREFIX")
    env["INKWELL_QUEUE_PREFIX"] = "team-a-"
    services = compose_config(env, profiles=("gpu",))["services"]
    for name in ("api", *WORKERS):
        assert services[name]["environment"]["INKWELL_QUEUE_PREFIX"] == "team-a-", name


def _published(port: str | dict) -> str:
    """HOST_IP:PUBLISHED:TARGET of a port entry: docker-compose prints the short form ("…/tcp") or a mapping."""
    if isinstance(port, str):
        return port.split("/")[0]
    return f"{port.get('host_ip', '')}:{port['published']}:{port['target']}"


def test_api_listens_on_the_compose_network_but_is_published_on_loopback():
    # Without the variables a user may have exported, so the defaults themselves are checked.
    env = _without("PORT", "INKWELL_PUBLISH_HOST", "INKWELL_HOST")
    services = compose_config(env, profiles=("gpu",))["services"]
    # `python -m api` binds 127.0.0.1 by default: in its container it must bind every interface.
    assert services["api"]["environment"]["INKWELL_HOST"] == "0.0.0.0"
    for name in WORKERS:
        assert "INKWELL_HOST" not in services[name]["environment"]  # a worker listens on nothing
    for name in INKWELL:  # the shared variables are still there
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
    assert {"INKWELL_ARTIFACTS_DIR", "INKWELL_DATA_DIR", "INKWELL_CACHE_DIR"} <= set(env)
    # No VOLUME: an image-declared volume would outlive containers and could be shared with --volumes-from.
    assert not [ins for ins in dockerfile if ins.keyword == "VOLUME"]


def _shell_has(words: list[str], command: list[str]) -> bool:
    """Whether `command` appears as consecutive words of a shell-form RUN."""
    return any(words[i:i + len(command)] == command for i in range(len(words)))
