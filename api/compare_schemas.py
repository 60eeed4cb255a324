"""Response bodies of the comparison routes (GET /compare, /compare/metrics.json) and their `runs` query."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import BaseModel, Field

from api.evaluation_schemas import EvaluationOut
from api.schemas import RunStatus

MAX_COMPARED = 20
MAX_EXPORTED = 100
_ID = "[0-9a-f]{32}"


def id_list_query(least: int, most: int) -> Any:
    """`?runs=ID,ID,...`: between `least` and `most` run ids (32 lowercase hex), comma-separated."""
    pattern = f"^{_ID}(,{_ID}){{{least - 1},{most - 1}}}$"
    return Annotated[str, Query(pattern=pattern, max_length=33 * most,
                                description=f"{least} to {most} run ids, comma-separated (a repeated id counts "
                                            "once)")]


def split_ids(text: str) -> list[str]:
    """The ids of a validated `runs` query, in order, each once."""
    return list(dict.fromkeys(text.split(",")))


class CurvePoint(BaseModel):
    epoch: int
    train_loss: float | None
    val_metric: float | None = Field(description="the run's validation metric (`metric`) after this epoch")


class BestEpoch(BaseModel):
    epoch: int
    value: float = Field(description="the best validation metric (by the kind's direction)")


class ComparedRun(BaseModel):
    id: str
    model: str
    dataset: str
    status: RunStatus
    config: dict[str, Any]
    metric: str = Field(description="the kind's metric, e.g. accuracy or error_rate")
    final_metrics: dict[str, float | None] = Field(description="every final metric: test_accuracy, ...")
    best: BestEpoch | None = Field(description="the epoch with the best validation metric (null: no epoch yet)")
    test_metric_name: str = Field(description="test_<metric>")
    test_metric: float | None
    evaluations: list[EvaluationOut] = Field(description="the run's evaluations, newest first (no examples)")
    curves: list[CurvePoint] = Field(description="per-epoch training loss and validation metric")


class Comparison(BaseModel):
    differences: list[str] = Field(description="the config keys whose values differ between the runs")
    runs: list[ComparedRun] = Field(description="in the order asked for")


class ExportEpoch(BaseModel):
    epoch: int
    train_loss: float | None
    val_metric: float | None


class ExportRun(BaseModel):
    run_id: str
    model: str
    dataset: str
    status: RunStatus
    learning_rate: float | None
    attention: bool | None = Field(description="text models: whether the decoder attends (null otherwise)")
    val_metric_name: str = Field(description="val_<metric>, e.g. val_accuracy")
    epochs: list[ExportEpoch]
    final: dict[str, float | None] = Field(description="the run's final metrics by name")


class MetricsExport(BaseModel):
    runs: list[ExportRun]
