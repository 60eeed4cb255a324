"""Request and response bodies of the control-plane routes (training, runs, sweeps, models, health)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ModelName = Literal["cnn", "seq2seq"]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
MetricName = Literal["accuracy", "error_rate"]

# Learning rates: strictly positive and no larger than this.
MAX_LEARNING_RATE = 10.0
MAX_SWEEP_SIZE = 10
LearningRate = Annotated[float, Field(gt=0, le=MAX_LEARNING_RATE)]


class TrainRequest(BaseModel):
    """`POST /train`: anything left out takes the assignment's default for the model (ml.config.DEFAULTS)."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"model": "cnn", "dataset": "kmnist", "learning_rate": 0.0005, "epochs": 20, "batch_size": 8,
                 "optimizer": "adam", "dropout": 0.3, "l2_decay": 0, "seed": 42},
                {"model": "cnn", "learning_rates": [0.01, 0.0005, 0.00001], "epochs": 5},
                {"model": "seq2seq", "dataset": "spa-eng", "attention": True, "learning_rate": 0.003,
                 "epochs": 50, "batch_size": 64, "hidden_size": 128, "dropout": 0.3},
            ]
        },
    )

    model: ModelName
    dataset: str | None = Field(
        None, max_length=255,
        description="kmnist | mnist | fashion-mnist, or a folder inside DATA_DIR (see GET /datasets); "
                    "default kmnist for cnn, spa-eng for seq2seq",
    )
    learning_rate: LearningRate | None = None
    learning_rates: list[LearningRate] | None = Field(
        None, min_length=1, max_length=MAX_SWEEP_SIZE,
        description="a learning-rate sweep: one run per value, all queued together",
    )
    epochs: int | None = Field(None, ge=1, le=500)
    batch_size: int | None = Field(None, ge=1, le=4096)
    optimizer: Literal["adam", "sgd"] | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    l2_decay: float | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    limit: int | None = Field(None, ge=1, description="cap on examples per split, for quick trials")
    attention: bool | None = Field(None, description="seq2seq only")
    hidden_size: int | None = Field(None, ge=8, le=1024, description="seq2seq only")
    max_length: int | None = Field(None, ge=2, le=200, description="seq2seq only: keep shorter pairs")
    direction: Literal["spa-eng", "eng-spa"] | None = Field(None, description="seq2seq only")

    @model_validator(mode="after")
    def _one_learning_rate_field(self) -> TrainRequest:
        if self.learning_rate is not None and self.learning_rates is not None:
            raise ValueError("give either learning_rate or learning_rates, not both")
        return self

    def overrides(self) -> dict[str, Any]:
        """The training fields the client set (not model, dataset or the sweep list)."""
        return self.model_dump(exclude={"model", "dataset", "learning_rates"}, exclude_none=True)


class TrainResponse(BaseModel):
    run_id: str = Field(description="the first (or only) run")
    run_ids: list[str]
    sweep_id: str | None = Field(None, description="set when learning_rates made a sweep")


class DatasetInfo(BaseModel):
    name: str
    kind: Literal["images", "pairs"]
    model: ModelName = Field(description="the model this dataset trains")
    builtin: bool = Field(description="kmnist, mnist, fashion-mnist (downloaded on first use when missing)")
    available: bool = Field(description="whether its files are already in DATA_DIR")


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]


class EpochBase(BaseModel):
    epoch: int
    train_loss: float | None
    seconds: float


class CnnEpoch(EpochBase):
    val_accuracy: float | None


class Seq2SeqEpoch(EpochBase):
    val_error_rate: float | None


Epoch = CnnEpoch | Seq2SeqEpoch


class RunOut(BaseModel):
    """A run as stored now; timestamps are ISO 8601 in UTC."""

    id: str
    model: ModelName
    dataset: str
    config: dict[str, Any]
    status: RunStatus
    sweep_id: str | None
    attempt: int
    worker: str | None
    device: str | None
    cancel_requested: bool
    epochs_total: int
    epochs_done: int
    latest_epoch: Epoch | None
    metric: MetricName = Field(description="validation/test metric: accuracy (cnn) or error_rate (seq2seq)")
    best_val_metric: float | None
    test_metric_name: Literal["test_accuracy", "test_error_rate"]
    test_metric: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None


class RunList(BaseModel):
    runs: list[RunOut]


class MetricsBase(BaseModel):
    run_id: str
    model: ModelName
    status: RunStatus
    epochs_total: int


class CnnMetrics(MetricsBase):
    epochs: list[CnnEpoch]
    test_accuracy: float | None


class Seq2SeqMetrics(MetricsBase):
    epochs: list[Seq2SeqEpoch]
    test_error_rate: float | None


RunMetrics = CnnMetrics | Seq2SeqMetrics


class SweepRow(BaseModel):
    run_id: str
    learning_rate: float
    status: RunStatus
    epochs_done: int
    epochs_total: int
    final_train_loss: float | None
    final_val_metric: float | None
    best_val_metric: float | None
    test_metric: float | None
    best: bool


class SweepOut(BaseModel):
    sweep_id: str
    model: ModelName
    dataset: str
    metric: MetricName
    higher_is_better: bool
    best_run_id: str | None = Field(
        description="best validation metric among succeeded runs (among all runs while none has succeeded)"
    )
    runs: list[SweepRow]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(max_length=64)


class ModelInfo(BaseModel):
    model: ModelName
    metric: MetricName
    promoted_run_id: str | None
    promoted_at: datetime | None
    serving_run_id: str | None = Field(
        description="the promoted run, else the succeeded run with the best metric"
    )
    serving_source: Literal["promoted", "best"] | None
    val_metric: float | None = Field(description="best validation metric of the serving run")
    test_metric: float | None
    hint: str | None = Field(None, description="how to train one when no model can serve")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: str = Field(description='"ok" or the error')
    broker: str = Field(description='"ok" or the error')
    detail: str | None = None
