"""Request and response models of /predict, /activation-maps and /transliterate."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.schemas import RunId, json_int, serving_model
from ml.kinds import all_kinds

MAX_TEXT_CHARS = 200
MAX_TEXTS = 256
MAX_BEAM = 20
DEFAULT_BEAM = 5
MAX_TOP_K = 100
PIXELS = 28  # a pixel grid is PIXELS rows of PIXELS numbers
PredictModel = serving_model("predict")
TransliterateModel = serving_model("transliterate")
# Which of a run's checkpoints answers (ml.config.CHECKPOINTS): its best validation epoch's weights or the last.
Checkpoint = Literal["best", "last"]
CHECKPOINT_DESCRIPTION = ("best: the weights of the run's best validation epoch (a run trained without best.pt "
                          "answers with its last); last: the final epoch's")
ANSWERED_DESCRIPTION = "the checkpoint that answered (`best` asked of a run without best.pt: `last`)"
EPOCH_DESCRIPTION = "the epoch of the weights that answered"


def _layers() -> list[str]:
    return sorted({name for kind in all_kinds() for name in kind.activation_layers})


def _known_layer(layer: str) -> str:
    if layer not in _layers():
        raise ValueError(f"unknown layer {layer[:40]!r}; choose one of {', '.join(_layers())}")
    return layer


def _layers_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = _layers()


Layer = Annotated[str, AfterValidator(_known_layer), Field(json_schema_extra=_layers_enum)]


class ImageOptions(BaseModel):
    """Options of an image request, from the query string and the body's fields (the body wins)."""

    model_config = ConfigDict(extra="forbid")

    run_id: RunId | None = Field(None, description="a succeeded run; default: promoted, else best")
    model: PredictModel | None = Field(None, description="the kind to answer with when no run_id is given")
    checkpoint: Checkpoint = Field("best", description=CHECKPOINT_DESCRIPTION)


class PredictOptions(ImageOptions):
    top_k: json_int(ge=1, le=MAX_TOP_K) = Field(3, description="how many classes to list")
    include_input: bool = Field(False, description="also return the 28x28 input as a PNG data URL")


class ActivationOptions(ImageOptions):
    layer: Layer | None = Field(
        None, description="conv1 (8 maps of 28x28) or conv2 (16 of 12x12); default: the kind's first layer"
    )
    format: Literal["png", "json"] = "png"


Options = TypeVar("Options", bound=ImageOptions)


