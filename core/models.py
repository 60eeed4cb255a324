"""Database tables: runs, their per-epoch and final metrics, artifacts, evaluations, promoted models and live
workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")

# Explicit constraint names: the same on every backend, so Alembic autogenerate stays stable.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite compares timestamps as text: store every one as naive UTC in the same format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class Run(Base):
    """One training run of one model on one dataset with one configuration."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4().hex
    model: Mapped[str] = mapped_column(String(32))  # a kind name (ml.kinds), checked by the API, not here
    dataset: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued", index=True)
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    # gpu | cpu | any: the queues its message goes to (core.queue.queues_for); checked by the API, not here
    device_request: Mapped[str] = mapped_column(String(8), default="any", server_default="any")
    host: Mapped[str | None] = mapped_column(String(255))  # the machine of the worker that claimed it last
    epochs_total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]  # when its training message was last sent (None: never)
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # messages sent so far
    best_val_metric: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)  # the epoch its best.pt holds (None: not known)
    # the uploaded dataset's content hash when it trains on one (a worker fetches exactly those bytes)
    dataset_sha256: Mapped[str | None] = mapped_column(String(64), index=True)

    epoch_metrics: Mapped[list[EpochMetric]] = relationship(
        back_populates="run", order_by="EpochMetric.epoch", cascade="all, delete-orphan", passive_deletes=True
    )
    final_metrics: Mapped[list[FinalMetric]] = relationship(
        back_populates="run", order_by="FinalMetric.name", cascade="all, delete-orphan", passive_deletes=True
    )
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="run", order_by="Artifact.name", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, model={self.model!r}, status={self.status!r}, attempt={self.attempt})"


class EpochMetric(Base):
    """Training loss and validation metric after one epoch (upserted on (run_id, epoch))."""

    __tablename__ = "epoch_metrics"
    __table_args__ = (UniqueConstraint("run_id", "epoch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    train_loss: Mapped[float | None] = mapped_column(Float)  # None when not finite
    val_metric: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="epoch_metrics")


class FinalMetric(Base):
    """A metric measured once training ended, e.g. test_accuracy or test_error_rate."""

    __tablename__ = "final_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)

    run: Mapped[Run] = relationship(back_populates="final_metrics")


class Artifact(Base):
    """A file a run produced; `path` is its key in the artifact store (core/storage.py)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # checkpoint | plot | ...
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship(back_populates="artifacts")


CHECKPOINT_CHOICES = ("best", "last")
EVALUATION_SPLITS = ("val", "test")


class Evaluation(Base):
    """One scoring of a run's checkpoint on a dataset split, done by a worker like a training run.

    `request_key` hashes everything that decides the result (run, checkpoint, dataset and its content hash,
    split, parameters): an identical request finds this row instead of computing it again.
    """

    __tablename__ = "evaluations"
    __table_args__ = (
        CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        CheckConstraint(_one_of("checkpoint", CHECKPOINT_CHOICES), name="checkpoint"),
        CheckConstraint(_one_of("split", EVALUATION_SPLITS), name="split"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4().hex
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    request_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the canonical request
    checkpoint: Mapped[str] = mapped_column(String(8))  # asked for: best | last
    checkpoint_used: Mapped[str | None] = mapped_column(String(8))  # what answered (a run without best.pt: last)
    checkpoint_epoch: Mapped[int | None] = mapped_column(Integer)  # the epoch of the weights scored
    dataset: Mapped[str] = mapped_column(String(255))
    dataset_sha256: Mapped[str | None] = mapped_column(String(64))  # an uploaded dataset's content hash
    split: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]]  # decoding, beam_size, length_penalty, limit (canonical)
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued", index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    worker: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    error: Mapped[str | None] = mapped_column(Text)
    task_id: Mapped[str | None] = mapped_column(String(255))
    sent_at: Mapped[datetime | None]
    sends: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    done: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))  # examples scored so far
    total: Mapped[int | None] = mapped_column(Integer)  # examples to score (known once started)
    metric: Mapped[str | None] = mapped_column(String(32))  # accuracy | error_rate
    value: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int | None] = mapped_column(Integer)
    seconds: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None]  # bounded examples: confusion matrix, mistakes, worst sentences

    run: Mapped[Run] = relationship()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class PromotedModel(Base):
    """The run currently serving predictions for one model kind."""

    __tablename__ = "promoted_models"

    model: Mapped[str] = mapped_column(String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    promoted_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship()


class Worker(Base):
    """A live worker process, written by its heartbeat thread (core/workers.py) and deleted when it stops."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # its Celery node name (runs.worker)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(255))  # the queues it consumes, comma-separated
    device: Mapped[str] = mapped_column(String(64))  # what it trains on: "cuda:0 (NVIDIA ...)" or "cpu"
    current_run: Mapped[str | None] = mapped_column(String(32))  # the run it is working on, if any
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)


class Dataset(Base):
    """An uploaded dataset: its canonical archive is stored content-addressed (`datasets/<sha256>.tar`)."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)  # what POST /train names it
    kind: Mapped[str] = mapped_column(String(16))  # a data kind of ml.kinds: "images" | "pairs"
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the canonical archive
    size_bytes: Mapped[int] = mapped_column(BigInteger)  # of the canonical archive
    counts: Mapped[dict[str, Any]]  # records per split ("train", "val", ... or "images", "labels")
    files: Mapped[dict[str, Any]]  # file name -> bytes
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
