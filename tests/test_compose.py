"""docker-compose.yml is valid (checked by docker-compose itself) and wires the services the README promises."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed (apt-get install docker-compose; .ci/run does it)"
    proc = subprocess.run([exe, "config"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


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


def test_dockerfile_installs_requirements_and_copies_every_package():
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in text
    for package in ("core", "ml", "api", "worker", "migrations"):
        assert f"COPY {package} ./{package}" in text
    assert "alembic.ini" in text
