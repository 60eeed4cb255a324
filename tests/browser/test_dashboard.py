"""The dashboard in headless Chromium against the real API and a real worker (see conftest.py).

Every check compares what the page shows with an independent request to the API.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from ml.data.idx import read_idx
from tests.browser.conftest import API_KEY, TRAIN_TIMEOUT, Ui
from tests.fixtures.services import Service

pytestmark = pytest.mark.browser

# Installed before the app starts: records every status the run page shows and every size its loss
# chart takes, so a test can tell the page followed the run live (no reload in between).
RECORDER = """
window.__seen = {statuses: [], points: []};
setInterval(() => {
  const badge = document.querySelector('#run-status [data-status]');
  const s = window.__seen;
  const status = badge ? badge.dataset.status : null;
  if (status && s.statuses[s.statuses.length - 1] !== status) s.statuses.push(status);
  const gd = document.getElementById('loss-chart');
  const n = gd && gd.data && gd.data[0] ? gd.data[0].x.length : null;
  if (n !== null && s.points[s.points.length - 1] !== n) s.points.push(n);
}, 40);
"""


def _run_ids(service: Service) -> set[str]:
    return {r["id"] for r in service.http.get("/runs", params={"limit": 1000}).json()["runs"]}


def _shown(chars: list[str]) -> list[str]:
    """Heatmap tick labels: spaces are drawn as a visible ␣."""
    return ["␣" if c == " " else c for c in chars]


def test_training_submitted_from_the_form_is_followed_live_to_success(
    ui: Ui, service: Service, trained_runs: dict[str, str]
) -> None:
    page = ui.page
    page.add_init_script(RECORDER)
    ui.goto("/train")
    # the assignment's CNN defaults are filled in
    defaults = {"learning_rate": "0.0005", "epochs": "20", "batch_size": "8", "dropout": "0.3",
                "l2_decay": "0", "seed": "42", "optimizer": "adam"}
    assert {k: page.input_value(f"#train-{k}") for k in defaults} == defaults
    cnn_sets = [d["name"] for d in service.http.get("/datasets").json()["datasets"] if d["model"] == "cnn"]
    shown_sets = page.eval_on_selector_all("#train-dataset option", "os => os.map(o => o.value)")
    assert shown_sets == cnn_sets and "mnist-8k" in shown_sets

    page.select_option("#train-dataset", "mnist-8k")
    page.fill("#train-epochs", "2")
    page.fill("#train-batch_size", "32")
    page.click("details.advanced summary")
    page.fill("#train-limit", "300")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]{32}$"))
    run_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__sameDocument = true")

    config = service.run(run_id)["config"]  # the form's values and defaults reached the API
    wanted = {"model": "cnn", "data": "mnist-8k", "epochs": 2, "batch_size": 32, "limit": 300,
              "learning_rate": 0.0005, "seed": 42}
    assert {k: config[k] for k in wanted} == wanted

    page.wait_for_selector('#run-status [data-status="succeeded"]', timeout=TRAIN_TIMEOUT * 1000)
    page.wait_for_function("() => document.getElementById('loss-chart').data[0].x.length === 2")
    metrics = service.http.get(f"/runs/{run_id}/metrics").json()
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    page.wait_for_function(
        "v => document.querySelector('#test-metric .stat-value').textContent === v",
        arg=f"{metrics['test_accuracy'] * 100:.1f}%")

    loss, val = ui.chart_data("#loss-chart")[0], ui.chart_data("#val-chart")[0]
    assert loss["x"] == [1, 2] and val["x"] == [1, 2]
    assert loss["y"] == pytest.approx([e["train_loss"] for e in metrics["epochs"]])
    assert val["y"] == pytest.approx([e["val_accuracy"] for e in metrics["epochs"]])
    assert "epoch 2 of 2" in page.inner_text(".stat.wide")
    # it was seen before it finished, then updated in place (same document, no reload)
    seen = page.evaluate("window.__seen")
    assert page.evaluate("window.__sameDocument") is True
    assert seen["statuses"][-1] == "succeeded" and seen["statuses"][0] in ("queued", "running"), seen
    assert seen["points"][-1] == 2 and seen["points"] == sorted(seen["points"]), seen
    hrefs = page.eval_on_selector_all(".links-row a", "as => as.map(a => a.getAttribute('href'))")
    assert f"/runs/{run_id}/checkpoint" in hrefs
    for href in hrefs:  # the plots, the checkpoint and the metrics answer
        assert service.http.get(href).status_code == 200, href

    ui.goto("/runs")  # the runs list shows it too
    row = page.locator(f'tr[data-run-id="{run_id}"]')
    row.wait_for()
    assert row.get_attribute("data-status") == "succeeded"
    assert "epoch 2 of 2" in row.inner_text()
    assert row.locator('[data-action="promote"]').count() == 1
    assert row.locator('[data-action="cancel"]').count() == 0
    ui.assert_no_errors()


def test_the_runs_page_discovers_a_new_run_and_shows_it_finish_without_reloading(
    ui: Ui, service: Service
) -> None:
    page = ui.page
    ui.goto("/runs")
    page.evaluate("window.__sameDocument = true")
    run_id = service.train(model="cnn", dataset="mnist-8k", limit=300, epochs=2, batch_size=32)["run_id"]
    row = page.locator(f'tr[data-run-id="{run_id}"][data-status="succeeded"]')
    row.wait_for(timeout=TRAIN_TIMEOUT * 1000)
    run = service.run(run_id)
    assert run["status"] == "succeeded"
    page.wait_for_function("s => document.querySelector(s).innerText.includes('test acc')",
                           arg=f'tr[data-run-id="{run_id}"]')
    text = row.inner_text()
    assert "epoch 2 of 2" in text and "mnist-8k" in text
    assert f"{run['test_metric'] * 100:.1f}%" in text
    assert f"{run['latest_epoch']['val_accuracy'] * 100:.1f}%" in text
    chips = row.locator(".chip").all_inner_texts()
    assert {"lr 0.0005", "epochs 2", "batch 32", "limit 300"} <= {" ".join(c.split()) for c in chips}
    assert page.evaluate("window.__sameDocument") is True
    ui.assert_no_errors()


def test_drawing_a_character_shows_the_prediction_and_activation_maps(
    ui: Ui, service: Service, trained_cnn: str
) -> None:
    page = ui.page
    ui.goto("/classify")
    page.wait_for_selector("#classify-run option", state="attached")
    models = {m["model"]: m for m in service.http.get("/models").json()["models"]}
    serving = models["cnn"]["serving_run_id"]
    assert page.input_value("#classify-run") == serving

    box = page.locator("#draw-canvas").bounding_box()
    assert box is not None
    x0, y0, side = box["x"], box["y"], box["width"]
    page.mouse.move(x0 + 0.3 * side, y0 + 0.2 * side)
    page.mouse.down()
    for i in range(1, 13):  # a "7": a bar, then a diagonal
        page.mouse.move(x0 + (0.3 + 0.035 * i) * side, y0 + 0.2 * side)
    for i in range(1, 13):
        page.mouse.move(x0 + (0.72 - 0.025 * i) * side, y0 + (0.2 + 0.055 * i) * side)
    page.mouse.up()
    page.wait_for_function("() => document.querySelectorAll('#maps-conv2 canvas').length === 16")
    page.wait_for_function("() => (document.getElementById('topk-chart').data || []).length === 1")

    data_url = page.evaluate("() => document.getElementById('draw-canvas').toDataURL('image/png')")
    png = base64.b64decode(data_url.split(",", 1)[1])
    files = {"file": ("drawing.png", png, "image/png")}
    expected = service.http.post("/predict", files=files,
                                 params={"run_id": serving, "top_k": 5, "include_input": "true"}).json()
    bars = ui.chart_data("#topk-chart")[0]
    assert bars["type"] == "bar"
    assert list(reversed(bars["y"])) == [t["class_name"] for t in expected["top_k"]]  # most likely on top
    assert list(reversed(bars["x"])) == pytest.approx([t["probability"] for t in expected["top_k"]])
    assert page.get_attribute("#model-input", "src") == expected["input_png"]
    assert page.inner_text("#verdict .verdict-label") == expected["class_name"]

    for layer, count, side_px in (("conv1", 8, 28), ("conv2", 16, 12)):
        maps = service.http.post("/activation-maps", files=files,
                                 params={"run_id": serving, "layer": layer, "format": "json"}).json()
        shown = page.eval_on_selector_all(
            f"#maps-{layer} canvas", "cs => cs.map(c => [c.width, c.height, Number(c.dataset.peak)])")
        assert [s[:2] for s in shown] == [[side_px, side_px]] * count
        peaks = [max(max(row) for row in channel) for channel in maps["maps"]]
        assert [s[2] for s in shown] == pytest.approx(peaks)
    ui.assert_no_errors()


def test_a_chosen_image_file_is_classified(ui: Ui, service: Service, trained_cnn: str, shared_data) -> None:
    digits = read_idx(shared_data / "mnist-8k" / "mnist8k-images-idx3-ubyte.gz")  # (N, 28, 28) uint8
    image = Image.fromarray(255 - digits[0]).resize((140, 140))  # dark ink on white, larger than 28x28
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    png = buffer.getvalue()
    page = ui.page
    ui.goto("/classify")
    page.wait_for_selector("#classify-run option", state="attached")
    run_id = page.input_value("#classify-run")
    page.set_input_files("#classify-file",
                         files=[{"name": "digit.png", "mimeType": "image/png", "buffer": png}])
    page.wait_for_function("() => document.querySelectorAll('#maps-conv1 canvas').length === 8")
    expected = service.http.post("/predict", files={"file": ("digit.png", png, "image/png")},
                                 params={"run_id": run_id, "top_k": 5, "include_input": "true"}).json()
    page.wait_for_function("v => document.getElementById('model-input').src === v", arg=expected["input_png"])
    bars = ui.chart_data("#topk-chart")[0]
    assert list(reversed(bars["x"])) == pytest.approx([t["probability"] for t in expected["top_k"]])
    ui.assert_no_errors()


def test_beam_search_lists_three_hypotheses_and_an_attention_heatmap(
    ui: Ui, service: Service, trained_seq2seq: str
) -> None:
    page = ui.page
    ui.goto("/transliterate")
    page.wait_for_selector("#translit-run option", state="attached")
    models = {m["model"]: m for m in service.http.get("/models").json()["models"]}
    serving = models["seq2seq"]["serving_run_id"]
    assert page.input_value("#translit-run") == serving == trained_seq2seq
    text = "tengo frío."
    page.fill("#translit-text", text)
    page.fill("#translit-beam", "3")
    page.fill("#translit-nbest", "3")
    page.click("#translit-submit")
    beam_items = '.result[data-decoding="beam"] .hypothesis'
    page.wait_for_function("s => document.querySelectorAll(s).length === 3", arg=beam_items)
    page.wait_for_function(
        "() => (document.querySelector('.chart.heatmap[data-decoding=\"beam\"]').data || []).length === 1")

    body = {"text": text, "run_id": serving, "return_attention": True}
    beam = service.http.post("/transliterate", json={**body, "decoding": "beam", "beam_size": 3, "n_best": 3,
                                                      "length_penalty": 0}).json()
    greedy = service.http.post("/transliterate", json={**body, "decoding": "greedy"}).json()
    shown = page.eval_on_selector_all(beam_items,
                                      "bs => bs.map(b => [b.dataset.text, Number(b.dataset.score)])")
    assert [s[0] for s in shown] == [h["text"] for h in beam["hypotheses"]]
    assert [s[1] for s in shown] == pytest.approx([h["score"] for h in beam["hypotheses"]])
    greedy_shown = page.eval_on_selector_all('.result[data-decoding="greedy"] .hypothesis',
                                             "bs => bs.map(b => b.dataset.text)")
    assert greedy_shown == [greedy["output"]]

    heat = ui.chart_data('.chart.heatmap[data-decoding="beam"]')[0]
    assert heat["type"] == "heatmap"
    assert heat["z"] == [pytest.approx(row) for row in beam["attention"]]
    ticks = page.eval_on_selector(
        '.chart.heatmap[data-decoding="beam"]',
        "el => [Array.from(el.layout.xaxis.ticktext), Array.from(el.layout.yaxis.ticktext)]")
    assert ticks == [_shown(beam["input_chars"]), _shown(beam["output_chars"])]

    page.locator(beam_items).nth(1).click()  # attention exists for the best one only: the page says so
    assert page.locator(beam_items).nth(1).get_attribute("aria-pressed") == "true"
    assert "best hypothesis only" in page.inner_text('.result[data-decoding="beam"] .attention-note')
    ui.assert_no_errors()


def test_the_form_switches_to_the_seq2seq_defaults_and_datasets(ui: Ui, service: Service) -> None:
    page = ui.page
    ui.goto("/train")
    page.check('input[name="model"][value="seq2seq"]')
    defaults = {"learning_rate": "0.003", "epochs": "50", "batch_size": "64", "hidden_size": "128",
                "dropout": "0.3"}
    assert {k: page.input_value(f"#train-{k}") for k in defaults} == defaults
    assert page.is_checked("#train-attention")
    datasets = service.http.get("/datasets").json()["datasets"]
    pair_sets = [d["name"] for d in datasets if d["model"] == "seq2seq"]
    shown = page.eval_on_selector_all("#train-dataset option", "os => os.map(o => o.value)")
    assert shown == pair_sets and "spa-eng" in shown
    assert page.input_value("#train-dataset") == "spa-eng"
    assert page.locator("#train-limit").count() == 1  # the advanced "examples per split" field
    page.check('input[name="model"][value="cnn"]')
    assert page.input_value("#train-learning_rate") == "0.0005"
    ui.assert_no_errors()


def test_invalid_form_values_show_the_api_messages_next_to_the_fields(ui: Ui, service: Service) -> None:
    page = ui.page
    before = _run_ids(service)
    ui.goto("/train")
    page.fill("#train-learning_rate", "-1")
    page.fill("#train-epochs", "0")
    page.click("#train-submit")
    page.wait_for_selector('[data-error-for="learning_rate"]:not([hidden])')

    answer = service.http.post("/train", json={"model": "cnn", "dataset": "kmnist", "learning_rate": -1,
                                               "epochs": 0})
    assert answer.status_code == 422
    messages = {e["field"]: e["message"] for e in answer.json()["errors"]}
    assert set(messages) == {"learning_rate", "epochs"}
    assert page.inner_text('[data-error-for="learning_rate"]') == messages["learning_rate"]
    assert page.inner_text('[data-error-for="epochs"]') == messages["epochs"]
    assert page.get_attribute("#train-learning_rate", "aria-invalid") == "true"
    assert answer.json()["detail"] in page.inner_text("#form-error")
    assert page.locator('[data-error-for="batch_size"]').is_hidden()
    assert _run_ids(service) == before  # nothing was queued
    assert re.search(r"#/train$", page.url)
    ui.assert_no_errors(allow=(r"status of 422",))  # the refused request itself


def test_sweep_from_the_form_shows_the_learning_rate_table(ui: Ui, service: Service) -> None:
    page = ui.page
    ui.goto("/train")
    page.select_option("#train-dataset", "mnist-8k")
    page.fill("#train-epochs", "1")
    page.fill("#train-batch_size", "32")
    page.check("#train-sweep")
    assert page.input_value("#train-learning_rates") == "0.01, 0.0005, 0.00001"
    assert page.locator("#train-learning_rate").count() == 0
    page.click("details.advanced summary")
    page.fill("#train-limit", "300")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r"#/sweeps/[0-9a-f]{32}$"))
    sweep_id = page.url.rsplit("/", 1)[1]
    rows = "table.sweep-table tbody tr"
    page.wait_for_function(
        "s => { const rs = document.querySelectorAll(s); return rs.length === 3 && "
        "[...rs].every(r => r.querySelector('[data-status=\"succeeded\"]')); }",
        arg=rows, timeout=TRAIN_TIMEOUT * 1000)

    sweep = service.http.get(f"/sweeps/{sweep_id}").json()
    assert [r["learning_rate"] for r in sweep["runs"]] == [0.01, 0.0005, 0.00001]
    shown = page.eval_on_selector_all(rows,
                                      "rs => rs.map(r => [r.dataset.runId, r.classList.contains('best')])")
    assert shown == [[r["run_id"], r["run_id"] == sweep["best_run_id"]] for r in sweep["runs"]]
    assert sum(best for _, best in shown) == 1
    page.wait_for_function(
        "() => (document.getElementById('sweep-loss-chart').data || []).every(t => t.x.length === 1)")
    traces = ui.chart_data("#sweep-val-chart")
    assert [t["name"] for t in traces] == ["lr=0.01", "lr=0.0005", "lr=0.00001"]
    for trace, row in zip(traces, sweep["runs"], strict=True):
        assert trace["y"] == pytest.approx([row["final_val_metric"]])
    ui.assert_no_errors()


def test_with_an_api_key_the_page_asks_for_it_and_sends_it(ui: Ui, keyed_api: Service) -> None:
    page = ui.page
    ui.goto("/train")
    assert page.is_visible("#api-key-form")  # GET /dashboard/settings says a key is needed
    page.wait_for_selector("#train-form .field-error")  # even listing the datasets needs a key now
    assert "API key" in page.inner_text("#train-form")
    assert keyed_api.http.get("/runs").json()["runs"] == []  # the test's own client sends the key

    page.fill("#api-key-input", API_KEY)
    page.click("#api-key-form button[type=submit]")
    page.wait_for_selector("#banner.success")  # shown once the key was handed over (cookie set)
    assert page.evaluate("localStorage.getItem('inkwell.apiKey')") == API_KEY
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["inkwell_api_key"]["httpOnly"] and cookies["inkwell_api_key"]["sameSite"] == "Strict"
    ui.goto("/runs")
    ui.goto("/train")
    page.select_option("#train-dataset", "mnist-8k")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]{32}$"))
    run = keyed_api.run(page.url.rsplit("/", 1)[1])
    assert run["status"] == "queued" and run["dataset"] == "mnist-8k"  # no worker here: it waits
    ui.assert_no_errors(allow=(r"status of 401",))  # the first, keyless requests
