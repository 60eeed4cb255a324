"""The Serving page in headless Chromium against a real API process that serves a real trained CNN.

The API here is a process of its own (its batchers start empty, so its GET /serving/stats counts only
this module's requests), serving the session's trained CNN (the checkpoint the worker wrote, downloaded
through the API). Every check compares what the page shows with an independent GET /serving/stats.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ml.data.idx import read_idx
from tests.api.trained import build_serving
from tests.browser.conftest import Ui, _start
from tests.fixtures.services import Service

pytestmark = pytest.mark.browser

SEQUENTIAL = 5  # one request at a time: batches of one
CONCURRENT = 16  # sent at once: the batcher may put several in one model call
SCREENSHOT_COPY = Path("/tmp/serving-page.png")
STATS_CALLS = """
window.__statsCalls = 0;
const realFetch = window.fetch;
window.fetch = (input, init) => {
  if (String(input).includes('/serving/stats')) window.__statsCalls += 1;
  return realFetch(input, init);
};
"""


@pytest.fixture(scope="module")
def serving_api(
    service: Service, trained_cnn: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, str]]:
    """A fresh API process (no worker) whose one run is the session's trained CNN; (service, run id)."""
    tmp = tmp_path_factory.mktemp("serving-api")
    download = service.http.get(f"/runs/{trained_cnn}/checkpoint")
    assert download.status_code == 200, download.text[:300]
    checkpoint = tmp / "cnn-checkpoint.pt"
    checkpoint.write_bytes(download.content)
    svc = _start(tmp, shared_data, with_worker=False)
    try:
        # the run, recorded the way a worker leaves it, in the same database and artifacts folder
        writer = build_serving(tmp, shared_data, database_url=f"sqlite:///{tmp / 'inkwell.db'}")
        try:
            run_id = writer.add_run("cnn", checkpoint, [0.9])
        finally:
            writer.client.close()
            writer.app.state.engine.dispose()
        yield svc, run_id
    finally:
        svc.stop()


@pytest.fixture
def serving_ui(ui: Ui, serving_api: tuple[Service, str]) -> Ui:
    """The test's page, pointed at the module's own API process."""
    ui.base_url = serving_api[0].url
    return ui


