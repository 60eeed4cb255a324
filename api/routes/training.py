"""`POST /train` (queue runs or a learning-rate sweep) and `GET /datasets`.

Idempotency: runs made with an `Idempotency-Key` carry it. A sweep shares one key over several
runs, so no unique index can guard it; instead the lookup and the insert happen in one transaction
that first takes a lock: a PostgreSQL advisory transaction lock on the key, or on SQLite the
database's write lock (taken by a no-op UPDATE before anything is read). A concurrent retry waits
for the first request to commit, then finds its runs and returns them without queuing again.
A retry whose body differs from the original gets 422. When queuing fails (broker down) the runs
are marked failed and lose the key, so a retry with the same key tries again.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException
from sqlalchemy import false, text, update
from sqlalchemy.orm import Session

from api.deps import ApiKey, CeleryDep, SessionDep, SettingsDep
from api.schemas import DatasetInfo, DatasetList, TrainRequest, TrainResponse
from core.models import Run
from core.queue import enqueue_training
from core.runs import create_runs, find_by_idempotency_key, finish_run
from ml.config import TrainConfig
from ml.data.images import BUILTIN, KMNIST_NPZ, RAW_STEMS
from ml.data.specs import IMAGE_NAMES, folder_kind, model_for_spec, spec_for_name

log = logging.getLogger("inkwell.api.training")
router = APIRouter(tags=["training"])

DEFAULT_DATASET = {"cnn": "kmnist", "seq2seq": "spa-eng"}
KIND_MODEL = {"images": "cnn", "pairs": "seq2seq"}
KIND_WORDS = {"cnn": "images", "seq2seq": "text pairs"}


def _builtin_available(name: str, data_dir: Path) -> bool:
    """Whether the built-in image set's files (raw IDX, or KMNIST's npz) are already under data_dir."""
    folder = data_dir / BUILTIN[name][0]
    raw = folder / "raw"
    if all((raw / stem).is_file() or (raw / f"{stem}.gz").is_file() for stem in RAW_STEMS):
        return True
    return name == "kmnist" and all((folder / n).is_file() for n in KMNIST_NPZ)


def _safe_folder_kind(folder: Path) -> str | None:
    try:
        return folder_kind(folder)
    except OSError:  # unreadable folder: not a dataset
        return None


def list_datasets(data_dir: Path) -> list[DatasetInfo]:
    """The built-in image sets, then every folder of data_dir that holds a recognisable dataset."""
    found = [
        DatasetInfo(name=name, kind="images", model="cnn", builtin=True,
                    available=_builtin_available(name, data_dir))
        for name in IMAGE_NAMES
    ]
    try:
        folders = sorted(p for p in data_dir.iterdir() if p.is_dir()) if data_dir.is_dir() else []
    except OSError:
        folders = []
    for folder in folders:
        if folder.name in IMAGE_NAMES or folder.name.startswith("."):
            continue
        kind = _safe_folder_kind(folder)
        if kind is not None:
            found.append(DatasetInfo(name=folder.name, kind=kind, model=KIND_MODEL[kind], builtin=False,
                                     available=True))
    return found


def _resolve_dataset(body: TrainRequest, data_dir: Path) -> str:
    """The dataset name to train on; 422 if it is unknown or holds the other model's kind of data."""
    name = body.dataset if body.dataset is not None else DEFAULT_DATASET[body.model]
    try:
        spec = spec_for_name(name, data_dir)
    except (OSError, ValueError):  # e.g. a name too long for the file system
        spec = None
    if spec is None:
        known = ", ".join(f"{d.name} ({d.kind})" for d in list_datasets(data_dir))
        raise HTTPException(
            422, f"unknown dataset {name[:80]!r}; available datasets: {known} (see GET /datasets)"
        )
    wanted = model_for_spec(spec)
    if wanted != body.model:
        raise HTTPException(
            422, f"dataset {name!r} holds {KIND_WORDS[wanted]} and trains {wanted}, not {body.model}",
        )
    return name


