"""Request and response bodies of the control-plane routes (training, runs, sweeps, models, health).

Model kinds are not spelled here: a `ModelName` is any kind registered in ml.kinds (checked when a request
is validated, listed as an enum when the OpenAPI schema is built), and the per-kind metric names
(`val_accuracy`, `test_error_rate`, ...) come from the kind's declaration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from core.storage import RUN_ID
from ml.kinds import all_kinds, get_kind, kind_names, kinds_serving


def _registered(name: str) -> str:
    get_kind(name)  # UnknownKind (a ValueError) lists the registered kinds
    return name


def kinds_enum(schema: dict[str, Any]) -> None:
    """`json_schema_extra` listing every registered kind (when the schema is made)."""
    schema["enum"] = list(kind_names())


ModelName = Annotated[str, AfterValidator(_registered), Field(json_schema_extra=kinds_enum)]


def serving_model(endpoint: str) -> Any:
    """A `ModelName` that must also answer `endpoint` ("predict", "transliterate"): an enum of those kinds."""

    def check(name: str) -> str:
        if get_kind(name).serves != endpoint:
            names = ", ".join(k.name for k in kinds_serving(endpoint))
            raise ValueError(f"model {name!r} does not answer this endpoint; use one of {names}")
        return name

    def enum(schema: dict[str, Any]) -> None:
        schema["enum"] = [k.name for k in kinds_serving(endpoint)]

    return Annotated[str, AfterValidator(check), Field(json_schema_extra=enum)]


def _whole_number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(**constraints: Any) -> Any:
    """An integer field of a JSON body, with `Field` constraints (ge, le, ...).

    JSON bodies are validated strictly (`"epochs": "3"` or `"attention": 1` are refused, as the schema says),
    except that a whole float is an integer, as in JSON Schema: `"epochs": 20.0` means 20. (The constraints
    come before the validator so that the schema shows them as `minimum`/`maximum`.)
    """
    return Annotated[int, Field(**constraints), BeforeValidator(_whole_number)]


# Run and sweep ids are uuid4 hex. Any other string names no run: the routes answer 404 for it, as for an
# unknown id, so the pattern is documented (`/openapi.json`) rather than validated (which would say 422).
RunId = Annotated[str, Field(max_length=64, json_schema_extra={"pattern": RUN_ID.pattern})]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
MetricName = Annotated[str, Field(description="the kind's metric, e.g. accuracy or error_rate")]
# Responses carry each kind's metric under its own name: val_accuracy, test_error_rate, ...
METRIC_VALUES = {"additionalProperties": {"anyOf": [{"type": "number"}, {"type": "null"}]}}


def _train_schema(schema: dict[str, Any]) -> None:
    schema["examples"] = [{"model": k.name, "dataset": k.default_dataset, **k.defaults} for k in all_kinds()]
    # learning_rate and learning_rates exclude each other: one of them is absent (or null)
    schema["anyOf"] = [{"properties": {name: {"type": "null"}}} for name in ("learning_rate", "learning_rates")]

# Learning rates: strictly positive and no larger than this.
MAX_LEARNING_RATE = 10.0
MAX_SWEEP_SIZE = 10
LearningRate = Annotated[float, Field(gt=0, le=MAX_LEARNING_RATE)]


class TrainRequest(BaseModel):
    """`POST /train`: anything left out takes the kind's default (its declaration in ml/kinds).

    Either `learning_rate` (one run) or `learning_rates` (a sweep), not both.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=_train_schema)

    model: ModelName
    dataset: str | None = Field(
        None, max_length=255,
        description="kmnist | mnist | fashion-mnist, or a folder inside DATA_DIR (see GET /datasets); "
                    "default: the kind's default dataset (GET /models)",
    )
    learning_rate: LearningRate | None = None
    learning_rates: list[LearningRate] | None = Field(
        None, min_length=1, max_length=MAX_SWEEP_SIZE,
        description="a learning-rate sweep: one run per value, all queued together",
    )
    epochs: json_int(ge=1, le=500) | None = None
    batch_size: json_int(ge=1, le=4096) | None = None
    optimizer: Literal["adam", "sgd"] | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    l2_decay: float | None = Field(None, ge=0)
    seed: json_int(ge=0, le=2**32 - 1) | None = None
    limit: json_int(ge=1) | None = Field(None, description="cap on examples per split, for quick trials")
    attention: bool | None = Field(None, description="text-pair kinds only")
    hidden_size: json_int(ge=8, le=1024) | None = Field(None, description="text-pair kinds only")
    max_length: json_int(ge=2, le=200) | None = Field(None, description="text-pair kinds only: keep shorter pairs")
    direction: Literal["spa-eng", "eng-spa"] | None = Field(None, description="text-pair kinds only")
    device: Literal["gpu", "cpu", "any"] = Field(
        "any",
        description="where the runs train: gpu (only a worker serving the gpu queue takes them), cpu (only a "
                    "cpu worker), or any (sent to both queues; the first worker to claim a run trains it)",
    )

    @model_validator(mode="after")
    def _one_learning_rate_field(self) -> TrainRequest:
        if self.learning_rate is not None and self.learning_rates is not None:
            raise ValueError("give either learning_rate or learning_rates, not both")
        return self

    def overrides(self) -> dict[str, Any]:
        """The training fields the client set (not model, dataset, the sweep list or the device)."""
        return self.model_dump(exclude={"model", "dataset", "learning_rates", "device"}, exclude_none=True)


