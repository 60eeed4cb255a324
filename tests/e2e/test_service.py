"""End to end over HTTP with real processes: train, watch, predict, transliterate, sweep, crash, cancel."""

from __future__ import annotations

import signal

import pytest

from ml.data.images import load_images
from tests.api.trained import digit_png_dark_on_light
from tests.fixtures.services import StackService
from tests.support import wait_for

pytestmark = pytest.mark.services

TINY_CNN = {"model": "cnn", "dataset": "mnist-8k", "limit": 1200, "epochs": 3, "batch_size": 16, "learning_rate": 0.001}
TINY_S2S = {"model": "seq2seq", "dataset": "spa-eng", "attention": True, "limit": 200, "epochs": 2, "hidden_size": 32}
SLOW_CNN = {"model": "cnn", "dataset": "mnist-8k", "limit": 2000, "batch_size": 8, "learning_rate": 0.001}


def test_cnn_train_watch_then_predict_and_activation_maps(service: StackService, shared_data) -> None:
    run_id = service.train(TINY_CNN)["run_id"]
    states = service.watch(run_id)
    assert states[-1] == ("succeeded", 3), service.logs()
    # Metrics were readable while it trained, and grew one epoch at a time.
    counts = [n for _, n in states]
    assert counts == sorted(counts) and any(status == "running" and 0 < n < 3 for status, n in states), states
    metrics = service.metrics(run_id)
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert metrics["test_accuracy"] > 0.8

    test = load_images(f"idx:{shared_data / 'mnist-8k'}", shared_data).test
    correct = 0
    for i in range(10):
        files = {"file": (f"digit{i}.png", digit_png_dark_on_light(test.images[i]), "image/png")}
        response = service.http.post("/predict", files=files, data={"run_id": run_id})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["run_id"] == run_id and abs(sum(body["probabilities"]) - 1) < 1e-4
        correct += body["label"] == int(test.labels[i])
    assert correct >= 7

    pixels = (test.images[0, 0] * 256).round().clamp(max=255).int().tolist()
    maps = service.http.post("/activation-maps", params={"layer": "conv2", "format": "json"},
                             json={"pixels": pixels, "run_id": run_id})
    assert maps.status_code == 200, maps.text
    assert maps.json()["shape"] == [16, 12, 12]
    png = service.http.post("/activation-maps", data={"run_id": run_id, "layer": "conv1", "format": "png"},
                            files={"file": ("d.png", digit_png_dark_on_light(test.images[1]), "image/png")})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_seq2seq_train_then_transliterate_greedy_and_beam(service: StackService) -> None:
    run_id = service.train(TINY_S2S)["run_id"]
    assert service.wait_finished(run_id)["status"] == "succeeded", service.logs()
    greedy = service.http.post("/transliterate", json={"text": "Tengo hambre.", "run_id": run_id})
    beam = service.http.post("/transliterate", json={"text": "Tengo hambre.", "run_id": run_id, "decoding": "beam",
                                                     "beam_size": 4, "n_best": 3, "return_attention": True})
    assert greedy.status_code == 200 and beam.status_code == 200, greedy.text + beam.text
    g, b = greedy.json(), beam.json()
    assert g["input"] == "Tengo hambre." and "".join(g["input_chars"]) == "tengo hambre ."
    assert len(g["hypotheses"]) == 1 and g["decoding"] == "greedy"
    scores = [h["score"] for h in b["hypotheses"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True) and b["output"] == b["hypotheses"][0]["text"]
    assert len(b["attention"]) == len(b["output_chars"]) and len(b["attention"][0]) == len(b["input_chars"])


def test_a_sweep_of_three_learning_rates_trains_three_runs(service: StackService) -> None:
    body = {**TINY_CNN, "limit": 300, "epochs": 1, "batch_size": 32, "learning_rate": None,
            "learning_rates": [0.01, 0.001, 0.0001]}
    del body["learning_rate"]
    created = service.train(body)
    assert len(created["run_ids"]) == 3 and created["sweep_id"]
    for run_id in created["run_ids"]:
        assert service.wait_finished(run_id)["status"] == "succeeded", service.logs()
    sweep = service.http.get(f"/sweeps/{created['sweep_id']}").json()
    assert sorted(row["learning_rate"] for row in sweep["runs"]) == [0.0001, 0.001, 0.01]


def test_sigkilled_worker_run_finishes_after_a_new_worker_starts(service: StackService) -> None:
    run_id = service.train({**SLOW_CNN, "epochs": 4})["run_id"]
    wait_for(lambda: len(service.metrics(run_id)["epochs"]) >= 1, "the first epoch", 180, 0.1, service.logs)
    service.stack.workers[0].kill(signal.SIGKILL)
    assert service.metrics(run_id)["status"] == "running"
    service.stack.start_worker().wait_ready()
    run = service.wait_finished(run_id)
    assert run["status"] == "succeeded", service.logs()
    assert [e["epoch"] for e in service.metrics(run_id)["epochs"]] == [1, 2, 3, 4]  # exactly one row per epoch
    assert run["attempt"] == 2 and run["worker"] == service.stack.workers[1].name


def test_cancel_a_running_run_over_http(service: StackService) -> None:
    """202 for a running run (the worker stops it), 200 for a queued one (cancelled at once)."""
    run_id = service.train({**SLOW_CNN, "epochs": 8})["run_id"]
    wait_for(lambda: (m := service.metrics(run_id))["status"] == "running" and len(m["epochs"]) >= 1,
             "the first epoch", 180, 0.1, service.logs)
    # The only worker (solo pool, one task at a time) is busy with that run: this one stays queued.
    queued_id = service.train({**SLOW_CNN, "epochs": 1})["run_id"]
    assert service.metrics(queued_id)["status"] == "queued"
    response = service.http.post(f"/runs/{queued_id}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    response = service.http.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 202, response.text  # running under a live lease (heartbeats every 1 s)
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)
    at_request = len(service.metrics(run_id)["epochs"])
    assert service.wait_finished(run_id)["status"] == "cancelled", service.logs()
    assert len(service.metrics(run_id)["epochs"]) <= at_request + 1  # stopped within one epoch
    again = service.http.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # already cancelled

    queued = service.http.get(f"/runs/{queued_id}").json()
    assert (queued["status"], queued["attempt"]) == ("cancelled", 0)  # never started
    assert service.metrics(queued_id)["epochs"] == []