def _configs(body: TrainRequest, dataset: str) -> list[dict[str, Any]]:
    """One TrainConfig dict per run (one per learning rate of a sweep)."""
    overrides = body.overrides()
    rates = body.learning_rates or [overrides.pop("learning_rate", None)]
    try:
        return [
            TrainConfig.for_model(body.model, data=dataset, **{**overrides, "learning_rate": lr}).to_dict()
            for lr in rates
        ]
    except (TypeError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from exc


def _lock_key(session: Session, key: str) -> None:
    """Serialise requests carrying `key` until this transaction ends (see the module docstring)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                        {"key": f"inkwell.idempotency:{key}"})
    elif dialect == "sqlite":
        session.execute(update(Run).where(false()).values(idempotency_key=Run.idempotency_key)
                        .execution_options(synchronize_session=False))


def create_or_find(
    session: Session, key: str | None, model: str, dataset: str, configs: list[dict[str, Any]],
    sweep_id: str | None,
) -> tuple[list[Run], bool]:
    """(runs, created): the runs made now, or those an earlier request with the same key made."""
    if key is None:
        return create_runs(session, configs, model, dataset, sweep_id=sweep_id), True
    session.rollback()  # start a fresh transaction whose first statement takes the lock
    try:
        _lock_key(session, key)
        existing = find_by_idempotency_key(session, key)
        if existing:
            session.rollback()
            return existing, False
        return create_runs(session, configs, model, dataset, sweep_id=sweep_id, idempotency_key=key), True
    except BaseException:
        session.rollback()
        raise


def _same_request(runs: list[Run], model: str, dataset: str, configs: list[dict[str, Any]]) -> bool:
    return [(r.model, r.dataset, r.config) for r in runs] == [(model, dataset, c) for c in configs]


def _short(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:300]


def _response(runs: list[Run]) -> TrainResponse:
    return TrainResponse(run_id=runs[0].id, run_ids=[r.id for r in runs], sweep_id=runs[0].sweep_id)


@router.get("/datasets", summary="Datasets a run can train on", response_model=DatasetList)
def datasets(settings: SettingsDep) -> DatasetList:
    return DatasetList(datasets=list_datasets(settings.data_dir))


@router.post(
    "/train",
    status_code=202,
    summary="Queue a training run, or a learning-rate sweep (one run per rate)",
    response_model=TrainResponse,
    dependencies=[ApiKey],
    responses={
        401: {"description": "API key missing or wrong"},
        422: {"description": "invalid field, unknown dataset, dataset of the other model, or a reused "
                             "Idempotency-Key with a different body"},
        503: {"description": "the broker is unreachable; the runs were marked failed"},
    },
)
def train(
    body: TrainRequest,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> TrainResponse:
    dataset = _resolve_dataset(body, settings.data_dir)
    configs = _configs(body, dataset)
    sweep_id = uuid.uuid4().hex if body.learning_rates is not None else None
    runs, created = create_or_find(session, idempotency_key, body.model, dataset, configs, sweep_id)
    if not created:
        if not _same_request(runs, body.model, dataset, configs):
            raise HTTPException(422, "this Idempotency-Key was already used with a different request body")
        return _response(runs)
    try:
        for run in runs:
            task_id = enqueue_training(celery, run.id, settings)
            session.execute(update(Run).where(Run.id == run.id).values(task_id=task_id)
                            .execution_options(synchronize_session=False))
            session.commit()
    except Exception as exc:  # noqa: BLE001 - any broker failure: fail the runs, answer 503
        session.rollback()
        reason = _short(exc)
        log.error("could not queue runs %s: %s", [r.id for r in runs], reason)
        ids = [r.id for r in runs]
        for run_id in ids:
            finish_run(session, run_id, "failed", error=f"could not queue: {reason}")
        session.execute(update(Run).where(Run.id.in_(ids)).values(idempotency_key=None)
                        .execution_options(synchronize_session=False))
        session.commit()
        raise HTTPException(
            503, f"could not queue the training: the broker is unreachable ({reason}); "
                 f"the run(s) {', '.join(ids)} were marked failed, try again later",
        ) from exc
    return _response(runs)