class TrainResponse(BaseModel):
    run_id: str = Field(description="the first (or only) run")
    run_ids: list[str]
    sweep_id: str | None = Field(None, description="set when learning_rates made a sweep")


class DatasetInfo(BaseModel):
    name: str
    kind: Literal["images", "pairs"]
    model: str = Field(description="the first kind this dataset trains (see `models` for all)")
    models: list[str] = Field(description="every registered kind that trains on this dataset")
    builtin: bool = Field(description="kmnist, mnist, fashion-mnist, spa-eng (downloaded on first use when missing)")
    available: bool = Field(description="whether its files are already in DATA_DIR (uploads: always)")
    source: Literal["builtin", "folder", "upload"] = Field(
        description="builtin: downloaded by name; folder: a folder of the API's DATA_DIR; upload: POST /datasets")
    sha256: str | None = Field(None, description="uploads: sha256 of the stored canonical archive")
    size_bytes: int | None = Field(None, description="uploads: bytes of the stored archive")
    counts: dict[str, int] | None = Field(None, description="uploads: records per split or file")
    files: dict[str, int] | None = Field(None, description="uploads: file name -> bytes")
    created_at: datetime | None = Field(None, description="uploads: when it was uploaded")
    runs: int | None = Field(None, description="uploads: runs that train on it (it cannot be deleted while > 0)")


class DatasetList(BaseModel):
    datasets: list[DatasetInfo]


class Epoch(BaseModel):
    """One epoch: training loss, seconds, and the kind's validation metric as `val_<metric>`."""

    model_config = ConfigDict(extra="allow", json_schema_extra=METRIC_VALUES)

    epoch: int
    train_loss: float | None
    seconds: float


class RunOut(BaseModel):
    """A run as stored now; timestamps are ISO 8601 in UTC."""

    id: str
    model: str
    dataset: str
    config: dict[str, Any]
    status: RunStatus
    sweep_id: str | None
    attempt: int
    worker: str | None
    device: str | None = Field(description='what it trained on: "cuda:0 (NVIDIA …)" or "cpu"')
    device_request: Literal["gpu", "cpu", "any"] = Field(description="the device POST /train asked for")
    host: str | None = Field(description="the machine of the worker that claimed it (last)")
    cancel_requested: bool
    epochs_total: int
    epochs_done: int
    latest_epoch: Epoch | None
    metric: MetricName
    best_val_metric: float | None
    best_epoch: int | None = Field(None, description="the epoch of the run's best checkpoint (best.pt), once it "
                                                     "finished; null for runs trained before best checkpoints")
    test_metric_name: str = Field(description="test_<metric>")
    test_metric: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    error: str | None


