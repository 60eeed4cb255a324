"""A kind registered only by the test process and by its worker (INKWELL_KIND_MODULES) trains and serves
through the real API and a real worker: nothing outside tests/kinds/logreg.py declares it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ml.kinds import ModelKind, kind_names, register_kind, unregister_kind
from tests.support import TEST_PROCESS

KIND_MODULE = "tests.kinds.logreg"


@pytest.fixture
def logreg() -> Iterator[ModelKind]:
    kind = register_kind(importlib.import_module(KIND_MODULE).LOGREG)
    try:
        yield kind
    finally:
        unregister_kind(kind.name)
    assert "logreg" not in kind_names()


def test_a_kind_registered_by_a_test_trains_reports_and_predicts(make_stack, shared_data, logreg) -> None:
    stack = make_stack("sqlite")
    stack.start_worker(INKWELL_KIND_MODULES=KIND_MODULE).wait_ready()
    with TestClient(create_app(stack.settings.model_copy(update=TEST_PROCESS))) as client:
        models = {m["model"]: m for m in client.get("/models").json()["models"]}
        assert models["logreg"]["data_kind"] == "images" and models["logreg"]["serves"] == "predict"
        listed = {d["name"]: d for d in client.get("/datasets").json()["datasets"]}
        assert "logreg" in listed["mnist-8k"]["models"]
        refused = client.post("/train", json={"model": "logreg", "dataset": "spa-eng"})
        assert refused.status_code == 422 and "holds text pairs" in refused.json()["detail"]

        queued = client.post("/train", json={"model": "logreg", "epochs": 2, "limit": 600})
        assert queued.status_code == 202, queued.text
        run_id = queued.json()["run_id"]
        run = stack.wait_status(run_id)
        assert run.status == "succeeded", (run.error, stack.logs())
        assert run.config["learning_rate"] == 0.01 and run.dataset == "mnist-8k"  # the kind's defaults

        metrics = client.get(f"/runs/{run_id}/metrics").json()
        assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
        assert all(0.5 < e["val_accuracy"] <= 1 for e in metrics["epochs"])  # far above chance (0.1)
        assert 0.5 < metrics["test_accuracy"] <= 1

        digit = np.zeros((28, 28))
        digit[4:24, 13:15] = 1.0  # a "1"
        answer = client.post(f"/predict?run_id={run_id}", json={"pixels": digit.tolist()})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["run_id"] == run_id and len(body["probabilities"]) == 10
        assert abs(sum(body["probabilities"]) - 1) < 1e-4
        by_kind = client.post("/predict", json={"pixels": digit.tolist(), "model": "logreg"})
        assert by_kind.status_code == 200 and by_kind.json()["run_id"] == run_id  # the best logreg run
        maps = client.post(f"/activation-maps?run_id={run_id}", json={"pixels": digit.tolist()})
        assert maps.status_code == 422 and "no activation maps" in maps.json()["detail"]
        other = client.post("/transliterate", json={"text": "hola", "run_id": run_id})
        assert other.status_code == 422 and "logreg run" in other.json()["detail"]