def parse_options(model: type[Options], query: dict[str, Any], fields: dict[str, Any], text_fields: bool,
                  ) -> Options:
    """`model` validated from the query values given and the body's fields; 422 (the usual JSON) otherwise.

    JSON fields must have their schema's types (`"top_k": "3"` is refused, as in every JSON body); a form's
    fields are text, converted to the field's type. Query values arrive converted by FastAPI.
    """
    values = {k: v for k, v in query.items() if v is not None}
    values.update({k: v for k, v in fields.items() if v is not None})
    try:
        return model.model_validate(values, strict=not text_fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` minus its `null` alternative (pydantic writes `X | None` as anyOf [X, null])."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    if len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf" and not (k == "default" and v is None)}
    return {**options[0], **rest}


def image_request_body(options: type[ImageOptions]) -> dict[str, Any]:
    """The OpenAPI `requestBody` of an image endpoint whose options are `options` (made when the schema is
    built, so the enums list every registered kind): a multipart upload, JSON pixels, or a raw image."""
    fields: dict[str, Any] = options.model_json_schema()["properties"]
    # A form sends text; an empty field counts as absent (HTML forms send their empty inputs).
    empty = {"type": "string", "maxLength": 0}
    form_fields = {name: {"anyOf": [_without_null(schema), empty]} for name, schema in fields.items()}
    numbers = {"type": "array", "minItems": PIXELS, "maxItems": PIXELS,
               "items": {"type": "number", "minimum": 0, "maximum": 255}}
    grid = {"type": "array", "minItems": PIXELS, "maxItems": PIXELS, "items": numbers}
    pixels = {
        "description": f"{PIXELS} rows of {PIXELS} numbers in 0..255, bright ink on black (0..1 when none is "
                       "above 1), or one such grid in a list",
        "anyOf": [grid, {"type": "array", "minItems": 1, "maxItems": 1, "items": grid}],
    }
    image = {"type": "string", "format": "binary", "description": "PNG, JPEG, ... any size within the limits"}
    # A "1": a bright vertical stroke on black.
    digit = [[255 if 12 <= col <= 15 and 4 <= row <= 23 else 0 for col in range(PIXELS)] for row in range(PIXELS)]
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": image, **form_fields},
            }},
            "application/json": {
                "schema": {
                    "type": "object", "required": ["pixels"], "additionalProperties": False,
                    "properties": {"pixels": pixels, **fields},
                },
                "example": {"pixels": digit},
            },
            "image/*": {"schema": image},
        },
    }


class TopK(BaseModel):
    label: int
    class_name: str
    probability: float


class PredictResponse(BaseModel):
    run_id: str = Field(description="the run whose model answered")
    checkpoint: Checkpoint = Field(description=ANSWERED_DESCRIPTION)
    checkpoint_epoch: int = Field(description=EPOCH_DESCRIPTION)
    label: int
    class_name: str
    probabilities: list[float] = Field(description="one probability per class, in label order")
    top_k: list[TopK] = Field(description="the most likely classes, most likely first")
    input_png: str | None = Field(
        None, description="with include_input=true: the 28x28 image the model saw, as a PNG data URL"
    )


class ActivationMapsResponse(BaseModel):
    run_id: str
    checkpoint: Checkpoint = Field(description=ANSWERED_DESCRIPTION)
    checkpoint_epoch: int = Field(description=EPOCH_DESCRIPTION)
    layer: Literal["conv1", "conv2"]
    shape: list[int] = Field(description="(channels, height, width)")
    maps: list[list[list[float]]] = Field(description="activations after ReLU, rounded to 4 decimals")


# Not blank: some character that str.strip() keeps. Spelled out, since regex engines disagree on `\s`.
SPACES = "".join(c for c in map(chr, range(0x10000)) if c.isspace())
NOT_BLANK = "[^" + "".join(f"\\u{ord(c):04x}" for c in SPACES) + "]"
SENTENCE = {"type": "string", "maxLength": MAX_TEXT_CHARS, "pattern": NOT_BLANK}


def _sentence(schema: dict[str, Any]) -> None:
    """`text`: a sentence (the `string` branch of pydantic's anyOf [string, null])."""
    for option in schema["anyOf"]:
        if option.get("type") == "string":
            option.update(SENTENCE)


def _sentences(schema: dict[str, Any]) -> None:
    """`texts`: 1..MAX_TEXTS sentences (the `array` branch of anyOf [array, null])."""
    for option in schema["anyOf"]:
        if option.get("type") == "array":
            option.update(minItems=1, maxItems=MAX_TEXTS, items=SENTENCE)


def _transliterate_rules(schema: dict[str, Any]) -> None:
    """The rules across fields, as JSON Schema (null counts as absent, as in the validator below)."""
    schema["examples"] = [
        {"text": "hola, ¿cómo estás?"},
        {"texts": ["buenos días", "gracias"], "decoding": "beam", "beam_size": 5, "n_best": 2},
    ]
    schema["oneOf"] = [  # `text` or `texts`
        {"required": ["text"], "properties": {"text": {"type": "string"}, "texts": {"type": "null"}}},
        {"required": ["texts"], "properties": {"texts": {"type": "array"}, "text": {"type": "null"}}},
    ]
    # n_best is 1 (greedy decoding gives one hypothesis), or k with beam decoding and beam_size >= k
    # (beam_size defaults to DEFAULT_BEAM). JSON Schema cannot compare two fields: one branch per k.
    schema["anyOf"] = [{"properties": {"n_best": {"const": 1}}}] + [
        {
            "required": ["decoding", "n_best"] + (["beam_size"] if k > DEFAULT_BEAM else []),
            "properties": {"decoding": {"const": "beam"}, "n_best": {"const": k}, "beam_size": {"minimum": k}},
        }
        for k in range(2, MAX_BEAM + 1)
    ]


class TransliterateRequest(BaseModel):
    """One `text` or a batch of `texts` to translate with a seq2seq model.

    Sentences that hold nothing to translate once normalised (no letters, no `. ! ?`) are refused with a 422
    without `errors`: the model's alphabet decides, not the schema.
    """

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_transliterate_rules)

    text: str | None = Field(None, description=f"one sentence (at most {MAX_TEXT_CHARS} characters)",
                             json_schema_extra=_sentence)
    texts: list[str] | None = Field(None, description=f"or up to {MAX_TEXTS} sentences", json_schema_extra=_sentences)
    decoding: Literal["greedy", "beam"] = "greedy"
    beam_size: json_int(ge=1, le=MAX_BEAM) = Field(DEFAULT_BEAM, description="beams kept per sentence (beam decoding)")
    n_best: json_int(ge=1, le=MAX_BEAM) = Field(1, description="hypotheses returned per sentence (<= beam_size)")
    length_penalty: float = Field(
        0.0, ge=0.0, le=5.0, description="score = log_prob / length ** length_penalty"
    )
    return_attention: bool = Field(False, description="include the best hypothesis's attention matrix")
    run_id: RunId | None = Field(None, description="a succeeded run; default: promoted, else best")
    model: TransliterateModel | None = Field(None, description="the kind to answer with when no run_id is given")
    checkpoint: Checkpoint = Field("best", description=CHECKPOINT_DESCRIPTION)

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
            if any("\ud800" <= ch <= "\udfff" for ch in item):
                raise ValueError(f"text {i} holds a lone surrogate (U+D800-U+DFFF), which is not valid Unicode")
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
    checkpoint: Checkpoint = Field(description=ANSWERED_DESCRIPTION)
    checkpoint_epoch: int = Field(description=EPOCH_DESCRIPTION)
    decoding: Literal["greedy", "beam"]


class TransliterateBatchResponse(BaseModel):
    run_id: str
    checkpoint: Checkpoint = Field(description=ANSWERED_DESCRIPTION)
    checkpoint_epoch: int = Field(description=EPOCH_DESCRIPTION)
    decoding: Literal["greedy", "beam"]
    results: list[Transliteration]
