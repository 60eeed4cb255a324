"""Choosing a run's checkpoint: `"checkpoint": "best" | "last"` on /predict, /activation-maps and /transliterate,
and GET /runs/{id}/checkpoint?which=best|last.

The runs hold real trained weights: the "last" checkpoint (checkpoint.pt) of the CNN run is the 2-epoch CNN and
its "best" (best.pt) the 1-epoch CNN of another seed, put under the run's best key in the app's store, so the
two really answer differently. A run trained before best.pt existed has only checkpoint.pt.
"""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event

from core.storage import checkpoint_key_for
from ml.checkpoint import load_checkpoint
from ml.imageprep import pixels_to_tensor
from ml.inference import Classifier, Transliterator, load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    Serving,
    TrainedModels,
    build_serving,
    digit_levels,
    digit_png_dark_on_light,
    make_serving,
    replace_file,
    trained,
)

SENTENCE = "tengo hambre."


def put_best(app: Serving, run_id: str, checkpoint: Path) -> Path:
    """`checkpoint` stored as the run's best.pt, the way the worker uploads it; returns the stored file."""
    target = app.app.state.store.local_path(checkpoint_key_for(run_id, "best"))
    replace_file(checkpoint, target)
    return target


@pytest.fixture(scope="module")
def chosen(trained: TrainedModels, shared_data: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Serving]:
    """An app (SQLite: these tests are about which weights answer, not which run) with runs "cnn" (best.pt:
    cnn_other, epoch 1; checkpoint.pt: cnn, epoch 2), "cnn_old" (no best.pt) and "seq2seq" (best.pt: the plain
    model; checkpoint.pt: the attention model). The CNN run has the better metric: it serves by default."""
    made = build_serving(tmp_path_factory.mktemp("chosen"), shared_data)
    made.run_ids["cnn"] = made.add_run("cnn", trained.cnn, [0.8, 0.9])
    put_best(made, made.run_ids["cnn"], trained.cnn_other)
    made.run_ids["cnn_old"] = made.add_run("cnn", trained.cnn, [0.5])
    made.run_ids["seq2seq"] = made.add_run("seq2seq", trained.seq2seq_attention, [0.9])
    put_best(made, made.run_ids["seq2seq"], trained.seq2seq_plain)
    yield made
    made.client.close()
    made.app.state.engine.dispose()


@pytest.fixture(scope="module")
def last_cnn(trained: TrainedModels) -> Classifier:
    loaded = load_predictor(trained.cnn, "cpu")
    assert isinstance(loaded, Classifier)
    return loaded


@pytest.fixture(scope="module")
def best_cnn(trained: TrainedModels) -> Classifier:
    loaded = load_predictor(trained.cnn_other, "cpu")
    assert isinstance(loaded, Classifier)
    return loaded


def epoch_of(path: Path) -> int:
    return int(load_checkpoint(path)["epoch"])


def pixels(trained: TrainedModels, i: int = 0) -> list[list[int]]:
    return digit_levels(trained.digits.images[i]).astype(int).tolist()


def probabilities(model: Classifier, trained: TrainedModels, i: int = 0) -> list[float]:
    return model.predict(pixels_to_tensor(pixels(trained, i)))[0].probabilities


def test_the_two_checkpoints_really_differ(trained: TrainedModels, best_cnn: Classifier, last_cnn: Classifier,
                                           ) -> None:
    assert (epoch_of(trained.cnn_other), epoch_of(trained.cnn)) == (1, 2)
    assert not np.allclose(probabilities(best_cnn, trained), probabilities(last_cnn, trained), atol=1e-3)


def test_predict_best_and_last_are_answered_by_their_own_weights(
    chosen: Serving, trained: TrainedModels, best_cnn: Classifier, last_cnn: Classifier
) -> None:
    grid = pixels(trained, 3)
    best = chosen.client.post("/predict", json={"pixels": grid, "checkpoint": "best"})
    last = chosen.client.post("/predict", json={"pixels": grid, "checkpoint": "last"})
    default = chosen.client.post("/predict", json={"pixels": grid})
    for response in (best, last, default):
        assert response.status_code == 200, response.text
        assert response.json()["run_id"] == chosen.run_ids["cnn"]
    assert (best.json()["checkpoint"], best.json()["checkpoint_epoch"]) == ("best", 1)
    assert (last.json()["checkpoint"], last.json()["checkpoint_epoch"]) == ("last", 2)
    assert np.allclose(best.json()["probabilities"], probabilities(best_cnn, trained, 3), atol=1e-6)
    assert np.allclose(last.json()["probabilities"], probabilities(last_cnn, trained, 3), atol=1e-6)
    assert not np.allclose(best.json()["probabilities"], last.json()["probabilities"], atol=1e-3)
    assert default.json() == best.json()  # best is the default


