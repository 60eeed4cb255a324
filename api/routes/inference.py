"""Serving trained models: POST /predict, /activation-maps and /transliterate.

Blocking work (decoding uploads, checking which run serves, loading checkpoints, and the model calls when
batching is off) runs in the threadpool so the event loop keeps answering other requests meanwhile; the
model calls with batching on run on each model's batcher thread (api/serving.py). Parsing a pixel grid and
a remembered serving run (api/serving_view.py) cost microseconds and stay on the event loop.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
import orjson
import torch
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import State

from api.image_request import ImageRequest, read_image_request
from api.inference_schemas import (
    CHECKPOINT_DESCRIPTION,
    MAX_TOP_K,
    ActivationMapsResponse,
    ActivationOptions,
    Checkpoint,
    HypothesisOut,
    Layer,
    PredictModel,
    PredictOptions,
    PredictResponse,
    TransliterateBatchResponse,
    TransliterateRequest,
    TransliterateResponse,
    Transliteration,
    image_request_body,
    parse_options,
)
from api.openapi import request_body
from api.schemas import RunId
from api.serving_view import Served
from ml.activations import activation_png
from ml.data.text import normalize
from ml.decoding import Hypothesis
from ml.errors import CheckpointError
from ml.imageprep import tensor_to_png
from ml.inference import Classifier, Prediction, Transliterator

router = APIRouter(tags=["inference"])

DECIMALS = 4
# Why a model cannot answer: the statuses of api.selection and of checkpoint problems.
SERVING_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no run with this run_id"},
    409: {"description": "the run has not succeeded, no model of the kind is trained yet, or its checkpoint "
                         "is missing or unusable"},
}
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **SERVING_ERRORS,
    413: {"description": "upload or image too large (INKWELL_MAX_UPLOAD_BYTES, INKWELL_MAX_IMAGE_PIXELS)"},
    415: {"description": "not an image, or not a multipart, image/* or JSON body"},
    422: {"description": "invalid options or pixels (`errors` lists the fields), a run of another kind, "
                         "or a blank image"},
}

RunIdQuery = Annotated[
    RunId | None, Query(description="a succeeded run; default: the promoted run, else the best")
]
ModelQuery = Annotated[PredictModel | None, Query(description="the kind to answer with (default: the first)")]
CheckpointQuery = Annotated[Checkpoint | None, Query(description=f"{CHECKPOINT_DESCRIPTION} (default best)")]
TopKQuery = Annotated[
    int | None, Query(ge=1, le=MAX_TOP_K, description="how many classes to list (default 3)")
]


def _served_now(state: State, endpoint: str, run_id: str | None, model: str | None, checkpoint: str) -> Served:
    """The run answering `endpoint` and its model (api/serving_view.py), from a worker thread."""
    found = state.serving.cached(endpoint, run_id, model, checkpoint)
    return found if found is not None else state.serving.load(endpoint, run_id, model, checkpoint)


async def _served(state: State, endpoint: str, run_id: str | None, model: str | None, checkpoint: str) -> Served:
    """The same from the event loop: from memory while fresh, else checked in a worker thread."""
    found = state.serving.cached(endpoint, run_id, model, checkpoint)
    if found is not None:
        return found
    return await run_in_threadpool(state.serving.load, endpoint, run_id, model, checkpoint)


def _png_data_url(image: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(tensor_to_png(image)).decode("ascii")


def _rounded(values: np.ndarray) -> list:
    return np.round(np.asarray(values, dtype=np.float64), DECIMALS).tolist()


def _predict_alone(classifier: Classifier, tensor: torch.Tensor, k: int, state: State) -> Prediction:
    with state.inference_gate():
        return classifier.predict(tensor, k=k)[0]


def _response(served: Served, found: Prediction, tensor: torch.Tensor, options: PredictOptions) -> Response:
    """PredictResponse as JSON, written by orjson: the values' types are known, so the hot path skips
    pydantic's validation and serialisation of the response (the contract test checks it against the schema)."""
    body: dict[str, Any] = {"run_id": served.run_id, "checkpoint": served.checkpoint,
                            "checkpoint_epoch": served.epoch, "label": found.label, "class_name": found.class_name,
                            "probabilities": found.probabilities, "top_k": found.top_k}
    if options.include_input:
        body["input_png"] = _png_data_url(tensor)
    return Response(orjson.dumps(body), media_type="application/json")