class RunList(BaseModel):
    runs: list[RunOut]


class ArtifactOut(BaseModel):
    name: str
    kind: str = Field(description="checkpoint | plot")
    size_bytes: int
    created_at: datetime
    url: str = Field(description="where to download it (streamed from the artifact store)")


class ArtifactList(BaseModel):
    artifacts: list[ArtifactOut]


class RunMetrics(BaseModel):
    """Per-epoch metrics, and the test metric as `test_<metric>` (null until the run has finished)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=METRIC_VALUES)

    run_id: str
    model: str
    status: RunStatus
    epochs_total: int
    epochs: list[Epoch]


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
    model: str
    dataset: str
    metric: MetricName
    higher_is_better: bool
    best_run_id: str | None = Field(
        description="best validation metric among succeeded runs (among all runs while none has succeeded)"
    )
    runs: list[SweepRow]


class PromoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    run_id: RunId


class ModelInfo(BaseModel):
    model: str
    metric: MetricName
    higher_is_better: bool
    data_kind: Literal["images", "pairs"]
    default_dataset: str
    serves: Literal["predict", "transliterate"] = Field(description="the endpoint its models answer")
    description: str
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


class WorkerOut(BaseModel):
    """A live worker process (seen within its last 3 heartbeats); timestamps are ISO 8601 in UTC."""

    name: str = Field(description="its Celery node name, as written on the runs it claims (`worker`)")
    host: str
    pid: int
    queues: list[str] = Field(description="the training queues it consumes")
    device: str = Field(description='what it trains on: "cuda:0 (NVIDIA …)" or "cpu"')
    current_run: str | None = Field(description="the run it is working on, if any")
    started_at: datetime
    last_seen_at: datetime


class WorkerList(BaseModel):
    workers: list[WorkerOut] = Field(description="sorted by name")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    database: str = Field(description='"ok" or the error')
    broker: str = Field(description='"ok" or the error')
    detail: str | None = None


class FieldError(BaseModel):
    field: str = Field(description="the field, dotted (`texts.2`, `Last-Event-ID`); `body` or `request` for all")
    message: str


class ErrorResponse(BaseModel):
    """The body of every error answer (4xx, 5xx): `detail` is one readable line.

    `errors` (422 only) lists the fields that broke a rule `/openapi.json` states. A 422 without `errors` is a
    well-formed request the data refuses: an unknown dataset, a run of another kind, a blank image.
    """

    detail: str = Field(description="what went wrong, in one line")
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        None, description="the request's invalid fields (validation errors only)"
    )


class Percentiles(BaseModel):
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class EndpointServing(BaseModel):
    endpoint: Literal["predict", "transliterate"]
    batching: bool = Field(description="INKWELL_BATCHING: requests share model calls")
    models_loaded: int = Field(description="models with a batcher in this process")
    queue_depth: int = Field(description="requests waiting for a model now")
    queue_limit: int = Field(description="per model (INKWELL_BATCH_QUEUE); a request beyond it gets 503")
    max_batch: int = Field(description="items (predict) or requests (transliterate) in one model call at most")
    batches: int = Field(description="model calls since the process started")
    items: int = Field(description="items answered by those calls")
    rejected: int = Field(description="requests refused with 503 because the queue was full")
    recent_batches: int = Field(description="how many recent batches the figures below describe")
    mean_batch_size: float | None
    batch_sizes: dict[str, int] = Field(description='recent batches by size bucket: "8" counts sizes 5 to 8')
    queue_wait_ms: Percentiles = Field(description="how long the oldest request of a batch waited")
    batch_ms: Percentiles = Field(description="model time of a batch")


class ServingStats(BaseModel):
    endpoints: list[EndpointServing]
