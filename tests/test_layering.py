"""Dependencies point one way: ml imports no web/queue/database code; api and worker never import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_ML = ("fastapi", "starlette", "celery", "kombu", "sqlalchemy", "alembic", "redis", "psycopg",
                   "pydantic_settings", "api", "worker", "core")


def _imported_modules(package: str) -> set[str]:
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_importing_every_ml_module_loads_no_web_queue_or_database_code():
    code = (
        "import importlib, pkgutil, sys, ml\n"
        "for m in pkgutil.walk_packages(ml.__path__, 'ml.'):\n"
        "    if m.name != 'ml.__main__': importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_IN_ML!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"ml pulled in: {out.stdout.strip()}"


def test_ml_source_names_no_forbidden_package():
    assert not (_imported_modules("ml") & set(FORBIDDEN_IN_ML))


def test_api_and_worker_never_import_each_other():
    assert "worker" not in _imported_modules("api")
    assert "api" not in _imported_modules("worker")
