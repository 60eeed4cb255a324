"""The experiment pages in headless Chromium: comparing runs, the run page's evaluations and the report.

This module runs its own API and worker (the `service` fixture below overrides the session's), so the
runs it trains never become the "best run" that the other browser tests expect to be theirs. Everything
is trained through the real API at toy sizes: one POST /report/reproduce queues the CNN learning-rate
sweep and the two seq2seq runs (with and without attention) and their decoding evaluations.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import SCREENSHOTS, TRAIN_TIMEOUT, Ui, _start
from tests.fixtures.services import Service
from tests.support import wait_for

pytestmark = pytest.mark.browser

RATES = [0.01, 0.0005, 0.00001]
SECTIONS = ["sweep", "curves", "activations", "attention", "decoding", "theory"]
LIMIT = 128
REPORT_TIMEOUT = 480.0  # three CNN runs, two seq2seq runs and their 22 evaluations on two shared cores


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Service]:
    """This module's own API and worker (overrides the session's `service`, which `ui` then uses)."""
    svc = _start(tmp_path_factory.mktemp("experiments-stack"), shared_data, with_worker=True)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def reproduced(service: Service) -> dict[str, Any]:
    """POST /report/reproduce at toy sizes: the sweep, the two seq2seq runs, then their evaluations."""
    body = {"image_dataset": "mnist-8k", "text_dataset": "spa-eng", "epochs": {"cnn": 1, "seq2seq": 1},
            "limit": LIMIT}
    r = service.http.post("/report/reproduce", json=body)
    assert r.status_code == 202, r.text
    return {"body": body, **r.json()}


@pytest.fixture(scope="module")
def sweep_runs(service: Service, reproduced: dict[str, Any]) -> list[str]:
    """The sweep's run ids, in learning-rate order, once they have all succeeded."""
    sweep = service.http.get(f"/sweeps/{reproduced['sweep_id']}").json()
    assert [r["learning_rate"] for r in sweep["runs"]] == RATES
    ids = [r["run_id"] for r in sweep["runs"]]
    for run_id in ids:
        run = service.wait_finished(run_id, TRAIN_TIMEOUT)
        assert run["status"] == "succeeded", f"{run['error']}\n{service.logs()}"
    return ids


def _report(service: Service) -> dict[str, Any]:
    r = service.http.get("/report", params={"limit": LIMIT})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def ready_report(service: Service, reproduced: dict[str, Any]) -> dict[str, Any]:
    """The report once every section is ready (the reproduce request queued all it needs)."""
    def ready() -> dict[str, Any] | None:
        service.check_alive()
        report = _report(service)
        return report if report["ready"] else None

    return wait_for(ready, "the report to be ready", REPORT_TIMEOUT, 2.0, service.logs)


def test_runs_ticked_on_the_runs_page_are_compared_side_by_side(
    ui: Ui, service: Service, sweep_runs: list[str]
) -> None:
    page = ui.page
    first, second = sweep_runs[0], sweep_runs[1]  # lr 0.01 and 0.0005
    ui.goto("/runs")
    button = page.locator("#compare-selected")
    for run_id in (first, second):
        page.locator(f'tr[data-run-id="{run_id}"] input.compare-check').check()
    assert button.is_enabled() and "(2)" in button.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_runs_ticked_on_the_runs_page-runs.png"), full_page=True)
    button.click()
    page.wait_for_url(re.compile(r"#/compare\?runs="))
    assert page.url.endswith(f"#/compare?runs={first},{second}")
    page.wait_for_selector("#compare-config")

    compared = service.http.get("/compare", params={"runs": f"{first},{second}"}).json()
    shown = page.eval_on_selector_all("#compare-config thead th[data-run-id]", "ths => ths.map(t => t.dataset.runId)")
    assert shown == [first, second]
    assert "learning_rate" in compared["differences"]
    differing = page.eval_on_selector_all('#compare-config tr.diff', "trs => trs.map(t => t.dataset.key)")
    assert sorted(differing) == sorted(compared["differences"])
    rate_row = page.locator('#compare-config tr[data-key="learning_rate"]')
    assert rate_row.locator(".badge.differs").count() == 1
    assert [c.strip() for c in rate_row.locator("td").all_inner_texts()] == ["0.01", "0.0005"]
    # the final metrics (as the API reports them) and the overlaid curves, one trace per run
    test_row = page.locator('#compare-metrics tr[data-metric="test_accuracy"] td').all_inner_texts()
    assert test_row == [f"{r['final_metrics']['test_accuracy'] * 100:.1f}%" for r in compared["runs"]]
    page.wait_for_function("() => (document.getElementById('compare-val-chart').data || []).length === 2")
    for chart in ("#compare-loss-chart", "#compare-val-chart"):
        traces = ui.chart_data(chart)
        assert [t["name"].split(" · ")[0] for t in traces] == [first[:8], second[:8]]
        assert all(t["x"] == [1] for t in traces)
    val = ui.chart_data("#compare-val-chart")
    assert [t["y"][0] for t in val] == [r["curves"][0]["val_metric"] for r in compared["runs"]]
    # the downloads answer
    for link in ("#compare-csv", "#compare-json"):
        href = page.get_attribute(link, "href")
        assert service.http.get(href).status_code == 200, href

    # the sweep page links to the comparison of all its runs
    sweep_id = service.run(first)["sweep_id"]
    ui.goto(f"/sweeps/{sweep_id}")
    page.click("#sweep-compare")
    page.wait_for_url(re.compile(r"#/compare\?runs="))
    assert page.url.endswith(f"#/compare?runs={','.join(sweep_runs)}")
    page.wait_for_function("n => document.querySelectorAll('#compare-config thead th[data-run-id]').length === n",
                           arg=len(sweep_runs))
    ui.assert_no_errors()


