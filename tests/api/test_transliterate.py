"""POST /transliterate against real (tiny) trained seq2seq models, with and without attention."""
# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)

from __future__ import annotations

import numpy as np
import pytest

from ml.data.text import EOS, normalize
from ml.inference import Transliterator, load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    Serving,
    TrainedModels,
    serving,
    trained,
)

SENTENCES = ["hola", "tengo hambre.", "¿Dónde está la estación?", "nos vemos mañana"]


@pytest.fixture(scope="module")
def attentive(trained: TrainedModels) -> Transliterator:
    loaded = load_predictor(trained.seq2seq_attention, device="cpu")
    assert isinstance(loaded, Transliterator) and loaded.has_attention
    return loaded


def post(serving: Serving, **body) -> dict:
    response = serving.client.post("/transliterate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_greedy_matches_the_model(serving: Serving, attentive: Transliterator) -> None:
    body = post(serving, text=SENTENCES[1])
    assert body["run_id"] == serving.run_ids["seq2seq_attention"]  # the best seq2seq run (lowest error rate)
    assert body["decoding"] == "greedy" and body["input"] == SENTENCES[1]
    expected = attentive.translate([SENTENCES[1]])[0][0]
    assert len(body["hypotheses"]) == 1
    assert body["output"] == body["hypotheses"][0]["text"] == expected.text
    assert body["hypotheses"][0]["score"] == pytest.approx(expected.score, abs=1e-4)
    assert body["attention"] is None  # not requested
    assert body["input_chars"] == list(normalize(SENTENCES[1]))


def test_beam_n_best_sorted_and_matching_the_model(serving: Serving, attentive: Transliterator) -> None:
    body = post(serving, text=SENTENCES[0], decoding="beam", beam_size=5, n_best=3)
    hyps = body["hypotheses"]
    assert len(hyps) == 3
    scores = [h["score"] for h in hyps]
    assert scores == sorted(scores, reverse=True)
    assert len({h["text"] for h in hyps}) == 3  # distinct hypotheses
    assert body["output"] == hyps[0]["text"]
    expected = attentive.translate([SENTENCES[0]], decoding="beam", beam_size=5, n_best=3)[0]
    assert [h["text"] for h in hyps] == [e.text for e in expected]
    assert np.allclose(scores, [e.score for e in expected], atol=1e-4)


def test_beam_of_one_equals_greedy(serving: Serving) -> None:
    for text in SENTENCES:
        greedy = post(serving, text=text)
        beam = post(serving, text=text, decoding="beam", beam_size=1)
        assert beam["output"] == greedy["output"]
        assert beam["hypotheses"][0]["score"] == pytest.approx(greedy["hypotheses"][0]["score"], abs=1e-3)


def test_length_penalty_divides_the_score(serving: Serving) -> None:
    body = post(serving, text=SENTENCES[2], decoding="beam", beam_size=3, length_penalty=1.0)
    best = body["hypotheses"][0]
    assert best["score"] == pytest.approx(best["log_prob"] / len(body["output_chars"]), rel=1e-4)


def test_texts_batch_keeps_order_and_matches_single_requests(serving: Serving) -> None:
    body = post(serving, texts=SENTENCES, decoding="beam", beam_size=3, n_best=2)
    assert body["run_id"] == serving.run_ids["seq2seq_attention"] and body["decoding"] == "beam"
    assert [r["input"] for r in body["results"]] == SENTENCES
    for text, result in zip(SENTENCES, body["results"], strict=True):
        single = post(serving, text=text, decoding="beam", beam_size=3, n_best=2)
        assert [h["text"] for h in result["hypotheses"]] == [h["text"] for h in single["hypotheses"]]
        assert result["output"] == single["output"]


def test_attention_rows_and_labels(serving: Serving, attentive: Transliterator) -> None:
    for decoding in ("greedy", "beam"):
        body = post(serving, text=SENTENCES[2], decoding=decoding, return_attention=True)
        matrix = np.array(body["attention"])
        assert matrix.shape == (len(body["output_chars"]), len(body["input_chars"]))
        assert np.allclose(matrix.sum(axis=1), 1.0, atol=2e-3)
        assert (matrix >= 0).all()
        assert body["input_chars"] == list(normalize(SENTENCES[2]))
        best = attentive.translate([SENTENCES[2]], decoding=decoding)[0][0]
        assert np.allclose(matrix, best.attention, atol=6e-5)
        expected_chars = [attentive.tgt_vocab.itos[t] for t in best.tokens]
        assert body["output_chars"] == expected_chars
        assert (body["output_chars"][-1] == "<eos>") == (best.tokens[-1] == EOS)
        assert "".join(c for c in body["output_chars"] if c != "<eos>") == body["output"]


def test_batch_attention_per_text(serving: Serving) -> None:
    body = post(serving, texts=SENTENCES[:2], return_attention=True)
    for text, result in zip(SENTENCES[:2], body["results"], strict=True):
        assert np.array(result["attention"]).shape == (len(result["output_chars"]), len(normalize(text)))


def test_model_without_attention_gives_null(serving: Serving, trained: TrainedModels) -> None:
    plain = serving.run_ids["seq2seq_plain"]
    body = post(serving, text=SENTENCES[0], return_attention=True, run_id=plain)
    assert body["run_id"] == plain
    assert body["attention"] is None
    loaded = load_predictor(trained.seq2seq_plain, device="cpu")
    assert body["output"] == loaded.translate([SENTENCES[0]])[0][0].text


@pytest.mark.parametrize(
    "body, words",
    [
        ({"text": "hola", "texts": ["hola"]}, "not both"),
        ({}, "not both and not neither"),
        ({"text": ""}, "empty"),
        ({"text": "   "}, "empty"),
        ({"texts": []}, "at least one"),
        ({"texts": ["hola", ""]}, "text 2 is empty"),
        ({"text": "a" * 201}, "200"),
        ({"texts": ["hola"] * 257}, "256"),
        ({"text": "hola", "decoding": "sample"}, "decoding"),
        ({"text": "hola", "decoding": "beam", "beam_size": 0}, "beam_size"),
        ({"text": "hola", "decoding": "beam", "beam_size": 21}, "beam_size"),
        ({"text": "hola", "decoding": "beam", "beam_size": 2, "n_best": 3}, "n_best"),
        ({"text": "hola", "n_best": 2}, "n_best must be 1"),
        ({"text": "hola", "length_penalty": 6}, "length_penalty"),
        ({"text": "hola", "length_penalty": -0.5}, "length_penalty"),
        ({"text": "hola", "return_attention": "maybe"}, "return_attention"),
        ({"text": "hola", "beam": 3}, "beam"),
        ({"text": 5}, "text"),
        ({"text": "¿¡ 123 ***"}, "nothing to translate"),
    ],
)
def test_invalid_requests_are_422(serving: Serving, body: dict, words: str) -> None:
    response = serving.client.post("/transliterate", json=body)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


def test_not_json_is_422(serving: Serving) -> None:
    response = serving.client.post(
        "/transliterate", content=b"hola", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"]
