"""Which run answers: explicit run_id, promoted, best; the errors when none can; the model cache."""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from api.model_cache import ModelCache
from core.storage import checkpoint_key
from ml.errors import CheckpointError
from ml.inference import load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    Serving,
    TrainedModels,
    digit_levels,
    digit_png_dark_on_light,
    make_serving,
    replace_file,
    trained,
)


def pixels(trained: TrainedModels, i: int = 0) -> dict:
    return {"pixels": digit_levels(trained.digits.images[i]).astype(int).tolist()}


def predict(app: Serving, trained: TrainedModels, **extra):
    return app.client.post("/predict", json={**pixels(trained), **extra})


def transliterate(app: Serving, **extra):
    return app.client.post("/transliterate", json={"text": "hola", **extra})


def test_no_trained_model_is_409_with_how_to_train(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    for response, model in ((predict(app, trained), "cnn"), (transliterate(app), "seq2seq")):
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert f"no trained {model} model" in detail and "POST /train" in detail and f'"{model}"' in detail
    maps = app.client.post("/activation-maps", json=pixels(trained))
    assert maps.status_code == 409


def test_unfinished_and_failed_runs_do_not_serve(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    app.add_run("cnn", trained.cnn, [0.99], status="running")
    app.add_run("cnn", trained.cnn, [0.98], status="failed")
    app.add_run("cnn", None, [], status="queued")
    assert predict(app, trained).status_code == 409


def test_best_run_is_highest_accuracy(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    low = app.add_run("cnn", trained.cnn, [0.5, 0.9])
    high = app.add_run("cnn", trained.cnn, [0.95, 0.7])  # its best epoch counts
    app.add_run("cnn", trained.cnn, [0.99], status="failed")
    later = app.add_run("cnn", trained.cnn, [0.6])
    response = predict(app, trained)
    assert response.status_code == 200, response.text
    assert response.json()["run_id"] == high
    for run_id in (low, later):  # an explicit run_id picks that run
        assert predict(app, trained, run_id=run_id).json()["run_id"] == run_id


def test_best_seq2seq_run_is_lowest_error_rate(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    app.add_run("seq2seq", trained.seq2seq_plain, [1.4])
    best = app.add_run("seq2seq", trained.seq2seq_attention, [1.2, 0.7])
    app.add_run("seq2seq", trained.seq2seq_plain, [0.9])
    response = transliterate(app)
    assert response.status_code == 200, response.text
    assert response.json()["run_id"] == best


def test_promoted_run_beats_best(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    best = app.add_run("cnn", trained.cnn, [0.9])
    worse = app.add_run("cnn", trained.cnn_other, [0.4])
    assert predict(app, trained).json()["run_id"] == best
    app.promote("cnn", worse)
    assert predict(app, trained).json()["run_id"] == worse
    promoted_by_api = app.client.post("/models/cnn/promote", json={"run_id": best})
    assert promoted_by_api.status_code == 200, promoted_by_api.text
    assert predict(app, trained).json()["run_id"] == best

    s2s_best = app.add_run("seq2seq", trained.seq2seq_attention, [0.5])
    s2s_other = app.add_run("seq2seq", trained.seq2seq_plain, [2.5])
    assert transliterate(app).json()["run_id"] == s2s_best
    app.promote("seq2seq", s2s_other)
    assert transliterate(app).json()["run_id"] == s2s_other


def test_explicit_run_errors(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    cnn = app.add_run("cnn", trained.cnn, [0.9])
    s2s = app.add_run("seq2seq", trained.seq2seq_attention, [0.9])
    running = app.add_run("cnn", None, [0.3], status="running")
    queued = app.add_run("seq2seq", None, [], status="queued")

    wrong = predict(app, trained, run_id=s2s)
    assert wrong.status_code == 422 and "seq2seq run" in wrong.json()["detail"]
    wrong = transliterate(app, run_id=cnn)
    assert wrong.status_code == 422 and "cnn run" in wrong.json()["detail"]
    maps = app.client.post(f"/activation-maps?run_id={s2s}", json=pixels(trained))
    assert maps.status_code == 422

    busy = predict(app, trained, run_id=running)
    assert busy.status_code == 409
    assert busy.json()["detail"] == f"run {running} is running; it has no final model yet"
    waiting = transliterate(app, run_id=queued)
    assert waiting.status_code == 409 and "is queued" in waiting.json()["detail"]

    for unknown in ("0" * 32, "not-a-run"):
        assert predict(app, trained, run_id=unknown).status_code == 404
        assert transliterate(app, run_id=unknown).status_code == 404
    png = digit_png_dark_on_light(trained.digits.images[0])
    form = app.client.post("/predict", files={"file": ("d.png", png, "image/png")}, data={"run_id": "0" * 32})
    assert form.status_code == 404 and "0" * 32 in form.json()["detail"]


def test_missing_checkpoint_is_409(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    run_id = app.add_run("cnn", None, [0.9])
    response = predict(app, trained)
    assert response.status_code == 409
    assert "checkpoint" in response.json()["detail"] and run_id in response.json()["detail"]


def test_cache_reloads_a_replaced_checkpoint(make_serving, trained: TrainedModels) -> None:
    app = make_serving()
    run_id = app.add_run("cnn", trained.cnn, [0.9])
    digit = trained.digits.images[0]
    first = predict(app, trained).json()["probabilities"]
    assert np.allclose(first, load_predictor(trained.cnn, "cpu").predict(digit)[0].probabilities, atol=1e-6)
    assert predict(app, trained).json()["probabilities"] == first
    assert app.app.state.models.loads == 1  # the second request used the cached model

    replace_file(trained.cnn_other, app.app.state.store.local_path(checkpoint_key(run_id)))  # e.g. trained again
    second = predict(app, trained).json()["probabilities"]
    expected = load_predictor(trained.cnn_other, "cpu").predict(digit)[0].probabilities
    assert np.allclose(second, expected, atol=1e-6)
    assert not np.allclose(second, first, atol=1e-3)
    assert app.app.state.models.loads == 2
    assert len(app.app.state.models) == 1  # the old version was dropped, not kept beside the new one


def test_cache_loads_once_for_concurrent_first_requests(trained: TrainedModels) -> None:
    """Six threads ask for one model at the same moment (a barrier). The first loader is held until
    every other thread has missed the cache, so all of them must queue on the key's lock and find the
    model there once the loader finishes: one load, one object, whatever the timing."""
    n = 6
    calls: list[Path] = []
    lookups = Counter()  # the cache's own lookups: "miss" / "hit"
    changed = threading.Condition()

    def held_loader(path: Path):
        calls.append(path)
        with changed:  # the loading thread missed twice (before and under the lock), the others once each
            all_missed = changed.wait_for(lambda: lookups["miss"] >= n + 1, timeout=30)
        assert all_missed, f"the other threads never asked the cache ({lookups})"
        return load_predictor(path, "cpu")

    cache = ModelCache(2, loader=held_loader)
    lookup = cache._cached

    def counted_lookup(key, signature):
        found = lookup(key, signature)
        with changed:
            lookups["hit" if found is not None else "miss"] += 1
            changed.notify_all()
        return found

    cache._cached = counted_lookup  # an instance attribute: `get` calls it for both of its lookups
    barrier = threading.Barrier(n)
    got: list[object] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait(timeout=30)
            got.append(cache.get("a" * 32, trained.cnn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread is still waiting for the cache"
    assert errors == []
    assert len(calls) == 1 and cache.loads == 1
    assert len(got) == n and all(g is got[0] for g in got)
    assert lookups == {"miss": n + 1, "hit": n - 1}  # every waiting thread found the model under the lock
    assert cache.get("a" * 32, trained.cnn) is got[0] and lookups["hit"] == n  # later: straight from the cache


def test_cache_evicts_least_recently_used(trained: TrainedModels) -> None:
    cache = ModelCache(2)
    a = cache.get("a" * 32, trained.cnn)
    cache.get("b" * 32, trained.cnn_other)
    assert cache.get("a" * 32, trained.cnn) is a  # a is now the most recently used
    cache.get("c" * 32, trained.seq2seq_plain)  # evicts b
    assert cache.loads == 3 and len(cache) == 2
    assert cache.get("a" * 32, trained.cnn) is a and cache.loads == 3  # a and c stayed, b was evicted
    cache.get("b" * 32, trained.cnn_other)
    assert cache.loads == 4
    with pytest.raises(CheckpointError):
        cache.get("d" * 32, trained.cnn.parent / "missing.pt")
    with pytest.raises(ValueError):
        ModelCache(0)
