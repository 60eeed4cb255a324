"""Uploading a dataset from the New-training page, in headless Chromium against the real API and worker
(see conftest.py): the page's file input sends the files to POST /datasets, shows what the API made of
them, selects the new dataset, and a training queued on it from the form runs; a refused upload shows
the API's own reason.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.browser.conftest import SCREENSHOTS, TRAIN_TIMEOUT, Ui
from tests.fixtures.services import Service

pytestmark = pytest.mark.browser

TRAIN_PAIRS = 8
VAL_PAIRS = 4

# Installed before the app starts: every (disabled, text) state the Upload button goes through, and
# whether the progress bar was ever shown, so a test can tell the page showed the upload in flight.
UPLOAD_RECORDER = """
window.__upload = {button: [], progressShown: false};
new MutationObserver(() => {
  const b = document.getElementById('upload-submit');
  const s = window.__upload;
  if (b) {
    const state = [b.disabled, b.textContent];
    const last = s.button[s.button.length - 1];
    if (!last || last[0] !== state[0] || last[1] !== state[1]) s.button.push(state);
  }
  const p = document.querySelector('.upload-progress');
  if (p && !p.hidden) s.progressShown = true;
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""


def _lines(path: Path, n: int) -> str:
    with path.open(encoding="utf-8") as f:
        return "".join(next(f) for _ in range(n))


@pytest.fixture
def pair_files(tmp_path: Path, shared_data: Path) -> list[Path]:
    """A few lines of the shared spa-eng train and val files, as an uploader's own train-/val- files."""
    train, val = tmp_path / "train-mini.txt", tmp_path / "val-mini.txt"
    train.write_text(_lines(shared_data / "spa-eng" / "train-eng-spa.txt", TRAIN_PAIRS), encoding="utf-8")
    val.write_text(_lines(shared_data / "spa-eng" / "val-eng-spa.txt", VAL_PAIRS), encoding="utf-8")
    return [train, val]


def _dataset_names(service: Service) -> list[str]:
    return [d["name"] for d in service.http.get("/datasets").json()["datasets"]]


def test_uploaded_pairs_are_described_selected_and_trained_on(
    ui: Ui, service: Service, pair_files: list[Path]
) -> None:
    page = ui.page
    page.add_init_script(UPLOAD_RECORDER)
    name = f"mini-pairs-{uuid.uuid4().hex[:8]}"
    ui.goto("/train")
    assert page.is_checked('input[name="model"][value="cnn"]')  # the page opens on the CNN, as before

    page.click("#dataset-upload summary")
    # the inputs are reachable by their labels
    page.get_by_label("Dataset name").fill(name)
    page.get_by_label("Files").set_input_files([str(p) for p in pair_files])
    assert page.get_attribute("#upload-files", "accept") == ".txt,.gz,.zip,.tar.gz,.tgz"
    assert "2 files" in page.inner_text("#upload-chosen")
    assert "train-mini.txt" in page.inner_text("#upload-chosen")
    page.click("#upload-submit")
    result = page.locator("#upload-status .upload-result")
    result.wait_for()

    dataset = service.http.get(f"/datasets/{name}").json()  # what the API stored
    assert (dataset["kind"], dataset["model"], dataset["source"]) == ("pairs", "seq2seq", "upload")
    assert dataset["counts"] == {"train": TRAIN_PAIRS, "val": VAL_PAIRS}
    assert result.get_attribute("data-dataset") == name
    assert page.inner_text('#upload-status [data-fact="kind"]') == "text pairs"
    assert page.inner_text('#upload-status [data-fact="counts"]') == f"train {TRAIN_PAIRS} · val {VAL_PAIRS}"
    assert page.inner_text('#upload-status [data-fact="sha256"]') == f"sha256 {dataset['sha256'][:12]}"
    assert f"Uploaded “{name}”" in result.inner_text()
    # it was shown in flight: the button disabled as "Uploading…", the progress bar visible, then back
    seen = page.evaluate("window.__upload")
    assert [True, "Uploading…"] in seen["button"] and seen["button"][-1] == [False, "Upload"], seen
    assert seen["progressShown"] is True
    assert page.input_value("#upload-name") == "" and page.input_value("#upload-files") == ""

    # the form switched to the seq2seq model (a pairs dataset trains it) and selected the new dataset,
    # in the list the API gives now
    assert page.is_checked('input[name="model"][value="seq2seq"]')
    assert page.input_value("#train-dataset") == name
    pair_sets = [d["name"] for d in service.http.get("/datasets").json()["datasets"] if d["model"] == "seq2seq"]
    assert page.eval_on_selector_all("#train-dataset option", "os => os.map(o => o.value)") == pair_sets
    assert page.locator("#train-hidden_size").count() == 1  # the seq2seq fields
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "test_dataset_upload-after-upload.png"), full_page=True)

    # a training queued from the form on it runs to the end on the worker
    page.fill("#train-epochs", "1")
    page.fill("#train-batch_size", "4")
    page.fill("#train-hidden_size", "16")
    page.click("#train-submit")
    page.wait_for_url(re.compile(r"#/runs/[0-9a-f]{32}$"))
    run_id = page.url.rsplit("/", 1)[1]
    run = service.run(run_id)
    assert (run["model"], run["dataset"]) == ("seq2seq", name)
    assert {k: run["config"][k] for k in ("epochs", "batch_size", "hidden_size")} == {
        "epochs": 1, "batch_size": 4, "hidden_size": 16}
    finished = service.wait_finished(run_id, TRAIN_TIMEOUT)
    assert finished["status"] == "succeeded", f"{finished['status']}: {finished['error']}\n{service.logs()}"
    assert service.http.get(f"/datasets/{name}").json()["runs"] == 1
    ui.assert_no_errors()


def test_a_refused_upload_shows_the_api_reason_and_changes_nothing(
    ui: Ui, service: Service, tmp_path: Path
) -> None:
    page = ui.page
    notes = tmp_path / "notes.txt"
    notes.write_text("remember to buy milk\n", encoding="utf-8")
    name = f"notes-{uuid.uuid4().hex[:8]}"
    before = _dataset_names(service)
    ui.goto("/train")
    selected = page.input_value("#train-dataset")
    page.click("#dataset-upload summary")

    page.click("#upload-submit")  # nothing chosen yet: the page says what is missing, asks nobody
    page.wait_for_selector("#upload-status .alert.error")
    assert "give the dataset a name" in page.inner_text("#upload-status")

    page.fill("#upload-name", name)
    page.set_input_files("#upload-files", str(notes))
    page.click("#upload-submit")
    page.wait_for_function(
        "() => (document.querySelector('#upload-status .alert.error') || {}).textContent?.includes('notes.txt')")

    # the API's own answer to the same upload
    with notes.open("rb") as f:
        answer = service.http.post("/datasets", data={"name": name}, files=[("file", ("notes.txt", f, "text/plain"))])
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    alert = page.locator("#upload-status .alert.error")
    assert alert.get_attribute("role") == "alert"
    assert alert.inner_text() == f"Upload refused: {detail}"
    assert page.input_value("#upload-name") == name  # kept, to fix and try again
    assert not page.is_disabled("#upload-submit")
    assert page.input_value("#train-dataset") == selected  # the training form is as it was
    assert page.is_checked('input[name="model"][value="cnn"]')
    assert page.locator("#form-error *").count() == 0
    assert _dataset_names(service) == before  # nothing was stored
    assert re.search(r"#/train$", page.url)
    ui.assert_no_errors(allow=(r"status of 422",))  # the refused request itself
