# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)
"""/predict through the dynamic batcher: the same answers as one image at a time, in order, and 503 with
Retry-After when a model's queue is full."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi import HTTPException

from api.serving import ClassifierBatchers
from ml.imageprep import pixels_to_tensor
from ml.inference import Classifier, load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    TrainedModels,
    digit_levels,
    make_serving,
    trained,
)


def test_concurrent_requests_get_what_each_would_get_alone(make_serving, trained: TrainedModels) -> None:
    serving = make_serving()
    run_id = serving.add_run("cnn", trained.cnn, [0.9])
    images = trained.digits.images[:24]
    bodies = [{"pixels": digit_levels(img).astype(int).tolist(), "top_k": 1 + i % 5} for i, img in enumerate(images)]
    alone = load_predictor(trained.cnn, "cpu")
    assert isinstance(alone, Classifier)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: serving.client.post("/predict", json=b), bodies))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers if a.status_code != 200]
    sizes = serving.app.state.batchers._batchers[(run_id, "last")][1].stats.sizes  # no best.pt: the last answers
    assert sum(sizes) == len(bodies)
    for body, answer in zip(bodies, answers, strict=True):
        expected = alone.predict(pixels_to_tensor(body["pixels"]), k=body["top_k"])[0]
        got = answer.json()
        assert got["label"] == expected.label and len(got["top_k"]) == body["top_k"]
        assert np.allclose(got["probabilities"], expected.probabilities, atol=1e-5)
        assert [t["label"] for t in got["top_k"]] == [t["label"] for t in expected.top_k]


def test_a_full_model_queue_answers_503(trained: TrainedModels, make_serving) -> None:
    settings = make_serving().settings.model_copy(update={"batch_queue": 1, "batch_max_items": 1})
    batchers = ClassifierBatchers(settings)
    classifier = load_predictor(trained.cnn, "cpu")
    entered, release = threading.Event(), threading.Event()
    original = classifier.predict

    def held(images, k=3):
        entered.set()
        assert release.wait(10)
        return original(images, k=k)

    classifier.predict = held  # type: ignore[method-assign]
    image = trained.digits.images[0]

    async def main():
        first = asyncio.ensure_future(batchers.predict("r" * 32, classifier, image, 3))
        await asyncio.to_thread(entered.wait, 10)
        second = asyncio.ensure_future(batchers.predict("r" * 32, classifier, image, 3))
        await asyncio.sleep(0.05)
        with pytest.raises(HTTPException) as refused:
            await batchers.predict("r" * 32, classifier, image, 3)
        release.set()
        return refused.value, await first, await second

    try:
        refused, first, second = asyncio.run(main())
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert first.label == second.label
    finally:
        release.set()
        batchers.close()


def test_concurrent_transliterations_get_what_each_would_get_alone(make_serving, trained: TrainedModels) -> None:
    serving = make_serving()
    serving.add_run("seq2seq", trained.seq2seq_attention, [0.3])
    alone = load_predictor(trained.seq2seq_attention, "cpu")
    sentences = ["tengo hambre .", "hola .", "estoy cansado .", "tom es canadiense .", "vamos a casa ."]
    bodies = [{"texts": sentences[i % 5 :] + sentences[: i % 5][:1], "decoding": "beam", "beam_size": 3,
               "n_best": 2, "return_attention": True} for i in range(10)]
    bodies += [{"text": sentences[i], "return_attention": True} for i in range(5)]  # greedy: another group
    bodies.append({"texts": ["hola .", "123"], "decoding": "beam", "beam_size": 3, "n_best": 2})  # a bad text
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: serving.client.post("/transliterate", json=b), bodies))
    bad = answers.pop()
    bodies.pop()
    assert bad.status_code == 422 and "text 2" in bad.json()["detail"]  # its own error, its own index
    for body, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200, answer.text
        texts = body.get("texts") or [body["text"]]
        expected = alone.translate(texts, decoding=body.get("decoding", "greedy"), beam_size=3,
                                   n_best=body.get("n_best", 1))
        got = answer.json().get("results") or [answer.json()]
        for hyps, result in zip(expected, got, strict=True):
            assert [h["text"] for h in result["hypotheses"]] == [h.text for h in hyps]
            assert np.allclose([h["score"] for h in result["hypotheses"]], [h.score for h in hyps], atol=1e-4)
            assert np.allclose(result["attention"], np.round(hyps[0].attention, 4), atol=2e-4)
