"""Request and response models of /predict, /activation-maps and /transliterate."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TEXT_CHARS = 200
MAX_TEXTS = 256
MAX_BEAM = 20


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
    run_id: str | None = Field(None, description="a succeeded seq2seq run; default: promoted, else best")

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
