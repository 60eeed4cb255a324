"""Request and response bodies of evaluations (POST /runs/{id}/evaluations, GET /evaluations/{id})."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import Evaluation

Checkpoint = Literal["best", "last"]
MAX_BEAM = 50


class EvaluationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split: Literal["val", "test"] = Field("test", description="which split of the dataset to score")
    dataset: str | None = Field(None, min_length=1, max_length=100,
                                description="another dataset of the same kind (GET /datasets); default: the run's")
    checkpoint: Checkpoint = Field("best", description="best: the best validation epoch's weights; last: the "
                                                       "final epoch's (the assignment's protocol)")
    decoding: Literal["greedy", "beam"] = Field("greedy", description="text models: how hypotheses are decoded")
    beam_size: int = Field(5, ge=1, le=MAX_BEAM, description="text models, beam decoding: hypotheses kept per step")
    length_penalty: float = Field(0.0, ge=0.0, le=5.0, description="text models, beam: GNMT length-penalty alpha")
    limit: int | None = Field(None, ge=1, le=1_000_000, description="score only the first N examples of the split")


class EvaluationOut(BaseModel):
    id: str
    run_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    cached: bool = Field(False, description="true when an identical earlier request's stored result answered")
    checkpoint: Checkpoint = Field(description="the checkpoint asked for")
    checkpoint_used: Checkpoint | None = Field(None, description="the one scored (a run without best.pt: last)")
    checkpoint_epoch: int | None = None
    dataset: str
    split: str
    decoding: str | None = None
    beam_size: int | None = None
    length_penalty: float | None = None
    limit: int | None = None
    metric: str | None = None
    value: float | None = None
    n: int | None = None
    seconds: float | None = None
    done: int = Field(0, description="examples scored so far")
    total: int | None = None
    error: str | None = None
    attempt: int = 0
    worker: str | None = None
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    details: dict[str, Any] | None = Field(None, description="bounded examples: the CNN's confusion matrix, "
                                                             "per-class accuracy and most confident mistakes; "
                                                             "seq2seq's worst and sampled sentences")


class EvaluationCreated(EvaluationOut):
    evaluation_id: str


class EvaluationList(BaseModel):
    evaluations: list[EvaluationOut]


def evaluation_out(row: Evaluation, *, cached: bool = False, details: bool = True) -> EvaluationOut:
    params = row.params or {}
    return EvaluationOut(
        id=row.id, run_id=row.run_id, status=row.status, cached=cached, checkpoint=row.checkpoint,
        checkpoint_used=row.checkpoint_used, checkpoint_epoch=row.checkpoint_epoch, dataset=row.dataset,
        split=row.split, decoding=params.get("decoding"), beam_size=params.get("beam_size"),
        length_penalty=params.get("length_penalty"), limit=params.get("limit"), metric=row.metric, value=row.value,
        n=row.n, seconds=row.seconds, done=row.done or 0, total=row.total, error=row.error, attempt=row.attempt,
        worker=row.worker, cancel_requested=bool(row.cancel_requested), created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at, details=row.details if details else None)