def test_predict_takes_the_checkpoint_from_the_query_and_from_a_form(
    chosen: Serving, trained: TrainedModels, last_cnn: Classifier
) -> None:
    query = chosen.client.post("/predict?checkpoint=last", json={"pixels": pixels(trained)})
    assert query.status_code == 200, query.text
    assert query.json()["checkpoint"] == "last"
    assert np.allclose(query.json()["probabilities"], probabilities(last_cnn, trained), atol=1e-6)
    png = digit_png_dark_on_light(trained.digits.images[0])
    form_last = chosen.client.post("/predict", files={"file": ("d.png", png, "image/png")},
                                   data={"checkpoint": "last", "run_id": chosen.run_ids["cnn"]})
    form_best = chosen.client.post("/predict?checkpoint=last", files={"file": ("d.png", png, "image/png")},
                                   data={"checkpoint": "best"})  # the body's field wins, as for every option
    assert form_last.status_code == 200 and form_best.status_code == 200, (form_last.text, form_best.text)
    assert (form_last.json()["checkpoint"], form_last.json()["checkpoint_epoch"]) == ("last", 2)
    assert (form_best.json()["checkpoint"], form_best.json()["checkpoint_epoch"]) == ("best", 1)
    assert form_last.json()["probabilities"] != form_best.json()["probabilities"]


def test_activation_maps_of_each_checkpoint(
    chosen: Serving, trained: TrainedModels, best_cnn: Classifier, last_cnn: Classifier
) -> None:
    grid = pixels(trained, 1)
    tensor = pixels_to_tensor(grid)
    for which, model, epoch in (("best", best_cnn, 1), ("last", last_cnn, 2)):
        response = chosen.client.post("/activation-maps?format=json", json={"pixels": grid, "checkpoint": which})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["checkpoint"], body["checkpoint_epoch"]) == (which, epoch)
        assert np.allclose(np.array(body["maps"]), model.activations(tensor, "conv1"), atol=6e-5)
        picture = chosen.client.post(f"/activation-maps?checkpoint={which}", json={"pixels": grid})
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert (picture.headers["x-checkpoint"], picture.headers["x-checkpoint-epoch"]) == (which, str(epoch))
    default = chosen.client.post("/activation-maps", json={"pixels": grid, "format": "json"}).json()
    assert default["checkpoint"] == "best"


def test_transliterate_best_and_last(chosen: Serving, trained: TrainedModels) -> None:
    plain, attentive = load_predictor(trained.seq2seq_plain, "cpu"), load_predictor(trained.seq2seq_attention, "cpu")
    assert isinstance(plain, Transliterator) and isinstance(attentive, Transliterator)
    answers = {}
    for which in ("best", "last", None):
        body = {"text": SENTENCE, "return_attention": True, **({"checkpoint": which} if which else {})}
        response = chosen.client.post("/transliterate", json=body)
        assert response.status_code == 200, response.text
        answers[which] = response.json()
    assert answers[None] == answers["best"]
    assert (answers["best"]["checkpoint"], answers["best"]["checkpoint_epoch"]) == ("best", 1)
    assert (answers["last"]["checkpoint"], answers["last"]["checkpoint_epoch"]) == ("last", 1)
    assert answers["best"]["attention"] is None  # best.pt is the model without attention
    assert answers["last"]["attention"] is not None
    assert answers["best"]["output"] == plain.translate([SENTENCE])[0][0].text
    assert answers["last"]["output"] == attentive.translate([SENTENCE])[0][0].text
    assert answers["best"]["hypotheses"][0]["score"] != answers["last"]["hypotheses"][0]["score"]
    batch = chosen.client.post("/transliterate", json={"texts": [SENTENCE, "hola"], "checkpoint": "last"})
    assert batch.status_code == 200, batch.text
    assert (batch.json()["checkpoint"], batch.json()["checkpoint_epoch"]) == ("last", 1)
    assert batch.json()["results"][0]["output"] == answers["last"]["output"]


