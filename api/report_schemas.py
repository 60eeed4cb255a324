"""Bodies of the assignment's report (GET /report) and of POST /report/reproduce.

Every section says whether it is `ready` and, when not, `missing`: the request that produces it (or what is
still running), then its data so far.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.evaluation_schemas import MAX_BEAM
from api.schemas import RunStatus, json_int

SECTIONS = ("sweep", "curves", "activations", "attention", "decoding", "theory")


class Section(BaseModel):
    ready: bool
    missing: str | None = Field(None, description="when not ready: the request that produces it, or what still runs")


class SweepRow(BaseModel):
    learning_rate: float | None
    run_id: str
    status: RunStatus
    epochs_done: int
    epochs_total: int
    final_train_loss: float | None = Field(description="the training loss of the last epoch")
    best_val_accuracy: float | None
    best_epoch: int | None
    test_accuracy: float | None = Field(description="final metric test_accuracy: the last epoch's weights")


class SweepSection(Section):
    sweep_id: str | None = None
    dataset: str | None = None
    rows: list[SweepRow] = []
    best_rate: float | None = Field(None, description="the rate whose run has the highest best val accuracy")
    best_run_id: str | None = None


class CurveEpoch(BaseModel):
    epoch: int
    train_loss: float | None
    val_accuracy: float | None


class CurvesSection(Section):
    run_id: str | None = None
    learning_rate: float | None = None
    epochs: list[CurveEpoch] = []
    loss_plot_url: str | None = None
    validation_plot_url: str | None = None


class ActivationsSection(Section):
    run_id: str | None = None
    dataset: str | None = None
    layer: str = "conv1"
    image_index: int = Field(0, description="which image of the test split")
    image_url: str


class ErrorEpoch(BaseModel):
    epoch: int
    train_loss: float | None
    val_error_rate: float | None


class AttentionRun(BaseModel):
    run_id: str
    dataset: str
    attention: bool
    epochs_done: int
    epochs_total: int
    curve: list[ErrorEpoch]
    best_val_error_rate: float | None
    best_epoch: int | None
    test_error_rate: float | None = Field(description="final metric test_error_rate (last epoch's weights)")


class AttentionSection(Section):
    without_attention: AttentionRun | None = None
    with_attention: AttentionRun | None = None
    same_dataset: bool = False


class DecodingCell(BaseModel):
    run_id: str
    status: str = Field(description="succeeded | queued | running | missing")
    evaluation_id: str | None = None
    error_rate: float | None = None
    n: int | None = Field(None, description="test examples scored")
    limit: int | None = None


class DecodingRow(BaseModel):
    beam_size: int
    cells: list[DecodingCell] = Field(description="one per run of `runs`, in that order")


class DecodingRun(BaseModel):
    run_id: str
    attention: bool


class NeededEvaluation(BaseModel):
    run_id: str
    path: str
    body: dict[str, Any]


class DecodingSection(Section):
    runs: list[DecodingRun] = []
    greedy: list[DecodingCell] = Field([], description="one per run of `runs`")
    beam: list[DecodingRow] = Field([], description="beam sizes 1..10, length penalty 0")
    needed: list[NeededEvaluation] = Field([], description="evaluation requests still to make")
    pending: list[str] = Field([], description="evaluations still queued or running")
    plot_url: str


class ConvMatrix(BaseModel):
    input_shape: list[int] = Field(description="(C_in, H, W)")
    kernel_shape: list[int] = Field(description="(C_out, C_in, kH, kW)")
    stride: int
    padding: int
    matrix_shape: list[int] = Field(description="(C_out*H_out*W_out, C_in*H*W)")
    nonzeros: int
    sparsity: float = Field(description="the fraction of entries that are zero")
    matrix: list[list[str]] | None = Field(None, description="symbolic entries (kernel taps a, b, c, d; 0)")


class TheorySection(Section):
    conv_example: ConvMatrix
    cnn_conv1: ConvMatrix
    cnn_parameters: dict[str, int]
    fc_parameters: dict[str, int] = Field(description="each conv layer replaced by a fully-connected one")
    ratio: float = Field(description="fc_parameters.total / cnn_parameters.total")


class Report(BaseModel):
    generated_at: datetime
    limit: int | None = Field(description="the evaluations (and runs) read are those with this limit; null: any")
    ready: bool = Field(description="every section is ready")
    reproduce: str = Field(description="the request that queues everything missing")
    sweep: SweepSection
    curves: CurvesSection
    activations: ActivationsSection
    attention: AttentionSection
    decoding: DecodingSection
    theory: TheorySection


class ReproduceEpochs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    cnn: json_int(ge=1, le=500) = Field(20, description="epochs of each sweep run")
    seq2seq: json_int(ge=1, le=500) = Field(50, description="epochs of each seq2seq run")


class ReproduceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    image_dataset: str = Field("kmnist", min_length=1, max_length=255, description="the CNN sweep's dataset")
    text_dataset: str = Field("spa-eng", min_length=1, max_length=255, description="the seq2seq runs' dataset")
    epochs: ReproduceEpochs | None = Field(None, description="default: the assignment's 20 (cnn) and 50 (seq2seq)")
    limit: json_int(ge=1, le=1_000_000) | None = Field(
        None, description="examples per split, for runs and evaluations (quick trials); null: all")
    beam_sizes: list[json_int(ge=1, le=MAX_BEAM)] = Field(
        list(range(1, 11)), min_length=1, max_length=MAX_BEAM, description="beam sizes to evaluate (greedy too)")


class ReproduceResponse(BaseModel):
    runs: list[str] = Field(description="runs queued by this request")
    reused_runs: list[str] = Field(description="matching runs that already succeeded, or are queued or running")
    evaluations: list[str] = Field(description="every evaluation the report reads (new or found)")
    sweep_id: str | None
