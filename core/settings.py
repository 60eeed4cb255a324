"""Service settings read from `INKWELL_*` environment variables (plus plain `PORT`)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# scheme (sqlite, sqlite+pysqlite, sqla+sqlite, db+sqlite, ...) :/// path [?query]
_SQLITE_URL = re.compile(r"^(?P<scheme>[\w.+-]*sqlite[\w.+-]*):///(?P<path>[^?]*)(?P<query>\?.*)?$")


def sqlite_path(url: str | None) -> Path | None:
    """The database file of a SQLite URL (any scheme mentioning sqlite); None for other URLs or memory."""
    if not url:
        return None
    match = _SQLITE_URL.match(url)
    if match is None:
        return None
    path = match["path"]
    if path in ("", ":memory:") or path.startswith("file:"):
        return None
    return Path(path)


def absolute_sqlite_url(url: str | None) -> str | None:
    """`url` with a relative SQLite file path made absolute against the current directory."""
    path = sqlite_path(url)
    if url is None or path is None or path.is_absolute():
        return url
    match = _SQLITE_URL.match(url)
    assert match is not None  # sqlite_path matched it
    return f"{match['scheme']}:///{(Path.cwd() / path).resolve()}{match['query'] or ''}"


class Settings(BaseSettings):
    """Everything api/ and worker/ read from the environment; relative paths resolve against the cwd."""

    model_config = SettingsConfigDict(env_prefix="INKWELL_", extra="ignore", populate_by_name=True)

    database_url: str = "sqlite:///./var/inkwell.db"
    broker_url: str = "sqla+sqlite:///./var/broker.db"
    result_backend: str | None = None  # None: results live in the database, no Celery backend needed
    artifacts_dir: Path = Path("./var/artifacts")  # the local store when artifacts_url is unset
    # Where runs' checkpoints and plots and uploaded datasets are stored: a folder, file:///path or
    # s3://bucket/prefix (core/objectstore.py). Unset: artifacts_dir.
    artifacts_url: str | None = None
    s3_endpoint_url: str | None = None  # a non-AWS S3 endpoint (SeaweedFS, MinIO, ...); credentials: AWS_*
    # This process's local cache (checkpoints being trained, served models, datasets by hash): nothing else
    # on its disk matters to the service.
    cache_dir: Path = Path("./var/cache")
    # How long a worker retries a write to an unreachable artifact store before the run fails.
    store_retry_seconds: float = Field(120, gt=0)
    max_dataset_bytes: int = Field(200_000_000, gt=0)  # one POST /datasets request
    data_dir: Path = Path("./data")
    api_key: str | None = None  # the old single key: an admin key (api/access.py)
    api_keys: str | None = None  # "admin:KEY1,infer:KEY2,read:KEY3" (scopes: read, infer, train, admin)
    metrics_public: bool = False  # /metrics without a key even when keys are set
    host: str = "127.0.0.1"  # where `python -m api` listens; 0.0.0.0 only inside a private network
    max_upload_bytes: int = Field(5_000_000, gt=0)
    max_image_pixels: int = Field(25_000_000, gt=0)
    max_body_bytes: int = Field(1_000_000, gt=0)  # any JSON body (uploads: max_upload_bytes)
    inference_concurrency: int = Field(2, ge=1)  # model calls running at once in one API process
    inference_waiting: int = Field(64, ge=0)  # model calls waiting for a slot; more get 503 + Retry-After
    batching: bool = True  # /predict, /transliterate: concurrent requests for one model share a call
    batch_max_items: int = Field(64, ge=1)  # images in one batch
    # How long the first request waits for others. 0: a batch is what arrived while the model was busy (no added
    # latency; measured best on 2 cores, docs/benchmarks.md).
    batch_max_wait_ms: float = Field(0, ge=0)
    # /transliterate requests searched together (and at most max_decode_rows texts x beams in one search);
    # 64 rather than 16: beam 5 at 32 connections 405-428 vs 336-370 sentences/s (docs/benchmarks.md)
    batch_max_requests: int = Field(64, ge=1)
    batch_queue: int = Field(64, ge=1)  # requests waiting per model; more get 503 + Retry-After
    # /predict, /transliterate and /activation-maps requests in one API process, from the first byte to the
    # answer; more get 503 + Retry-After before their body is read (api/limits.py InferenceAdmission)
    inference_max_in_flight: int = Field(128, ge=1)
    # torch threads for a model call in the API process. 1: the event loop and the batcher thread each keep a
    # core on a 2-core machine (more threads spin against the loop); scale with processes (web_concurrency).
    # 0 leaves torch's default (one thread per core).
    inference_threads: int = Field(1, ge=0)
    web_concurrency: int = Field(1, ge=1)  # `python -m api` processes, each with its own models and batchers
    gc_freeze: bool = True  # the API freezes its startup objects out of the garbage collector (api/main.py)
    access_log: bool = True  # uvicorn's line per request (the request histograms in /metrics count them too)
    max_decode_rows: int = Field(1024, ge=1)  # one /transliterate request: texts x beams searched at once
    # Training queues are f"{queue_prefix}gpu" and f"{queue_prefix}cpu" (core.queue.queues_for): a run asks for
    # gpu, cpu or any (both queues; the first worker to claim it trains it).
    queue_prefix: str = ""
    # The queue a worker serves: auto = gpu when torch sees a CUDA device, else cpu (worker/__main__.py).
    worker_device: Literal["auto", "cpu", "gpu"] = "auto"
    heartbeat_seconds: float = Field(10, gt=0)
    lease_seconds: float = Field(60, gt=0)
    unsent_grace_seconds: float = Field(30, gt=0)  # a queued run never sent for this long is sent by a reaper
    resend_after_seconds: float = Field(600, gt=0)  # ... and one sent this long ago (doubling per send)
    model_cache_size: int = Field(4, ge=1)
    # How long the API answers from the serving run it last checked (promoted / best run, checkpoint file)
    # before checking the database and the file again: the bound on noticing a change made elsewhere.
    serving_refresh_seconds: float = Field(1.0, ge=0)
    # Modules imported at startup that register more model kinds (ml.kinds.register_kind), comma-separated.
    kind_modules: Annotated[tuple[str, ...], NoDecode] = ()
    port: int = Field(8000, gt=0, lt=65536, validation_alias=AliasChoices("INKWELL_PORT", "PORT"))

    @field_validator("database_url", "broker_url", "result_backend")
    @classmethod
    def _absolute_sqlite(cls, value: str | None) -> str | None:
        return absolute_sqlite_url(value)

    @field_validator("artifacts_dir", "data_dir", "cache_dir")
    @classmethod
    def _absolute_dir(cls, value: Path) -> Path:
        return (Path.cwd() / value.expanduser()).resolve()

    @field_validator("kind_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("api_key", "api_keys", "result_backend", "artifacts_url", "s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("host", mode="before")
    @classmethod
    def _empty_is_loopback(cls, value: object) -> object:
        return "127.0.0.1" if value is None or (isinstance(value, str) and not value.strip()) else value.strip()


def artifacts_location(settings: Settings) -> str:
    """The artifact store's URL: INKWELL_ARTIFACTS_URL, else the INKWELL_ARTIFACTS_DIR folder."""
    return settings.artifacts_url or str(settings.artifacts_dir)


def ensure_dirs(settings: Settings) -> None:
    """Create the local artifacts folder (when it is the store), the cache and SQLite databases' folders."""
    if not settings.artifacts_url:
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    for url in (settings.database_url, settings.broker_url, settings.result_backend):
        ensure_sqlite_parent(url)


def ensure_sqlite_parent(url: str | None) -> None:
    """Create the folder a SQLite URL's file lives in (nothing for other URLs)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; `reset_settings()` forgets them (tests)."""
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings so the next `get_settings()` reads the environment again."""
    get_settings.cache_clear()
