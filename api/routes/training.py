"""`POST /train`: queue runs or a learning-rate sweep.

The work is core.training.submit_training (dataset, configs, idempotent run creation, broker messages);
its TrainingRejected becomes 422 and BrokerUnavailable 503 (api/errors.py).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from api.deps import CeleryDep, SessionDep, SettingsDep
from api.schemas import TrainRequest, TrainResponse
from core.training import submit_training

router = APIRouter(tags=["training"])


@router.post(
    "/train",
    status_code=202,
    summary="Queue a training run, or a learning-rate sweep (one run per rate)",
    response_model=TrainResponse,
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
                           idempotency_key=idempotency_key, device_request=body.device)
    return TrainResponse(run_id=runs[0].id, run_ids=[r.id for r in runs], sweep_id=runs[0].sweep_id)
