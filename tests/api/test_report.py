"""The assignment's report (GET /report, /report.pdf, its images) and POST /report/reproduce.

Finished runs and succeeded evaluations are written to SQL directly (the worker's side is tested elsewhere);
the activation maps come from a real CNN checkpoint, trained once for this module (1 epoch, 200 digits).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import torch

from core import evaluations, runs
from core.models import Evaluation, Run
from core.storage import checkpoint_key
from ml.config import TrainConfig
from ml.training import fit
from tests.api.conftest import FakeWorker
from tests.api.trained import replace_file

RATES = (0.01, 0.0005, 0.00001)
SWEEP_REQUEST = 'POST /train {"model": "cnn", "learning_rates": [0.01, 0.0005, 0.00001]}'
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cnn_checkpoint(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = TrainConfig.for_model("cnn", f"idx:{shared_data / 'mnist-8k'}", epochs=1, limit=200, batch_size=16)
    try:
        return fit(config, data_dir=shared_data, out_dir=tmp_path_factory.mktemp("cnn"), resume=False,
                   device="cpu").checkpoint
    finally:
        torch.set_num_threads(threads)


def _sweep(fake_worker: FakeWorker, best_val: tuple[float, float, float]) -> list[str]:
    """A finished 3-rate sweep on mnist-8k: per rate 3 epochs ending at its best validation accuracy."""
    configs = [{"model": "cnn", "data": "mnist-8k", "epochs": 3, "learning_rate": lr} for lr in RATES]
    with fake_worker.factory() as session:
        ids = [r.id for r in runs.create_runs(session, configs, "cnn", "mnist-8k", sweep_id=uuid.uuid4().hex)]
    for run_id, best in zip(ids, best_val, strict=True):
        fake_worker.train(run_id, [best / 2, best, best - 0.01], test_metric=best - 0.02)
    return ids


def _seq2seq(fake_worker: FakeWorker, attention: bool, val: list[float]) -> str:
    (run_id,) = fake_worker.create("seq2seq", attention=attention)
    fake_worker.train(run_id, val, test_metric=val[-1] + 0.01)
    return run_id


def _evaluate(fake_worker: FakeWorker, run_id: str, value: float, decoding: str = "greedy", beam_size: int = 5,
              limit: int | None = None, status: str = "succeeded") -> str:
    with fake_worker.factory() as session:
        run = session.get(Run, run_id)
        params = evaluations.canonical_params("transliterate", decoding=decoding, beam_size=beam_size, limit=limit)
        row, _ = evaluations.create_or_find_evaluation(session, run, checkpoint="last", dataset=run.dataset,
                                                       dataset_sha256=None, split="test", params=params)
        if status != "queued":
            evaluations.finish_evaluation(session, row.id, status,
                                          result={"metric": "error_rate", "value": value, "n": limit or 500})
        return row.id


def error_rate(run: int, beam_size: int | None) -> float:
    """The made-up test error rate of run 0 (no attention) or 1 (attention); greedy is beam_size None."""
    return round(0.6 - 0.2 * run - (0.0 if beam_size is None else 0.01 * min(beam_size, 5)), 4)


@pytest.fixture
def full_set(app, fake_worker: FakeWorker, cnn_checkpoint: Path) -> dict:
    """Everything the report reads: a sweep (0.0005 is best), two seq2seq runs and 22 evaluations."""
    sweep = _sweep(fake_worker, (0.80, 0.95, 0.30))
    replace_file(cnn_checkpoint, app.state.store.local_path(checkpoint_key(sweep[1])))
    plain = _seq2seq(fake_worker, False, [0.7, 0.5, 0.55])
    attending = _seq2seq(fake_worker, True, [0.5, 0.3])
    for i, run_id in enumerate((plain, attending)):
        _evaluate(fake_worker, run_id, error_rate(i, None))
        for k in range(1, 11):
            _evaluate(fake_worker, run_id, error_rate(i, k), "beam", k)
    return {"sweep": sweep, "plain": plain, "attention": attending}


def _pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf))


def test_an_empty_report_says_which_request_produces_each_section(client) -> None:
    report = client.get("/report").json()
    assert report["ready"] is False and report["reproduce"] == "POST /report/reproduce"
    for name in ("sweep", "curves", "activations", "attention", "decoding"):
        assert report[name]["ready"] is False, name
    assert report["sweep"]["missing"] == SWEEP_REQUEST
    assert SWEEP_REQUEST in report["curves"]["missing"] and SWEEP_REQUEST in report["activations"]["missing"]
    attention = report["attention"]["missing"]
    assert 'POST /train {"model": "seq2seq", "attention": false}' in attention
    assert 'POST /train {"model": "seq2seq", "attention": true}' in attention
    assert attention in report["decoding"]["missing"]
    theory = report["theory"]
    assert theory["ready"] is True and theory["missing"] is None
    assert theory["conv_example"]["matrix_shape"] == [4, 9] and theory["conv_example"]["nonzeros"] == 16
    assert theory["conv_example"]["matrix"][0] == ["a", "b", "0", "c", "d", "0", "0", "0", "0"]
    assert theory["cnn_parameters"]["total"] < theory["fc_parameters"]["total"]
    for path in ("/report/activations.png", "/report/decoding.png"):
        refused = client.get(path)
        assert refused.status_code == 409 and refused.json()["detail"].startswith(("needs", "POST")), path
    pdf = client.get("/report.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and _pages(pdf.content) == 6


def test_a_browser_is_sent_to_the_dashboards_report_page(client) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = client.get("/report", headers={"Accept": browser}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/#/report"
    for accept in ("application/json", "*/*", "application/json, text/html;q=0.5"):
        assert client.get("/report", headers={"Accept": accept}).status_code == 200, accept


def test_a_full_set_makes_every_section_ready(client, full_set) -> None:
    report = client.get("/report").json()
    assert report["ready"] is True, {k: v.get("missing") for k, v in report.items() if isinstance(v, dict)}
    sweep = report["sweep"]
    assert sweep["best_rate"] == 0.0005 and sweep["best_run_id"] == full_set["sweep"][1]
    assert [r["learning_rate"] for r in sweep["rows"]] == list(RATES)
    assert [r["best_val_accuracy"] for r in sweep["rows"]] == [0.80, 0.95, 0.30]
    assert [r["test_accuracy"] for r in sweep["rows"]] == pytest.approx([0.78, 0.93, 0.28])
    assert sweep["rows"][1]["final_train_loss"] == pytest.approx(1 / 3) and sweep["rows"][1]["best_epoch"] == 2
    curves = report["curves"]
    best = full_set["sweep"][1]
    assert curves["run_id"] == best
    assert [e["val_accuracy"] for e in curves["epochs"]] == pytest.approx([0.475, 0.95, 0.94])
    assert curves["loss_plot_url"] == f"/runs/{best}/plots/loss.png"
    assert client.get(curves["validation_plot_url"]).content.startswith(PNG)
    assert report["activations"]["run_id"] == best and report["activations"]["image_url"] == "/report/activations.png"
    attention = report["attention"]
    assert attention["without_attention"]["run_id"] == full_set["plain"] and attention["same_dataset"] is True
    assert attention["with_attention"]["best_val_error_rate"] == 0.3
    assert attention["with_attention"]["test_error_rate"] == pytest.approx(0.31)
    assert [e["val_error_rate"] for e in attention["without_attention"]["curve"]] == [0.7, 0.5, 0.55]
    decoding = report["decoding"]
    assert [r["run_id"] for r in decoding["runs"]] == [full_set["plain"], full_set["attention"]]
    assert [c["error_rate"] for c in decoding["greedy"]] == [error_rate(0, None), error_rate(1, None)]
    assert [row["beam_size"] for row in decoding["beam"]] == list(range(1, 11))
    for row in decoding["beam"]:
        assert [c["error_rate"] for c in row["cells"]] == [error_rate(0, row["beam_size"]),
                                                           error_rate(1, row["beam_size"])]
        assert all(c["n"] == 500 and c["status"] == "succeeded" for c in row["cells"])
    assert decoding["needed"] == [] and decoding["pending"] == []
    first = client.get("/report/activations.png")
    assert first.status_code == 200 and first.content.startswith(PNG)
    assert client.get("/report/activations.png").content == first.content  # kept in memory per run
    plot = client.get(decoding["plot_url"])
    assert plot.status_code == 200 and plot.content.startswith(PNG)
    pdf = client.get("/report.pdf").content
    assert pdf.startswith(b"%PDF") and _pages(pdf) == 6


def test_decoding_reads_the_newest_evaluations_and_the_limit_picks_its_own(client, fake_worker, full_set) -> None:
    plain = full_set["plain"]
    _evaluate(fake_worker, plain, 0.99, "beam", 3, limit=20)  # newer, a quick trial
    report = client.get("/report").json()
    cell = report["decoding"]["beam"][2]["cells"][0]
    assert cell["error_rate"] == 0.99 and cell["n"] == 20 and cell["limit"] == 20
    quick = client.get("/report?limit=20").json()
    assert quick["limit"] == 20 and quick["decoding"]["plot_url"] == "/report/decoding.png?limit=20"
    assert quick["sweep"]["ready"] is False and '"limit": 20' in quick["sweep"]["missing"]


def test_missing_and_running_evaluations_are_listed(client, fake_worker) -> None:
    plain = _seq2seq(fake_worker, False, [0.5])
    attending = _seq2seq(fake_worker, True, [0.4])
    _evaluate(fake_worker, plain, 0.5)
    queued = _evaluate(fake_worker, attending, 0.0, "beam", 4, status="queued")
    _evaluate(fake_worker, attending, 0.0, "beam", 5, status="failed")  # asked again: still needed
    decoding = client.get("/report").json()["decoding"]
    assert decoding["ready"] is False and decoding["pending"] == [queued]
    needed = {(n["run_id"], n["body"]["decoding"], n["body"].get("beam_size")) for n in decoding["needed"]}
    assert len(needed) == 22 - 2 and (attending, "beam", 5) in needed and (plain, "greedy", None) not in needed
    assert f"POST /runs/{plain}/evaluations" in decoding["missing"]
    assert "1 evaluation(s) still queued" in decoding["missing"]
    assert client.get("/report/decoding.png").status_code == 409


def test_reproduce_queues_everything_once_and_then_reuses_it(client, app, queue_len) -> None:
    body = {"image_dataset": "mnist-8k", "epochs": {"cnn": 2, "seq2seq": 3}, "limit": 50}
    response = client.post("/report/reproduce", json=body)
    assert response.status_code == 202, response.text
    made = response.json()
    assert len(made["runs"]) == 5 and made["reused_runs"] == [] and made["sweep_id"]
    assert len(made["evaluations"]) == len(set(made["evaluations"])) == 22
    assert queue_len("gpu") == 5 and queue_len("cpu") == 5  # the runs; evaluations wait for their run
    with app.state.sessionmaker() as session:
        made_runs = [session.get(Run, i) for i in made["runs"]]
        rows = [session.get(Evaluation, i) for i in made["evaluations"]]
    assert sorted(r.config["learning_rate"] for r in made_runs if r.model == "cnn") == sorted(RATES)
    assert {(r.model, r.config["epochs"], r.config["limit"], r.config.get("attention")) for r in made_runs} == {
        ("cnn", 2, 50, False), ("seq2seq", 3, 50, False), ("seq2seq", 3, 50, True)}
    assert all(e.status == "queued" and e.sent_at is None and e.params["limit"] == 50 for e in rows)
    again = client.post("/report/reproduce", json=body).json()
    assert again["runs"] == [] and sorted(again["reused_runs"]) == sorted(made["runs"])
    assert again["evaluations"] == made["evaluations"] and again["sweep_id"] == made["sweep_id"]
    assert queue_len("gpu") == 5
    report = client.get("/report?limit=50").json()
    assert "still training" in report["sweep"]["missing"] and "still queued" in report["attention"]["missing"]
    other = client.post("/report/reproduce", json={**body, "epochs": {"cnn": 3, "seq2seq": 3}}).json()
    assert len(other["runs"]) == 3 and sorted(other["reused_runs"]) == sorted(made["runs"][3:])


def test_reproduce_refuses_an_unknown_dataset_before_queuing_anything(client, queue_len) -> None:
    response = client.post("/report/reproduce", json={"text_dataset": "no-such-set"})
    assert response.status_code == 422 and "no-such-set" in response.json()["detail"]
    assert "errors" not in response.json() and queue_len("gpu") == 0
    assert client.get("/runs").json()["runs"] == []
    invalid = client.post("/report/reproduce", json={"beam_sizes": [0]})
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"].startswith("beam_sizes")