def test_a_run_without_best_pt_answers_best_with_its_last(
    chosen: Serving, trained: TrainedModels, last_cnn: Classifier
) -> None:
    old = chosen.run_ids["cnn_old"]
    for which in ("best", "last"):
        response = chosen.client.post("/predict", json={"pixels": pixels(trained), "run_id": old, "checkpoint": which})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["run_id"], body["checkpoint"], body["checkpoint_epoch"]) == (old, "last", 2)
        assert np.allclose(body["probabilities"], probabilities(last_cnn, trained), atol=1e-6)
    maps = chosen.client.post("/activation-maps?format=json", json={"pixels": pixels(trained), "run_id": old})
    assert maps.status_code == 200 and maps.json()["checkpoint"] == "last"
    # both requests went to one model: one batcher for the file that answered
    assert (old, "last") in chosen.app.state.batchers._batchers
    assert (old, "best") not in chosen.app.state.batchers._batchers


@pytest.mark.parametrize(
    "path, body, query",
    [
        ("/predict", {"checkpoint": "newest"}, ""),
        ("/predict", {"checkpoint": None}, "?checkpoint=first"),
        ("/predict", {"checkpoint": 1}, ""),
        ("/activation-maps", {"checkpoint": "Best"}, ""),
        ("/activation-maps", {}, "?checkpoint=final"),
    ],
)
def test_a_bad_checkpoint_is_422_on_image_requests(chosen: Serving, trained: TrainedModels, path: str, body: dict,
                                                   query: str) -> None:
    response = chosen.client.post(f"{path}{query}", json={"pixels": pixels(trained), **body})
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["checkpoint"]


def test_a_bad_checkpoint_is_422_in_a_form_and_on_transliterate(chosen: Serving, trained: TrainedModels) -> None:
    png = digit_png_dark_on_light(trained.digits.images[0])
    form = chosen.client.post("/predict", files={"file": ("d.png", png, "image/png")}, data={"checkpoint": "worst"})
    assert form.status_code == 422 and "checkpoint" in form.json()["detail"]
    for value in ("latest", "", None, True):
        response = chosen.client.post("/transliterate", json={"text": "hola", "checkpoint": value})
        assert response.status_code == 422, (value, response.text)
        assert [e["field"] for e in response.json()["errors"]] == ["checkpoint"]


def test_best_and_last_are_remembered_apart_without_a_query_per_request(make_serving, trained: TrainedModels,
                                                                        ) -> None:
    app = make_serving(serving_refresh_seconds=3600)
    run_id = app.add_run("cnn", trained.cnn, [0.9])
    put_best(app, run_id, trained.cnn_other)
    grid = pixels(trained)
    seen: list[str] = []
    first = {which: app.client.post("/predict", json={"pixels": grid, "checkpoint": which}).json()
             for which in ("best", "last")}
    assert (first["best"]["checkpoint"], first["last"]["checkpoint"]) == ("best", "last")
    event.listen(app.app.state.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    for _ in range(3):
        for which in ("best", "last"):
            again = app.client.post("/predict", json={"pixels": grid, "checkpoint": which}).json()
            assert again == first[which]
    assert seen == []  # answered from memory, each shape its own model
    assert app.app.state.serving.checks == 2 and app.app.state.models.loads == 2
    batchers = app.app.state.batchers._batchers
    assert set(batchers) == {(run_id, "best"), (run_id, "last")}
    assert batchers[(run_id, "best")][0] is not batchers[(run_id, "last")][0]


def test_download_best_and_last(chosen: Serving, trained: TrainedModels) -> None:
    run_id = chosen.run_ids["cnn"]
    files = {"best": trained.cnn_other.read_bytes(), "last": trained.cnn.read_bytes()}
    assert files["best"] != files["last"]
    for which, data in files.items():
        response = chosen.client.get(f"/runs/{run_id}/checkpoint?which={which}")
        assert response.status_code == 200, response.text
        assert response.content == data
        assert f'filename="inkwell-cnn-{run_id}-{which}.pt"' in response.headers["content-disposition"]
    default = chosen.client.get(f"/runs/{run_id}/checkpoint")
    assert default.status_code == 200 and default.content == files["last"]  # the download's meaning is kept
    assert f"-{run_id}-last.pt" in default.headers["content-disposition"]


def test_download_of_a_missing_best_is_404_and_a_bad_which_422(chosen: Serving) -> None:
    old = chosen.run_ids["cnn_old"]
    missing = chosen.client.get(f"/runs/{old}/checkpoint?which=best")
    assert missing.status_code == 404
    detail = missing.json()["detail"]
    assert "no best checkpoint" in detail and "which=last" in detail and "\n" not in detail
    assert chosen.client.get(f"/runs/{old}/checkpoint?which=last").status_code == 200
    bad = chosen.client.get(f"/runs/{old}/checkpoint?which=first")
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["which"]
