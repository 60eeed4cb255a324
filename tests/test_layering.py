"""Dependencies point one way: ml imports no web/queue/database code; core no api, worker or torch; api and
worker never import each other. Model kinds are declared once (ml/kinds) and looked up everywhere else."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = ("api", "worker", "torch", "torchvision", "fastapi", "starlette")
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


def test_importing_every_core_module_loads_no_api_worker_or_torch():
    code = (
        "import importlib, pkgutil, sys, core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'core.'): importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_IN_CORE!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"


def test_core_source_names_no_api_worker_or_torch():
    assert not (_imported_modules("core") & set(FORBIDDEN_IN_CORE))


def _kind_literals(package: str) -> list[str]:
    """Places in `package` (ml/kinds aside) where a string is exactly a built-in kind's name."""
    from ml.kinds import kind_names

    names = set(kind_names())
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.is_relative_to(ROOT / "ml" / "kinds"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return found


def test_model_kinds_are_spelled_only_in_their_declarations():
    assert _kind_literals("ml") + _kind_literals("core") + _kind_literals("api") + _kind_literals("worker") == []
