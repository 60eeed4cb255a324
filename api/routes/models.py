"""Model kinds: which run serves each (promoted, else the best succeeded run), and promoting a run."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy.orm import Session

from api.deps import ApiKey, SessionDep
from api.routes.runs import find_run, metric_name, test_metric_name
from api.schemas import ModelInfo, ModelList, PromoteRequest
from core.models import PromotedModel
from core.runs import best_run, final_metrics, promote, promoted_run
from ml.config import MODELS

router = APIRouter(tags=["models"])


def model_info(session: Session, model: str) -> ModelInfo:
    """The promoted run of `model`, the run serving by default and its metrics."""
    promoted = promoted_run(session, model)
    record = session.get(PromotedModel, model, populate_existing=True) if promoted is not None else None
    serving = promoted or best_run(session, model)
    test = final_metrics(session, serving.id).get(test_metric_name(model)) if serving is not None else None
    hint = None
    if serving is None:
        hint = (f'no trained {model} model yet: POST /train {{"model": "{model}"}} and wait for the run '
                "to succeed (GET /runs/{id})")
    return ModelInfo(
        model=model, metric=metric_name(model),
        promoted_run_id=promoted.id if promoted is not None else None,
        promoted_at=record.promoted_at if record is not None else None,
        serving_run_id=serving.id if serving is not None else None,
        serving_source=None if serving is None else ("promoted" if promoted is not None else "best"),
        val_metric=serving.best_val_metric if serving is not None else None, test_metric=test, hint=hint,
    )


@router.get("/models", summary="Per model kind: the promoted run and the run that serves by default",
            response_model=ModelList)
def models(session: SessionDep) -> ModelList:
    return ModelList(models=[model_info(session, m) for m in MODELS])


@router.post(
    "/models/{model}/promote",
    summary="Make a succeeded run the one that serves this model kind",
    response_model=ModelInfo,
    dependencies=[ApiKey],
    responses={
        401: {"description": "API key missing or wrong"},
        404: {"description": "no such model kind or run"},
        409: {"description": "the run has not succeeded"},
        422: {"description": "the run is of the other model kind"},
    },
)
def promote_run(model: str, body: PromoteRequest, session: SessionDep) -> ModelInfo:
    if model not in MODELS:
        raise HTTPException(404, f"no model kind {model[:40]!r}; choose one of {', '.join(MODELS)}")
    run = find_run(session, body.run_id)
    if run.model != model:
        raise HTTPException(
            422, f"run {run.id} is a {run.model} run; promote it under /models/{run.model}/promote"
        )
    if run.status != "succeeded":
        raise HTTPException(409, f"run {run.id} is {run.status}; only a succeeded run can be promoted")
    try:
        promote(session, model, run.id)
    except ValueError as exc:  # changed under us since the checks above
        raise HTTPException(409, str(exc)) from exc
    return model_info(session, model)