def _digit_pngs(shared_data: Path, count: int) -> list[bytes]:
    digits = read_idx(shared_data / "mnist-8k" / "mnist8k-images-idx3-ubyte.gz")  # (N, 28, 28) uint8
    out = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(255 - digits[i]).resize((84, 84)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _stats(svc: Service) -> dict[str, dict[str, Any]]:
    response = svc.http.get("/serving/stats")
    assert response.status_code == 200, response.text
    return {e["endpoint"]: e for e in response.json()["endpoints"]}


def _card(endpoint: str) -> str:
    return f'.serving-card[data-endpoint="{endpoint}"]'


def _facts(ui: Ui, endpoint: str) -> dict[str, str]:
    return ui.page.eval_on_selector_all(
        f"{_card(endpoint)} [data-stat]",
        "els => Object.fromEntries(els.map(e => [e.dataset.stat, e.textContent.trim()]))")


def test_the_serving_page_shows_the_batches_of_real_predictions(
    serving_ui: Ui, serving_api: tuple[Service, str], shared_data: Path, tmp_path: Path
) -> None:
    svc, run_id = serving_api
    ui, page = serving_ui, serving_ui.page
    page.add_init_script(STATS_CALLS)
    ui.goto("/runs")
    page.click('nav a[data-nav="serving"]')  # the navigation has the page
    page.wait_for_selector(f"{_card('predict')} .serving-empty")
    assert page.get_attribute('nav a[data-nav="serving"]', "aria-current") == "page"
    assert page.title() == "Serving · inkwell"
    page.evaluate("window.__sameDocument = true")

    # nothing served yet: both endpoints say so instead of drawing empty charts
    before = _stats(svc)
    assert before["predict"]["batches"] == before["transliterate"]["batches"] == 0
    for endpoint in ("predict", "transliterate"):
        card = page.locator(_card(endpoint))
        assert "No requests served yet." in card.inner_text()
        assert card.locator(".size-chart, .serving-times").count() == 0
        facts = _facts(ui, endpoint)
        limit = before[endpoint]["queue_limit"]
        assert facts == {"batching": "batching on", "models": "0 models loaded", "queue": f"0 / {limit} waiting",
                         "batches": "0", "items": "0", "rejected": "0", "mean": "—"}

    # real predictions from the trained CNN: some one by one, then a burst at once
    pngs = _digit_pngs(shared_data, SEQUENTIAL + CONCURRENT)

    def predict(png: bytes) -> dict[str, Any]:
        answer = svc.http.post("/predict", files={"file": ("digit.png", png, "image/png")})
        assert answer.status_code == 200, answer.text
        return answer.json()

    answers = [predict(png) for png in pngs[:SEQUENTIAL]]
    with ThreadPoolExecutor(CONCURRENT) as pool:
        answers += list(pool.map(predict, pngs[SEQUENTIAL:]))
    assert {a["run_id"] for a in answers} == {run_id}
    sent = len(answers)

    # the open page picks the new figures up by itself (no reload)
    page.wait_for_function("([s, n]) => document.querySelector(s)?.textContent === n",
                           arg=[f'{_card("predict")} [data-stat="items"]', str(sent)], timeout=15_000)
    stats = _stats(svc)
    predict_stats, translit = stats["predict"], stats["transliterate"]
    assert predict_stats["items"] == sent and predict_stats["rejected"] == 0
    assert SEQUENTIAL < predict_stats["batches"] <= sent  # the one-by-one requests were batches of one
    assert predict_stats["recent_batches"] == predict_stats["batches"]
    page.wait_for_function("([s, n]) => document.querySelector(s)?.textContent === n",
                           arg=[f'{_card("predict")} [data-stat="batches"]', str(predict_stats["batches"])])
    facts = _facts(ui, "predict")
    assert facts["batches"] == str(predict_stats["batches"])
    assert facts["items"] == str(sent)
    assert facts["rejected"] == "0"
    assert facts["models"] == "1 model loaded" and facts["batching"] == "batching on"
    assert facts["queue"] == f"{predict_stats['queue_depth']} / {predict_stats['queue_limit']} waiting"
    assert float(facts["mean"]) == pytest.approx(predict_stats["mean_batch_size"], rel=5e-3)

    # the batch-size bars: one per bucket, counts and heights as the API reports them
    bars = page.eval_on_selector_all(
        f"{_card('predict')} .size-col",
        "cs => cs.map(c => [c.dataset.bucket, Number(c.dataset.count), c.querySelector('.size-count').textContent, "
        "parseFloat(c.querySelector('.size-bar').style.height)])")
    sizes = predict_stats["batch_sizes"]
    assert [b[0] for b in bars] == sorted(sizes, key=int)
    assert {b[0]: b[1] for b in bars} == sizes
    assert sum(sizes.values()) == predict_stats["batches"] and sizes["1"] >= SEQUENTIAL
    top = max(sizes.values())
    for bucket, count, label, height in bars:
        assert label == (str(count) if count else "")
        assert height == pytest.approx(100 * count / top, abs=0.05), bucket
    visible = page.locator(f"{_card('predict')} .size-col").nth(0).locator(".size-bar").bounding_box()
    assert visible is not None and visible["height"] > 20  # the batches of one are drawn, not just listed

    # the wait and model-time percentiles, in ms
    shown = page.eval_on_selector_all(
        f"{_card('predict')} .serving-times tbody tr",
        "rs => rs.map(r => [r.dataset.times, Object.fromEntries([...r.querySelectorAll('td')]"
        ".map(td => [td.dataset.p, td.dataset.value === '' ? null : Number(td.dataset.value)]))])")
    assert [row[0] for row in shown] == ["queue_wait_ms", "batch_ms"]
    for key, values in shown:
        assert values == pytest.approx(predict_stats[key]), key
        assert all(v is not None for v in values.values()), key
    assert predict_stats["batch_ms"]["max"] > 0

    # /transliterate served nothing: still the empty state
    assert translit["batches"] == 0
    assert "No requests served yet." in page.inner_text(_card("transliterate"))
    assert page.evaluate("window.__sameDocument") is True

    shot = tmp_path / "serving-page.png"
    page.screenshot(path=str(shot), full_page=True)
    shutil.copyfile(shot, SCREENSHOT_COPY)

    # leaving the page stops its timer
    page.click('nav a[data-nav="runs"]')
    page.wait_for_selector("table.runs-table", state="attached")
    calls = page.evaluate("window.__statsCalls")
    page.wait_for_timeout(4500)  # more than two refresh periods
    assert page.evaluate("window.__statsCalls") == calls
    ui.assert_no_errors()


def test_a_refused_request_shows_why_and_the_page_recovers(
    serving_ui: Ui, serving_api: tuple[Service, str]
) -> None:
    svc, _ = serving_api
    ui, page = serving_ui, serving_ui.page
    page.route("**/serving/stats", lambda route: route.fulfill(
        status=401, content_type="application/json", body='{"detail": "a valid X-API-Key header is required"}'))
    ui.goto("/serving")
    error = page.locator("#main .live-error [role=alert]")
    error.wait_for()
    text = error.inner_text()
    assert "Could not load the serving stats:" in text and "API key" in text
    assert page.is_visible("#api-key-form")  # the field to give the key is shown
    assert page.locator(".serving-card").count() == 0

    page.unroute("**/serving/stats")  # the next refresh (within 2 s) gets an answer
    page.wait_for_selector(_card("predict"), timeout=10_000)
    assert page.locator("#main .live-error [role=alert]").count() == 0
    stats = _stats(svc)
    assert _facts(ui, "predict")["items"] == str(stats["predict"]["items"])
    ui.assert_no_errors(allow=(r"status of 401",))
