# ruff: noqa: F811  (fixtures imported from tests.api.trained are parameters of the tests)
"""Bounded work: the JSON body cap, the decoding-work cap and the inference gate (503 + Retry-After)."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from api.limits import InferenceGate
from ml.inference import Transliterator, load_predictor
from tests.api.trained import (  # noqa: F401  (fixtures are used by name)
    TrainedModels,
    digit_levels,
    make_serving,
    trained,
)


def test_json_bodies_over_the_cap_are_413_before_they_are_read(make_app) -> None:
    with TestClient(make_app(max_body_bytes=2000)) as client:
        big = {"text": "hola", "padding": "x" * 5000}
        declared = client.post("/transliterate", json=big)
        assert declared.status_code == 413 and "2000 bytes" in declared.json()["detail"]

        def chunks():  # no Content-Length: counted while it arrives
            yield b'{"model": "cnn", "dataset": "'
            for _ in range(10):
                yield b"a" * 500
            yield b'"}'

        streamed = client.post("/train", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and streamed.headers["content-type"] == "application/json"
        small = client.post("/train", content=json.dumps({"model": "cnn", "epochs": 1}),
                            headers={"content-type": "application/json"})
        assert small.status_code == 202  # under the cap the body reaches the route intact
        assert client.get("/runs").json()["runs"][0]["config"]["epochs"] == 1


def test_a_request_with_too_much_decoding_work_is_422(make_app) -> None:
    with TestClient(make_app(max_decode_rows=100)) as client:
        refused = client.post("/transliterate", json={"texts": ["hola"] * 30, "decoding": "beam", "beam_size": 4})
        assert refused.status_code == 422
        assert "30 texts x beam 4 = 120" in refused.json()["detail"] and "100" in refused.json()["detail"]
        # Greedy decoding searches one row per text: 30 rows fit (409: no trained model, past the check).
        assert client.post("/transliterate", json={"texts": ["hola"] * 30}).status_code == 409


def test_the_gate_admits_its_capacity_and_refuses_the_rest_at_once() -> None:
    gate = InferenceGate(concurrency=1, waiting=1)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gate():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(10)
    waiter_started = threading.Event()
    waited: list[bool] = []

    def wait_turn() -> None:
        waiter_started.set()
        with gate():
            waited.append(True)

    waiter = threading.Thread(target=wait_turn)
    waiter.start()
    assert waiter_started.wait(10)
    for _ in range(200):  # until the waiter is counted (bounded)
        if gate.admitted == 2:
            break
        threading.Event().wait(0.01)
    with pytest.raises(HTTPException) as refused:
        with gate():
            pass
    assert refused.value.status_code == 503 and refused.value.headers["Retry-After"] == "1"
    release.set()
    holder.join(10)
    waiter.join(10)
    assert waited == [True] and gate.admitted == 0


def test_an_overloaded_server_answers_503_with_retry_after(make_serving, trained: TrainedModels) -> None:
    serving = make_serving()
    serving.add_run("cnn", trained.cnn, [0.9])
    serving.app.state.settings.batching = False  # the gate guards unbatched model calls
    serving.app.state.inference_gate = gate = InferenceGate(concurrency=1, waiting=0)
    pixels = {"pixels": digit_levels(trained.digits.images[0]).astype(int).tolist()}
    with gate():  # another request holds the only slot
        busy = serving.client.post("/predict", json=pixels)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    assert serving.client.post("/predict", json=pixels).status_code == 200  # and fine once it is free


def test_attention_history_is_kept_only_when_asked(trained: TrainedModels) -> None:
    model = load_predictor(trained.seq2seq_attention, "cpu")
    assert isinstance(model, Transliterator)
    texts = ["tengo hambre .", "hola ."]
    for decoding in ("greedy", "beam"):
        with_attn = model.translate(texts, decoding=decoding, beam_size=3, n_best=2 if decoding == "beam" else 1)
        without = model.translate(texts, decoding=decoding, beam_size=3, n_best=2 if decoding == "beam" else 1,
                                  attention=False)
        for a, b in zip(with_attn, without, strict=True):
            assert [(h.text, h.score) for h in a] == [(h.text, h.score) for h in b]
            assert all(h.attention is not None for h in a) and all(h.attention is None for h in b)


def test_admission_refuses_beyond_its_limit_before_reading_the_body() -> None:
    """Two POST /predict in flight through the real middleware (limit 2): a third is refused at once with
    503 + Retry-After and its body never read; once one finishes, the next is admitted again."""
    import anyio
    import httpx

    from api.limits import InferenceAdmission

    release = anyio.Event()
    reads: list[str] = []
    rejected: list[str] = []

    async def slow_app(scope, receive, send) -> None:  # noqa: ANN001 - an ASGI app holding /predict requests
        message = await receive()
        if scope["path"] == "/predict":
            reads.append(message.get("body", b"").decode())
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    admission = InferenceAdmission(slow_app, limit=2, on_reject=rejected.append)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=admission)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers: dict[str, httpx.Response] = {}

            async def call(name: str) -> None:
                answers[name] = await client.post("/predict", content=name.encode())

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(call, "first")
                tasks.start_soon(call, "second")
                with anyio.fail_after(10):
                    while admission.in_flight < 2:
                        await anyio.sleep(0.01)
                third = await client.post("/predict", content=b"third")
                assert third.status_code == 503 and third.headers["retry-after"] == "1"
                assert "INKWELL_INFERENCE_MAX_IN_FLIGHT" in third.json()["detail"]
                other = await client.get("/healthz")  # other routes are not counted
                assert other.status_code == 200 and admission.in_flight == 2
                release.set()
            assert [answers[n].status_code for n in ("first", "second")] == [200, 200]
            assert (await client.post("/predict", content=b"fourth")).status_code == 200
        assert sorted(reads) == ["first", "fourth", "second"]  # "third" was never read
        assert rejected == ["/predict"] and admission.in_flight == 0

    anyio.run(scenario)