@router.post(
    "/predict",
    summary="Classify one image (upload or 28x28 pixels) with a trained image classifier (the CNN by default)",
    response_model=PredictResponse,
    response_model_exclude_none=True,
    openapi_extra=request_body("predict", lambda: image_request_body(PredictOptions)),
    responses=IMAGE_ERRORS,
)
async def predict(
    request: Request,
    run_id: RunIdQuery = None,
    model: ModelQuery = None,
    checkpoint: CheckpointQuery = None,
    top_k: TopKQuery = None,
    include_input: Annotated[
        bool | None, Query(description="also return the 28x28 input as a PNG data URL")
    ] = None,
) -> Response:
    state = request.app.state
    image = await read_image_request(request, state.settings.max_upload_bytes)
    query = {"run_id": run_id, "model": model, "checkpoint": checkpoint, "top_k": top_k,
             "include_input": include_input}
    options = parse_options(PredictOptions, query, image.fields, image.text_fields)
    max_pixels = state.settings.max_image_pixels
    if image.data is None:  # a pixel grid: numpy work of microseconds, done here
        tensor = image.tensor(max_pixels)  # (1, 28, 28)
    else:  # an upload: decoding may take a while (large images), so in a worker thread
        tensor = await run_in_threadpool(image.tensor, max_pixels)
    served = await _served(state, "predict", options.run_id, options.model, options.checkpoint)
    used, classifier = served.run_id, served.predictor
    assert isinstance(classifier, Classifier)
    if state.settings.batching:
        found = await state.batchers.predict(used, classifier, tensor, options.top_k, served.checkpoint)
    else:
        found = await run_in_threadpool(_predict_alone, classifier, tensor, options.top_k, state)
    return _response(served, found, tensor, options)


def _activation_maps(
    state: State, image: ImageRequest, options: ActivationOptions
) -> Response | ActivationMapsResponse:
    tensor = image.tensor(state.settings.max_image_pixels)  # (1, 28, 28)
    served = _served_now(state, "predict", options.run_id, options.model, options.checkpoint)
    used, kind, classifier = served.run_id, served.kind, served.predictor
    assert isinstance(classifier, Classifier)
    if not kind.activation_layers:
        raise HTTPException(422, detail=f"a {kind.name} model has no activation maps")
    layer = options.layer or kind.activation_layers[0]
    if layer not in kind.activation_layers:
        raise HTTPException(422, detail=f"a {kind.name} model has layers {', '.join(kind.activation_layers)}")
    with state.inference_gate():
        maps = classifier.activations(tensor, layer)  # (C, H, W)
    if options.format == "png":
        png = activation_png(tensor, maps, layer)
        return Response(png, media_type="image/png", headers={
            "X-Run-Id": used, "X-Checkpoint": served.checkpoint, "X-Checkpoint-Epoch": str(served.epoch)})
    return ActivationMapsResponse(run_id=used, checkpoint=served.checkpoint, checkpoint_epoch=served.epoch,
                                  layer=layer, shape=list(maps.shape), maps=_rounded(maps))


