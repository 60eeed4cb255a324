"""GET /sweeps/{id} (+ plot) and the model registry: GET /models, POST /models/{model}/promote."""

from __future__ import annotations

import io

from PIL import Image


def test_sweep_table_marks_the_best_succeeded_run(client, fake_worker):
    payload = {"model": "cnn", "dataset": "mnist-8k", "learning_rates": [0.01, 0.001, 0.0001], "epochs": 3}
    body = client.post("/train", json=payload).json()
    fast, mid, slow = body["run_ids"]
    fake_worker.train(fast, [0.70, 0.80, 0.78], test_metric=0.77)  # best epoch 0.80, last 0.78
    fake_worker.train(mid, [0.60, 0.75, 0.79], test_metric=0.79)
    fake_worker.start(slow)
    fake_worker.epoch(slow, 1, 2.0, 0.90)  # best metric of all, but still running
    r = client.get(f"/sweeps/{body['sweep_id']}")
    assert r.status_code == 200, r.text
    sweep = r.json()
    assert (sweep["model"], sweep["dataset"], sweep["metric"], sweep["higher_is_better"]) == (
        "cnn", "mnist-8k", "accuracy", True)
    rows = {row["run_id"]: row for row in sweep["runs"]}
    assert [row["run_id"] for row in sweep["runs"]] == [fast, mid, slow]  # the order they were requested
    assert [row["learning_rate"] for row in sweep["runs"]] == payload["learning_rates"]
    assert rows[fast]["final_train_loss"] == 1.0 / 3 and rows[fast]["final_val_metric"] == 0.78
    assert rows[fast]["best_val_metric"] == 0.80 and rows[fast]["test_metric"] == 0.77
    running = rows[slow]
    assert (running["status"], running["epochs_done"], running["test_metric"]) == ("running", 1, None)
    assert sweep["best_run_id"] == fast
    assert [row["best"] for row in sweep["runs"]] == [True, False, False]


def test_seq2seq_sweep_prefers_the_lowest_error_rate(client, fake_worker):
    sweep_id = "5e" * 16
    a, b = fake_worker.create("seq2seq", n=2, sweep_id=sweep_id)
    fake_worker.train(a, [0.9, 0.6])
    fake_worker.train(b, [0.8, 0.7])
    sweep = client.get(f"/sweeps/{sweep_id}").json()
    assert sweep["higher_is_better"] is False and sweep["metric"] == "error_rate"
    assert sweep["best_run_id"] == a


def test_sweep_plot_is_a_wide_png_and_unknown_sweeps_are_404(client, fake_worker):
    sweep_id = "ab" * 16
    a, b = fake_worker.create("cnn", n=2, sweep_id=sweep_id)
    fake_worker.train(a, [0.5, 0.6])
    fake_worker.train(b, [0.4, 0.7])
    r = client.get(f"/sweeps/{sweep_id}/plot.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as im:
        width, height = im.size
    assert width > height  # two panels side by side
    (single,) = fake_worker.create("cnn")
    for bad in ("cd" * 16, "nope", single):  # a run id is not a sweep id
        assert client.get(f"/sweeps/{bad}").status_code == 404
        assert client.get(f"/sweeps/{bad}/plot.png").status_code == 404


def test_models_serve_the_best_run_until_one_is_promoted(client, fake_worker):
    body = client.get("/models").json()["models"]
    assert [m["model"] for m in body] == ["cnn", "seq2seq"]
    for m in body:
        assert m["serving_run_id"] is None and m["serving_source"] is None
        assert "POST /train" in m["hint"]
    good, better, unfinished = fake_worker.create("cnn", n=3)
    fake_worker.train(good, [0.6], test_metric=0.59)
    fake_worker.train(better, [0.9], test_metric=0.88)
    fake_worker.start(unfinished)
    fake_worker.epoch(unfinished, 1, 0.1, 0.99)
    cnn = client.get("/models").json()["models"][0]
    assert (cnn["serving_run_id"], cnn["serving_source"], cnn["promoted_run_id"]) == (better, "best", None)
    assert cnn["val_metric"] == 0.9 and cnn["test_metric"] == 0.88 and cnn["hint"] is None
    r = client.post("/models/cnn/promote", json={"run_id": good})
    assert r.status_code == 200, r.text
    assert r.json()["promoted_run_id"] == good and r.json()["promoted_at"] is not None
    cnn = client.get("/models").json()["models"][0]
    assert (cnn["serving_run_id"], cnn["serving_source"], cnn["test_metric"]) == (good, "promoted", 0.59)
    seq = client.get("/models").json()["models"][1]
    assert seq["serving_run_id"] is None  # promoting a cnn run changes nothing for seq2seq


def test_promote_errors(client, fake_worker):
    (cnn_run,) = fake_worker.create("cnn")
    (s2s_run,) = fake_worker.create("seq2seq")
    fake_worker.train(s2s_run, [0.5])
    r = client.post("/models/cnn/promote", json={"run_id": cnn_run})
    assert r.status_code == 409 and "queued" in r.json()["detail"]
    r = client.post("/models/cnn/promote", json={"run_id": s2s_run})
    assert r.status_code == 422 and "seq2seq" in r.json()["detail"]
    assert client.post("/models/cnn/promote", json={"run_id": "0" * 32}).status_code == 404
    assert client.post("/models/cnn/promote", json={"run_id": "garbage"}).status_code == 404
    assert client.post("/models/gan/promote", json={"run_id": s2s_run}).status_code == 404
    assert client.post("/models/cnn/promote", json={}).status_code == 422
    assert client.post("/models/cnn/promote", json={"run_id": s2s_run, "x": 1}).status_code == 422
    assert client.get("/models").json()["models"][0]["promoted_run_id"] is None
