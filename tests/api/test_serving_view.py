"""The in-memory serving view (api/serving_view.py): no database query per request, and changes made
elsewhere (another process promoting a run, a new best run, a replaced checkpoint) seen once the refresh
time has passed. Time is the view's own clock, moved by the test, so nothing here depends on timing."""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

import numpy as np
from sqlalchemy import event

from api.serving_view import ServingView
from core.storage import checkpoint_key
from ml.inference import load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    Serving,
    TrainedModels,
    digit_levels,
    make_serving,
    replace_file,
    trained,
)

REFRESH = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serving_with_clock(make_serving, refresh: float = REFRESH) -> tuple[Serving, Clock]:
    app = make_serving(serving_refresh_seconds=refresh)
    clock = Clock()
    app.app.state.serving.clock = clock
    return app, clock


def predict(app: Serving, trained: TrainedModels, i: int = 0):
    return app.client.post("/predict", json={"pixels": digit_levels(trained.digits.images[i]).astype(int).tolist()})


def statements(app: Serving) -> list[str]:
    """Every SQL statement the app's engine runs from now on."""
    seen: list[str] = []
    event.listen(app.app.state.engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: seen.append(statement))
    return seen


def test_requests_within_the_refresh_ask_the_database_nothing(make_serving, trained: TrainedModels) -> None:
    app, clock = serving_with_clock(make_serving)
    run_id = app.add_run("cnn", trained.cnn, [0.9])
    seen = statements(app)
    assert predict(app, trained).json()["run_id"] == run_id
    assert seen, "the first request must look the serving run up"
    first = len(seen)
    for i in range(10):
        clock.now += REFRESH / 20
        assert predict(app, trained, i).json()["run_id"] == run_id
    assert len(seen) == first  # answered from memory: not one more query
    assert app.app.state.serving.checks == 1


def test_a_promotion_elsewhere_is_served_once_the_refresh_has_passed(make_serving, trained: TrainedModels) -> None:
    app, clock = serving_with_clock(make_serving)
    best = app.add_run("cnn", trained.cnn, [0.9])
    other = app.add_run("cnn", trained.cnn_other, [0.5])
    assert predict(app, trained).json()["run_id"] == best
    app.promote("cnn", other)  # straight into the database, as another API process would
    clock.now += REFRESH - 0.01
    assert predict(app, trained).json()["run_id"] == best  # still within the bound: remembered
    clock.now += 0.01
    assert predict(app, trained).json()["run_id"] == other  # bound reached: checked again
    assert app.app.state.serving.checks == 2


def test_a_new_best_run_is_served_once_the_refresh_has_passed(make_serving, trained: TrainedModels) -> None:
    app, clock = serving_with_clock(make_serving)
    first = app.add_run("cnn", trained.cnn_other, [0.5])
    assert predict(app, trained).json()["run_id"] == first
    better = app.add_run("cnn", trained.cnn, [0.95])  # a worker finished a better run
    assert predict(app, trained).json()["run_id"] == first
    clock.now += REFRESH
    assert predict(app, trained).json()["run_id"] == better


def test_a_replaced_checkpoint_is_loaded_once_the_refresh_has_passed(make_serving, trained: TrainedModels) -> None:
    app, clock = serving_with_clock(make_serving)
    run_id = app.add_run("cnn", trained.cnn, [0.9])
    digit = trained.digits.images[0]
    before = predict(app, trained).json()["probabilities"]
    assert np.allclose(before, load_predictor(trained.cnn, "cpu").predict(digit)[0].probabilities, atol=1e-6)
    replace_file(trained.cnn_other, app.app.state.store.local_path(checkpoint_key(run_id)))  # trained again, say
    assert predict(app, trained).json()["probabilities"] == before
    clock.now += REFRESH
    after = predict(app, trained).json()["probabilities"]
    assert np.allclose(after, load_predictor(trained.cnn_other, "cpu").predict(digit)[0].probabilities, atol=1e-6)
    assert app.app.state.models.loads == 2


def test_promoting_through_this_api_takes_effect_at_once(make_serving, trained: TrainedModels) -> None:
    app, _ = serving_with_clock(make_serving)
    best = app.add_run("cnn", trained.cnn, [0.9])
    other = app.add_run("cnn", trained.cnn_other, [0.5])
    assert predict(app, trained).json()["run_id"] == best
    assert app.client.post("/models/cnn/promote", json={"run_id": other}).status_code == 200
    assert predict(app, trained).json()["run_id"] == other  # the clock did not move


def test_a_checkpoint_gone_is_an_error_after_the_refresh_and_not_remembered(make_serving, trained) -> None:
    app, clock = serving_with_clock(make_serving)
    run_id = app.add_run("cnn", trained.cnn, [0.9])
    path = app.app.state.store.local_path(checkpoint_key(run_id))
    assert predict(app, trained).status_code == 200
    path.unlink()
    assert predict(app, trained).status_code == 200  # the loaded model still answers within the bound
    clock.now += REFRESH
    assert predict(app, trained).status_code == 409
    replace_file(trained.cnn, path)
    assert predict(app, trained).status_code == 200  # the error was not remembered: checked again at once


def test_one_caller_checks_a_stale_answer_while_the_others_keep_it(make_serving, trained) -> None:
    app, clock = serving_with_clock(make_serving)
    app.add_run("cnn", trained.cnn, [0.9])
    view: ServingView = app.app.state.serving
    assert view.cached("predict", None, None) is None  # nothing known yet: the caller loads
    served = view.load("predict", None, None)
    assert view.cached("predict", None, None) is served
    clock.now += REFRESH
    assert view.cached("predict", None, None) is None  # stale: this caller checks again ...
    assert view.cached("predict", None, None) is served  # ... and meanwhile the others get the last answer
    assert view.cached("predict", None, None) is served
    again = view.load("predict", None, None)
    assert again is not served and again.checked_at == clock.now
    assert view.cached("predict", None, None) is again


def test_refresh_zero_checks_every_request(make_serving, trained: TrainedModels) -> None:
    app, _ = serving_with_clock(make_serving, refresh=0)
    app.add_run("cnn", trained.cnn, [0.9])
    for _ in range(3):
        assert predict(app, trained).status_code == 200
    assert app.app.state.serving.checks == 3