def test_an_evaluation_asked_for_on_the_run_page_is_followed_to_its_result(
    ui: Ui, service: Service, sweep_runs: list[str]
) -> None:
    page = ui.page
    run_id = sweep_runs[1]
    ui.goto(f"/runs/{run_id}")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector("#eval-form")
    # the best epoch and both checkpoints
    assert page.inner_text("#best-epoch-value") == "1"
    for link in ("#checkpoint-best", "#checkpoint-last"):
        href = page.get_attribute(link, "href")
        assert service.http.get(href).status_code == 200, href

    page.select_option("#eval-split", "val")
    page.select_option("#eval-checkpoint", "last")
    page.fill("#eval-limit", "60")
    page.click("#eval-submit")
    row = page.locator('#eval-table tbody tr[data-status="succeeded"]')
    row.wait_for(timeout=TRAIN_TIMEOUT * 1000)
    evaluations = service.http.get(f"/runs/{run_id}/evaluations").json()["evaluations"]
    asked = [e for e in evaluations if e["split"] == "val" and e["limit"] == 60]
    assert len(asked) == 1, evaluations
    done = asked[0]
    assert (done["checkpoint"], done["checkpoint_used"], done["checkpoint_epoch"], done["n"]) == ("last", "last", 1, 60)
    assert row.get_attribute("data-evaluation-id") == done["id"]
    assert f"accuracy {done['value'] * 100:.1f}%" in row.inner_text()
    assert "last · epoch 1" in row.inner_text()

    # its details: the confusion matrix, per-class accuracy and the mistakes' thumbnails
    page.wait_for_selector(f'#eval-details[data-evaluation-id="{done["id"]}"]')
    details = service.http.get(f"/evaluations/{done['id']}").json()["details"]
    page.wait_for_function("() => (document.getElementById('confusion-chart').data || []).length === 1")
    z = ui.chart_data("#confusion-chart")[0]["z"]
    totals = [sum(row) for row in details["confusion"]]
    assert [[round(v * t) for v in row] for row, t in zip(z, totals, strict=True)] == details["confusion"]
    assert page.locator("#per-class tbody tr").count() == len(details["classes"])
    assert page.locator("#mistakes img").count() == len(details["mistakes"]) > 0
    page.wait_for_function("() => [...document.querySelectorAll('#mistakes img')].every(i => i.complete)")
    assert page.eval_on_selector_all("#mistakes img", "is => is.every(i => i.naturalWidth > 0)")
    assert page.evaluate("window.__sameDocument") is True
    ui.assert_no_errors()


def test_the_report_draws_every_section(ui: Ui, service: Service, ready_report: dict[str, Any]) -> None:
    page = ui.page
    ui.goto(f"/report?limit={LIMIT}")
    page.wait_for_selector("#report-theory")
    assert page.eval_on_selector_all(".report-section", "ss => ss.map(s => [s.id, s.dataset.ready])") == [
        [f"report-{s}", "true"] for s in SECTIONS]
    assert page.locator(".missing-note").count() == 0
    # the sweep table marks the best rate
    sweep = ready_report["sweep"]
    rows = page.eval_on_selector_all("#report-sweep tbody tr", "trs => trs.map(t => [t.dataset.runId, t.dataset.best])")
    assert rows == [[r["run_id"], str(r["run_id"] == sweep["best_run_id"]).lower()] for r in sweep["rows"]]
    assert page.locator("#report-sweep tr.best .badge.best").count() == 1
    # curves, attention: drawn with Plotly from the report's numbers
    page.wait_for_function("() => (document.getElementById('report-val-chart').data || []).length === 1")
    assert ui.chart_data("#report-loss-chart")[0]["y"] == [e["train_loss"] for e in ready_report["curves"]["epochs"]]
    attention = ui.chart_data("#report-attention-chart")
    assert [t["name"] for t in attention] == ["without attention", "with attention"]
    # the activation and decoding images loaded
    for img in ("#report-activations-img", "#report-decoding-img"):
        page.wait_for_function("s => document.querySelector(s).complete", arg=img)
        assert page.eval_on_selector(img, "i => i.naturalWidth") > 0, img
    # the decoding table: greedy and each beam size, one column per run
    decoding = ready_report["decoding"]
    assert page.eval_on_selector_all("#report-decoding tbody tr", "trs => trs.map(t => t.dataset.decoding)") == [
        "greedy", *[f"beam-{row['beam_size']}" for row in decoding["beam"]]]
    greedy = page.locator('#report-decoding tr[data-decoding="greedy"] td').all_inner_texts()
    assert greedy == [f"{c['error_rate'] * 100:.1f}%" for c in decoding["greedy"]]
    # theory answers, and the PDF
    assert page.locator("#report-params tbody tr").count() >= 2
    pdf = service.http.get(page.get_attribute("#report-pdf", "href"))
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    ui.assert_no_errors()


