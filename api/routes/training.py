"""`POST /train` (queue runs or a learning-rate sweep) and `GET /datasets`.

The work is core.training.submit_training (dataset, configs, idempotent run creation, broker messages);
its TrainingRejected becomes 422 and BrokerUnavailable 503 (api/errors.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from api.deps import ApiKey, CeleryDep, SessionDep, SettingsDep
from api.schemas import DatasetInfo, DatasetList, TrainRequest, TrainResponse
from core.training import submit_training
from ml.data.catalog import list_datasets
from ml.kinds import kinds_for_data

router = APIRouter(tags=["training"])


@router.get("/datasets", summary="Datasets a run can train on", response_model=DatasetList)
def datasets(settings: SettingsDep) -> DatasetList:
    found = []
    for entry in list_datasets(settings.data_dir):
        names = [k.name for k in kinds_for_data(entry.data_kind)]
        if names:
            found.append(DatasetInfo(name=entry.name, kind=entry.data_kind, model=names[0], models=names,
                                     builtin=entry.builtin, available=entry.available))
    return DatasetList(datasets=found)


@router.post(
    "/train",
    status_code=202,
    summary="Queue a training run, or a learning-rate sweep (one run per rate)",
    response_model=TrainResponse,
    dependencies=[ApiKey],
    responses={
        422: {"description": "invalid field, unknown dataset, dataset of another kind, or a reused "
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
    runs = submit_training(session, celery, settings, model=body.model, dataset=body.dataset,
                           overrides=body.overrides(), learning_rates=body.learning_rates,
                           idempotency_key=idempotency_key)
    return TrainResponse(run_id=runs[0].id, run_ids=[r.id for r in runs], sweep_id=runs[0].sweep_id)
