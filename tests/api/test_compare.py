"""GET /compare and the per-epoch metrics export (JSON and CSV), on runs and evaluations written to SQL."""

from __future__ import annotations

import csv
import io

from core import evaluations, results
from core.models import Run
from tests.api.conftest import FakeWorker


def _two_runs(fake_worker: FakeWorker) -> tuple[str, str]:
    """Two CNN runs differing only in learning rate (0.001, 0.002), trained 3 and 2 epochs."""
    first, second = fake_worker.create("cnn", n=2)
    fake_worker.train(first, [0.5, 0.9, 0.8], test_metric=0.85)
    fake_worker.train(second, [0.6, 0.7], test_metric=0.65)
    with fake_worker.factory() as session:
        results.record_final(session, first, "best_test_accuracy", 0.88)
    return first, second


def _evaluate(fake_worker: FakeWorker, run_id: str, value: float) -> str:
    with fake_worker.factory() as session:
        run = session.get(Run, run_id)
        row, _ = evaluations.create_or_find_evaluation(
            session, run, checkpoint="last", dataset=run.dataset, dataset_sha256=None, split="test",
            params=evaluations.canonical_params("predict"))
        evaluations.finish_evaluation(session, row.id, "succeeded",
                                      result={"metric": "accuracy", "value": value, "n": 40, "details": {"x": 1}})
        return row.id


def test_compare_lists_configs_differences_metrics_curves_and_evaluations(client, fake_worker) -> None:
    first, second = _two_runs(fake_worker)
    evaluation = _evaluate(fake_worker, first, 0.83)
    response = client.get(f"/compare?runs={first},{second}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["differences"] == ["learning_rate"]
    one, two = body["runs"]
    assert [one["id"], two["id"]] == [first, second]
    assert one["config"]["learning_rate"] == 0.001 and two["config"]["learning_rate"] == 0.002
    assert one["model"] == "cnn" and one["dataset"] == "mnist-8k" and one["status"] == "succeeded"
    assert one["final_metrics"] == {"best_test_accuracy": 0.88, "test_accuracy": 0.85}
    assert one["best"] == {"epoch": 2, "value": 0.9} and two["best"] == {"epoch": 2, "value": 0.7}
    assert one["test_metric_name"] == "test_accuracy" and one["test_metric"] == 0.85 and two["test_metric"] == 0.65
    assert [c["val_metric"] for c in one["curves"]] == [0.5, 0.9, 0.8]
    assert [c["train_loss"] for c in two["curves"]] == [1.0, 0.5]
    assert [e["id"] for e in one["evaluations"]] == [evaluation] and two["evaluations"] == []
    assert one["evaluations"][0]["value"] == 0.83 and one["evaluations"][0]["details"] is None


def test_compare_of_runs_of_two_kinds_names_every_differing_key(client, fake_worker) -> None:
    (cnn,) = fake_worker.create("cnn")
    (s2s,) = fake_worker.create("seq2seq", attention=True)
    body = client.get(f"/compare?runs={s2s},{cnn}").json()
    assert body["differences"] == ["attention", "data", "model"]  # both at learning rate 0.001, 3 epochs
    assert [r["metric"] for r in body["runs"]] == ["error_rate", "accuracy"]
    assert body["runs"][0]["best"] is None and body["runs"][0]["curves"] == []


def test_compare_refuses_unknown_and_malformed_ids(client, fake_worker) -> None:
    (known,) = fake_worker.create("cnn")
    unknown = "f" * 32
    response = client.get(f"/compare?runs={known},{unknown}")
    assert response.status_code == 404 and unknown in response.json()["detail"]
    for bad in (known, f"{known},nope", f"{known};{known}", ",".join([known] * 21), f"{known.upper()},{known}"):
        answer = client.get("/compare", params={"runs": bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["errors"][0]["field"] == "runs"
    assert client.get("/compare").status_code == 422


def test_metrics_csv_has_one_row_per_epoch_and_the_final_metrics(client, fake_worker) -> None:
    first, second = _two_runs(fake_worker)
    (untrained,) = fake_worker.create("seq2seq", attention=True)
    response = client.get(f"/compare/metrics.csv?runs={first},{second},{untrained}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="inkwell-metrics-' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 3 + 2  # the untrained run has no epoch
    assert list(rows[0])[:9] == ["run_id", "model", "dataset", "learning_rate", "attention", "epoch", "train_loss",
                                 "val_metric_name", "val_metric"]
    assert [(r["run_id"], int(r["epoch"])) for r in rows] == [(first, 1), (first, 2), (first, 3), (second, 1),
                                                              (second, 2)]
    assert float(rows[1]["val_metric"]) == 0.9 and rows[1]["val_metric_name"] == "val_accuracy"
    assert float(rows[0]["learning_rate"]) == 0.001 and rows[0]["attention"] == ""
    assert float(rows[0]["test_accuracy"]) == 0.85 and float(rows[0]["best_test_accuracy"]) == 0.88
    assert float(rows[3]["test_accuracy"]) == 0.65 and rows[3]["best_test_accuracy"] == ""


def test_metrics_json_holds_epochs_and_final_metrics_per_run(client, fake_worker) -> None:
    first, second = _two_runs(fake_worker)
    (s2s,) = fake_worker.create("seq2seq", attention=False)
    fake_worker.train(s2s, [0.4], test_metric=0.42)
    response = client.get(f"/compare/metrics.json?runs={s2s},{first}")
    assert response.status_code == 200, response.text
    text, image = response.json()["runs"]
    assert text["run_id"] == s2s and text["attention"] is False and text["val_metric_name"] == "val_error_rate"
    assert text["epochs"] == [{"epoch": 1, "train_loss": 1.0, "val_metric": 0.4}]
    assert text["final"] == {"test_error_rate": 0.42}
    assert image["attention"] is None and image["learning_rate"] == 0.001 and len(image["epochs"]) == 3
    assert image["final"] == {"best_test_accuracy": 0.88, "test_accuracy": 0.85}
    assert client.get(f"/compare/metrics.json?runs={first}").status_code == 200  # one run is a set too
    assert client.get(f"/compare/metrics.json?runs={first},{'0' * 32}").status_code == 404
