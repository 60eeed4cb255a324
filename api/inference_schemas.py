"""Request and response models of /predict, /activation-maps and /transliterate."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.schemas import ModelName
from ml.kinds import all_kinds

MAX_TEXT_CHARS = 200
MAX_TEXTS = 256
MAX_BEAM = 20
MAX_TOP_K = 100

# For the OpenAPI page: the bodies /predict and /activation-maps accept.
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG, ... any size",
                        },
                        "run_id": {"type": "string"},
                        "top_k": {"type": "integer"},
                        "layer": {"type": "string", "enum": ["conv1", "conv2"]},
                        "format": {"type": "string", "enum": ["png", "json"]},
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["pixels"],
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "description": "28 rows of 28 numbers, 0..1 or 0..255, bright ink on black",
                            "items": {"type": "array", "items": {"type": "number"}},
                        },
                        "run_id": {"type": "string"},
                        "top_k": {"type": "integer"},
                        "layer": {"type": "string", "enum": ["conv1", "conv2"]},
                        "format": {"type": "string", "enum": ["png", "json"]},
                    },
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _known_layer(layer: str | None) -> str | None:
    layers = sorted({name for kind in all_kinds() for name in kind.activation_layers})
    if layer is not None and layer not in layers:
        raise ValueError(f"unknown layer {layer[:40]!r}; choose one of {', '.join(layers)}")
    return layer


class ImageOptions(BaseModel):
    """Options of an image request, from the query string and the body's fields (the body wins)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(None, max_length=64, description="a succeeded run; default: promoted, else best")
    model: ModelName | None = Field(None, description="the kind to answer with when no run_id is given")


class PredictOptions(ImageOptions):
    top_k: int = Field(3, ge=1, le=MAX_TOP_K, description="how many classes to list")
    include_input: bool = Field(False, description="also return the 28x28 input as a PNG data URL")


class ActivationOptions(ImageOptions):
    layer: Annotated[str | None, AfterValidator(_known_layer)] = Field(
        None, description="conv1 (8 maps of 28x28) or conv2 (16 of 12x12); default: the kind's first layer"
    )
    format: Literal["png", "json"] = "png"


Options = TypeVar("Options", bound=ImageOptions)


def parse_options(model: type[Options], query: dict[str, Any], fields: dict[str, Any]) -> Options:
    """`model` validated from the query values given and the body's fields; 422 (the usual JSON) otherwise."""
    values = {k: v for k, v in query.items() if v is not None}
    values.update({k: v for k, v in fields.items() if v is not None and v != ""})
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


class TopK(BaseModel):
    label: int
    class_name: str
    probability: float


class PredictResponse(BaseModel):
    run_id: str = Field(description="the run whose model answered")
    label: int
    class_name: str
    probabilities: list[float] = Field(description="one probability per class, in label order")
    top_k: list[TopK] = Field(description="the most likely classes, most likely first")
    input_png: str | None = Field(
        None, description="with include_input=true: the 28x28 image the model saw, as a PNG data URL"
    )


class ActivationMapsResponse(BaseModel):
    run_id: str
    layer: Literal["conv1", "conv2"]
    shape: list[int] = Field(description="(channels, height, width)")
    maps: list[list[list[float]]] = Field(description="activations after ReLU, rounded to 4 decimals")


class TransliterateRequest(BaseModel):
    """One `text` or a batch of `texts` to translate with a seq2seq model."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, description=f"one sentence (at most {MAX_TEXT_CHARS} characters)")
    texts: list[str] | None = Field(None, description=f"or up to {MAX_TEXTS} sentences")
    decoding: Literal["greedy", "beam"] = "greedy"
    beam_size: int = Field(5, ge=1, le=MAX_BEAM, description="beams kept per sentence (beam decoding)")
    n_best: int = Field(1, ge=1, le=MAX_BEAM, description="hypotheses returned per sentence (<= beam_size)")
    length_penalty: float = Field(
        0.0, ge=0.0, le=5.0, description="score = log_prob / length ** length_penalty"
    )
    return_attention: bool = Field(False, description="include the best hypothesis's attention matrix")
    run_id: str | None = Field(None, max_length=64, description="a succeeded run; default: promoted, else best")
    model: ModelName | None = Field(None, description="the kind to answer with when no run_id is given")

    @model_validator(mode="after")
    def _check(self) -> TransliterateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send either `text` or `texts`, not both and not neither")
        items = [self.text] if self.text is not None else list(self.texts or [])
        if not items:
            raise ValueError("`texts` must hold at least one sentence")
        if len(items) > MAX_TEXTS:
            raise ValueError(f"at most {MAX_TEXTS} texts per request (got {len(items)})")
        for i, item in enumerate(items, start=1):
            if not item.strip():
                raise ValueError(f"text {i} is empty")
            if len(item) > MAX_TEXT_CHARS:
                raise ValueError(f"text {i} has {len(item)} characters; the limit is {MAX_TEXT_CHARS}")
        if self.decoding == "greedy" and self.n_best != 1:
            raise ValueError("greedy decoding gives one hypothesis: n_best must be 1 (or use decoding=beam)")
        if self.n_best > self.beam_size:
            raise ValueError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        return self

    @property
    def items(self) -> list[str]:
        """The sentences to translate, in order."""
        return [self.text] if self.text is not None else list(self.texts or [])


class HypothesisOut(BaseModel):
    text: str
    score: float = Field(description="log_prob / length ** length_penalty (greedy: log_prob)")
    log_prob: float


class Transliteration(BaseModel):
    input: str
    output: str = Field(description="the best hypothesis's text")
    hypotheses: list[HypothesisOut] = Field(description="best first")
    attention: list[list[float]] | None = Field(
        None, description="rows = output_chars, columns = input_chars; null unless requested and available"
    )
    input_chars: list[str] = Field(description="the normalised characters the encoder read")
    output_chars: list[str] = Field(description="the best hypothesis's characters, with <eos> when produced")


class TransliterateResponse(Transliteration):
    run_id: str
    decoding: Literal["greedy", "beam"]


class TransliterateBatchResponse(BaseModel):
    run_id: str
    decoding: Literal["greedy", "beam"]
    results: list[Transliteration]