def test_a_seq2seq_run_page_shows_its_decoding_evaluations_and_their_sentences(
    ui: Ui, service: Service, ready_report: dict[str, Any]
) -> None:
    page = ui.page
    run_id = ready_report["attention"]["with_attention"]["run_id"]
    evaluations = service.http.get(f"/runs/{run_id}/evaluations").json()["evaluations"]
    assert len(evaluations) == 11  # greedy and beam 1..10 (POST /report/reproduce)
    ui.goto(f"/runs/{run_id}")
    page.wait_for_selector("#eval-table")
    assert page.eval_on_selector_all("#eval-table tbody tr", "trs => trs.map(t => t.dataset.evaluationId)") == [
        e["id"] for e in evaluations]
    # the form offers the decoding options; the beam fields only for beam search
    assert page.is_hidden("#eval-beam_size")
    page.select_option("#eval-decoding", "beam")
    assert page.is_visible("#eval-beam_size") and page.is_visible("#eval-length_penalty")

    beam = next(e for e in evaluations if e["decoding"] == "beam" and e["beam_size"] == 10)
    row = page.locator(f'#eval-table tr[data-evaluation-id="{beam["id"]}"]')
    assert "beam 10" in row.inner_text() and f"error rate {beam['value'] * 100:.1f}%" in row.inner_text()
    row.locator('[data-action="show"]').click()
    page.wait_for_selector(f'#eval-details[data-evaluation-id="{beam["id"]}"]')
    details = service.http.get(f"/evaluations/{beam['id']}").json()["details"]
    for table, rows in (("#worst-sentences", details["worst"]), ("#sample-sentences", details["sample"])):
        shown = page.eval_on_selector_all(f"{table} tbody tr",
                                          "trs => trs.map(t => [...t.cells].map(c => c.innerText))")
        wanted = [[d["source"], d["reference"], d["hypothesis"] or "(empty)"] for d in rows]
        assert [[r[1], r[2], r[3]] for r in shown] == wanted
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_a_seq2seq_run_page-run.png"), full_page=True)

    # compared, the two runs' evaluations line up: one row per decoding
    plain = ready_report["attention"]["without_attention"]["run_id"]
    ui.goto(f"/compare?runs={plain},{run_id}")
    page.wait_for_selector("#compare-evals")
    assert page.locator("#compare-evals tbody tr").count() == 11
    greedy = page.locator("#compare-evals tbody tr", has_text="greedy").locator("td .strong").all_inner_texts()
    cells = ready_report["decoding"]["greedy"]
    assert greedy == [f"{c['error_rate'] * 100:.1f}%" for c in cells]
    ui.assert_no_errors()


def test_a_missing_report_says_what_produces_each_section_and_reproduce_fills_it_in(
    ui: Ui, service: Service, ready_report: dict[str, Any]
) -> None:
    page = ui.page
    other = LIMIT // 2  # nothing was trained with this limit yet
    ui.goto(f"/report?limit={other}")
    page.wait_for_selector("#report-theory")
    page.evaluate("window.__sameDocument = true")
    report = service.http.get("/report", params={"limit": other}).json()
    missing = {k: report[k]["missing"] for k in SECTIONS if not report[k]["ready"]}
    assert set(missing) == set(SECTIONS) - {"theory"}
    for key, text in missing.items():
        assert page.inner_text(f"#report-{key} .missing-note code") == text
    assert page.locator(".report-section img").count() == 0  # no image of a section that is not ready

    assert page.input_value("#reproduce-limit") == str(other)
    page.select_option("#reproduce-image", "mnist-8k")
    page.select_option("#reproduce-text", "spa-eng")
    page.fill("#reproduce-cnn-epochs", "1")
    page.fill("#reproduce-s2s-epochs", "1")
    page.click("#reproduce-submit")
    page.wait_for_selector("#reproduce-result .alert.success")
    sweep_id = service.http.get("/report", params={"limit": other}).json()["sweep"]["sweep_id"]
    assert sweep_id is not None
    configs = [service.run(r["run_id"])["config"] for r in service.http.get(f"/sweeps/{sweep_id}").json()["runs"]]
    assert [(c["data"], c["epochs"], c["limit"]) for c in configs] == [("mnist-8k", 1, other)] * 3
    # the page refreshes by itself: the sweep's sections turn ready without a reload
    page.wait_for_selector('#report-sweep[data-ready="true"]', timeout=TRAIN_TIMEOUT * 1000)
    page.wait_for_selector('#report-activations[data-ready="true"] #report-activations-img')
    page.wait_for_function("() => document.getElementById('report-activations-img').naturalWidth > 0")
    assert page.evaluate("window.__sameDocument") is True
    ui.assert_no_errors()