@router.post(
    "/activation-maps",
    summary="The CNN's conv1/conv2 activation maps for one image, as a PNG grid or JSON arrays",
    response_model=ActivationMapsResponse,
    openapi_extra=request_body("activation-maps", lambda: image_request_body(ActivationOptions)),
    responses={
        200: {"content": {"image/png": {}}, "description": "format=png: the grid (the run, checkpoint and "
              "epoch that answered in X-Run-Id, X-Checkpoint, X-Checkpoint-Epoch); format=json: the arrays"},
        **IMAGE_ERRORS,
    },
)
async def activation_maps(
    request: Request,
    run_id: RunIdQuery = None,
    model: ModelQuery = None,
    checkpoint: CheckpointQuery = None,
    layer: Annotated[Layer | None, Query(description="conv1 (8 maps of 28x28) or conv2 (16 of 12x12)")] = None,
    format: Annotated[Literal["png", "json"] | None, Query(description="png (default) or json")] = None,
) -> Any:
    state = request.app.state
    image = await read_image_request(request, state.settings.max_upload_bytes)
    query = {"run_id": run_id, "model": model, "checkpoint": checkpoint, "layer": layer, "format": format}
    options = parse_options(ActivationOptions, query, image.fields, image.text_fields)
    return await run_in_threadpool(_activation_maps, state, image, options)


def _one_result(
    text: str, hyps: list[Hypothesis], model: Transliterator, want_attention: bool
) -> Transliteration:
    best = hyps[0]
    output_chars = [
        model.tgt_vocab.itos[t] if 0 <= t < len(model.tgt_vocab) else "<unk>" for t in best.tokens
    ]
    input_chars = list(normalize(text))
    attention = None
    if want_attention and model.has_attention and best.attention is not None:
        matrix = np.asarray(best.attention)  # (output chars, input chars)
        if matrix.shape != (len(output_chars), len(input_chars)):
            raise CheckpointError(f"attention of shape {matrix.shape} does not match the characters")
        attention = _rounded(matrix)
    return Transliteration(
        input=text,
        output=best.text,
        hypotheses=[HypothesisOut(text=h.text, score=h.score, log_prob=h.log_prob) for h in hyps],
        attention=attention,
        input_chars=input_chars,
        output_chars=output_chars,
    )


def _translate_alone(state: State, model: Transliterator, texts: list[str], params: dict[str, Any],
                     ) -> list[list[Hypothesis]]:
    with state.inference_gate():
        return model.translate(texts, **params)


@router.post(
    "/transliterate",
    summary="Translate Spanish text to English with a trained seq2seq model (greedy or beam search)",
    response_model=TransliterateResponse | TransliterateBatchResponse,
    responses={
        **SERVING_ERRORS,
        422: {"description": "invalid request (`errors` lists the fields), a run of another kind, a text with "
                             "nothing to translate, or no hypothesis found"},
    },
)
async def transliterate(body: TransliterateRequest, request: Request) -> Any:
    state = request.app.state
    texts = body.items
    rows = len(texts) * (body.beam_size if body.decoding == "beam" else 1)
    if rows > state.settings.max_decode_rows:
        raise HTTPException(422, detail=f"{len(texts)} texts x beam {body.beam_size} = {rows} searches at once; "
                            f"the limit is {state.settings.max_decode_rows} (send fewer texts or a smaller beam)")
    served = await _served(state, "transliterate", body.run_id, body.model, body.checkpoint)
    run_id, model = served.run_id, served.predictor
    if not isinstance(model, Transliterator):
        raise CheckpointError(f"run {run_id} is a {served.kind.name} run but its checkpoint holds no transliterator")
    params = {"decoding": body.decoding, "beam_size": body.beam_size, "n_best": body.n_best,
              "alpha": body.length_penalty, "attention": body.return_attention}
    if state.settings.batching:
        found = await state.search_batchers.translate(run_id, model, texts, served.checkpoint, **params)
    else:
        found = await run_in_threadpool(_translate_alone, state, model, texts, params)
    if not all(found):
        raise HTTPException(422, detail="the search found no hypothesis; try a larger beam_size")
    results = [_one_result(t, h, model, body.return_attention) for t, h in zip(texts, found, strict=True)]
    answered = {"run_id": run_id, "checkpoint": served.checkpoint, "checkpoint_epoch": served.epoch}
    if body.text is not None:
        return TransliterateResponse(**answered, decoding=body.decoding, **results[0].model_dump())
    return TransliterateBatchResponse(**answered, decoding=body.decoding, results=results)
