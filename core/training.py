"""Queuing training: a request becomes runs (found again by its idempotency key) and broker messages.

`submit_training` is what `POST /train` calls. It resolves the dataset for the kind, builds one TrainConfig
per learning rate, creates the runs (or finds those of an earlier identical request) and sends each run's
message to the queues of the device it asks for (gpu, cpu, or both for any). When the broker refuses, the
runs are marked failed and lose their key, so a retry tries again.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from core.datasets import get_dataset
from core.errors import one_line
from core.models import Run
from core.queue import enqueue_training
from core.runs import create_or_find_runs, fail_unqueued, same_request, set_task_id
from core.settings import Settings
from ml.config import TrainConfig
from ml.data.catalog import list_datasets, resolve_dataset
from ml.errors import DataError
from ml.kinds import DATA_KINDS, get_kind, kinds_for_data

log = logging.getLogger("inkwell.training")


class TrainingRejected(ValueError):
    """The request cannot become runs: unknown dataset, data of another kind, invalid values, reused key."""


class BrokerUnavailable(RuntimeError):
    """The runs were created but their messages could not be sent (they were marked failed)."""


def plan_configs(model: str, dataset: str | None, overrides: dict[str, Any], learning_rates: list[float] | None,
                 data_dir: Path, session: Session | None = None) -> tuple[str, list[dict[str, Any]], str | None]:
    """(dataset name, one TrainConfig dict per run, the upload's sha256 or None) for a request;
    TrainingRejected when it cannot train. An uploaded dataset (SQL, when `session` is given) is looked up
    first, then the built-in sets and the data folders."""
    kind = get_kind(model)
    name = dataset if dataset is not None else kind.default_dataset
    upload = get_dataset(session, name) if session is not None else None
    try:
        if upload is not None:
            if upload.kind != kind.data_kind:
                raise DataError(f"dataset {name!r} holds {DATA_KINDS[upload.kind]}, not {DATA_KINDS[kind.data_kind]}")
        else:
            resolve_dataset(name, kind.data_kind, data_dir, download=False)  # the worker downloads
    except DataError as exc:
        message = f"{exc}; a {kind.name} model trains on {kind.data_words}"
        holds = [upload.kind] if upload is not None else [d.data_kind for d in list_datasets(data_dir)
                                                          if d.name == name]
        if holds:
            message += f" ({name!r} trains {', '.join(k.name for k in kinds_for_data(holds[0]))})"
        raise TrainingRejected(message) from None
    rates = learning_rates or [overrides.get("learning_rate")]
    try:
        configs = [TrainConfig.for_model(kind.name, data=name, **{**overrides, "learning_rate": lr}).to_dict()
                   for lr in rates]
    except (TypeError, ValueError) as exc:
        raise TrainingRejected(str(exc)) from exc
    return name, configs, upload.sha256 if upload is not None else None


def submit_training(
    session: Session,
    celery: Celery,
    settings: Settings,
    *,
    model: str,
    dataset: str | None,
    overrides: dict[str, Any],
    learning_rates: list[float] | None = None,
    idempotency_key: str | None = None,
    device_request: str = "any",
) -> list[Run]:
    """Queue one run (or a sweep: one per learning rate); returns the runs, new or found by the key.

    `device_request` (gpu, cpu or any) picks the queues its messages go to (core.queue.queues_for)."""
    name, configs, sha256 = plan_configs(model, dataset, overrides, learning_rates, settings.data_dir, session)
    sweep_id = uuid.uuid4().hex if learning_rates is not None else None
    runs, created = create_or_find_runs(session, configs, model, name, sweep_id, idempotency_key,
                                        device_request=device_request, dataset_sha256=sha256)
    if not created:
        if not same_request(runs, model, name, configs, device_request) or runs[0].dataset_sha256 != sha256:
            raise TrainingRejected("this Idempotency-Key was already used with a different request body")
        return runs
    ids = [r.id for r in runs]
    try:
        for run in runs:
            set_task_id(session, run.id, enqueue_training(celery, run.id, settings, run.device_request))
    except Exception as exc:  # any broker failure: fail the runs, tell the caller
        session.rollback()
        reason = one_line(exc)
        log.error("could not queue runs %s: %s", ids, reason)
        fail_unqueued(session, ids, reason)
        raise BrokerUnavailable(f"could not queue the training: the broker is unreachable ({reason}); "
                                f"the run(s) {', '.join(ids)} were marked failed, try again later") from exc
    return runs
