"""The published contract is the real one: Schemathesis, every check on every operation, finds nothing.

The app is built like every API test's (tests/api/conftest.py: a migrated SQLite file, Redis db 14 with
this test's own queue) and holds one trained CNN run and one trained seq2seq run with real checkpoints
(tests/api/trained.py), so the happy paths answer too. It is served by uvicorn on 127.0.0.1 (a thread of
this process) and `st run --checks all` runs against its /openapi.json in a subprocess, with a fixed seed
and a bounded number of examples per operation: the four phases of the CLI (examples, coverage, fuzzing,
stateful), exactly what a developer runs by hand, and the report on failure is Schemathesis' own, with a
curl command per failure. (Schemathesis' pytest integration runs the stateful phase separately, as a
state machine, and through ASGI a never-ending event stream would hang; the CLI over HTTP has timeouts.)

tests/api/schemathesis.toml lists the operations where a schema-valid request may get a 422 from the
data, and tests/api/contract_checks.py adds the check that keeps such a 422 from being a validation error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from api.inference_schemas import NOT_BLANK
from api.openapi import PUBLIC
from tests.api.trained import TrainedModels, add_run, trained  # noqa: F401 (fixture)
from tests.support import ROOT, free_port, wait_for

SEED = 1
MAX_EXAMPLES = 25  # per operation and phase
CONFIG = Path(__file__).with_name("schemathesis.toml")
TIMEOUT_S = 240  # the whole Schemathesis run (about a minute on two shared cores)


@pytest.fixture
def served(make_app: Callable[..., FastAPI], trained: TrainedModels) -> Iterator[str]:  # noqa: F811
    """The base URL of an app with one succeeded run of each kind, served by uvicorn until the test ends."""
    app = make_app()
    add_run(app, "cnn", trained.cnn, [0.5, 0.8])
    add_run(app, "seq2seq", trained.seq2seq_attention, [0.9])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="contract-uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start", timeout=30)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


# SQLite only: the contract is about HTTP (statuses, bodies, schemas); which rows a query finds is tested on
# both databases by the other API tests, and one Schemathesis run takes most of this test's minute.
@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_schemathesis_finds_no_contract_violation(served: str, tmp_path: Path) -> None:
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.api.contract_checks", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "--no-color",
        "run", f"{served}/openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1", "--request-timeout", "20",
    ]
    operations = sum(len(ops) for ops in httpx.get(f"{served}/openapi.json").json()["paths"].values())
    log = tmp_path / "schemathesis.log"
    started = time.monotonic()
    with log.open("w") as out:  # a file: what was printed is kept when the run times out
        try:
            code = subprocess.run(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            code = None
    output = log.read_text(errors="replace")
    assert code == 0, f"Schemathesis failed (exit code {code}):\n{output[-30_000:]}"
    cases = re.search(r"(\d+) generated, (\d+) passed\b", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert cases and cases[1] == cases[2] and tested and int(tested[1]) == operations, output[-5_000:]
    print(f"Schemathesis: {cases[1]} cases on {operations} operations, all passed, "
          f"in {time.monotonic() - started:.0f} s")


def _schemas(node: object) -> Iterator[dict]:
    """Every JSON object inside `node` (a spec), depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def test_every_error_status_is_documented_as_an_error_response(client) -> None:
    spec = client.get("/openapi.json").json()
    components = spec["components"]["schemas"]
    assert "HTTPValidationError" not in components and "ValidationError" not in components
    assert components["ErrorResponse"]["required"] == ["detail"]
    assert components["ErrorResponse"]["properties"]["detail"]["type"] == "string"
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if (method, path) not in PUBLIC:
                assert {"401", "403"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status[0] in "45" and (method, path, status) != ("get", "/readyz", "503"):
                    assert response["content"]["application/json"]["schema"] == error, (method, path, status)
    # pydantic writes a constraint it cannot place as its own keyword (`ge`), which no client understands
    misplaced = [s for s in _schemas(spec) if "type" in s and {"ge", "gt", "le", "lt"} & set(s)]
    assert not misplaced


@pytest.mark.parametrize(
    ("path", "body", "content_type", "words"),
    [
        ("/train", b"\xff\xfe\x00", "application/json", "cannot be parsed"),
        ("/transliterate", b'{"text": ', "application/json", "not valid JSON"),
        ("/predict", b"--x--\r\n", "multipart/form-data", "boundary"),
    ],
)
def test_a_body_that_cannot_be_parsed_is_an_invalid_request(client, path, body, content_type, words) -> None:
    """422 with `errors` like any invalid request (never an undocumented 400)."""
    response = client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["errors"][0]["field"] == "body" and words in answer["errors"][0]["message"]
    assert answer["detail"].startswith("body: ")


GRID = [[0] * 28] * 28


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/train", {"model": "cnn", "epochs": "3"}, "epochs"),
        ("/train", {"model": "cnn", "attention": 1}, "attention"),
        ("/transliterate", {"text": "hola", "return_attention": 0}, "return_attention"),
        ("/transliterate", {"text": "hola", "decoding": "beam", "beam_size": True}, "beam_size"),
        ("/predict", {"pixels": [["5"] * 28] * 28}, "pixels"),
        ("/predict", {"pixels": [[True] * 28] * 28}, "pixels"),
        ("/predict", {"pixels": GRID, "top_k": "3"}, "top_k"),
    ],
)
def test_json_bodies_hold_the_types_the_schema_says(client, path, body, field) -> None:
    """No coercion the schema does not state: a string is not a number, 0 and 1 are not booleans."""
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_a_whole_float_is_an_integer_as_in_json_schema(client, queue_len) -> None:
    response = client.post("/train", json={"model": "cnn", "epochs": 3.0, "seed": 7.0})
    assert response.status_code == 202, response.text
    assert client.get(f"/runs/{response.json()['run_id']}").json()["config"]["epochs"] == 3
    assert queue_len() == 1


def test_the_not_blank_pattern_is_what_strip_keeps() -> None:
    """A sentence must hold a character str.strip() keeps (the validator's rule); the schema's pattern names
    the same characters, spelled out because regex engines disagree on `\\s` (Python counts \\x1f in)."""
    pattern = re.compile(NOT_BLANK)
    assert all(bool(pattern.search(c)) == bool(c.strip()) for c in map(chr, range(0x10000)))
