"""Model kinds: what each registered kind is, which run serves it (promoted, else best), and promoting a run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request

from api.deps import SessionDep, find_run
from api.presenters import model_info
from api.schemas import ModelInfo, ModelList, PromoteRequest, kinds_enum
from core.results import promote
from ml.kinds import all_kinds, find_kind

router = APIRouter(tags=["models"])


@router.get("/models", summary="Per model kind: what it is, the promoted run and the run that serves by default",
            response_model=ModelList)
def models(session: SessionDep) -> ModelList:
    return ModelList(models=[model_info(session, kind) for kind in all_kinds()])


@router.post(
    "/models/{model}/promote",
    summary="Make a succeeded run the one that serves this model kind",
    response_model=ModelInfo,
    responses={
        404: {"description": "no such model kind or run"},
        409: {"description": "the run has not succeeded"},
        422: {"description": "the run is of another model kind"},
    },
)
def promote_run(
    model: Annotated[str, Path(json_schema_extra=kinds_enum)], body: PromoteRequest, session: SessionDep,
    request: Request,
) -> ModelInfo:
    kind = find_kind(model)
    if kind is None:
        names = ", ".join(k.name for k in all_kinds())
        raise HTTPException(404, f"no model kind {model[:40]!r}; choose one of {names}")
    run = find_run(session, body.run_id)
    if run.model != kind.name:
        raise HTTPException(
            422, f"run {run.id} is a {run.model} run; promote it under /models/{run.model}/promote"
        )
    if run.status != "succeeded":
        raise HTTPException(409, f"run {run.id} is {run.status}; only a succeeded run can be promoted")
    try:
        promote(session, kind.name, run.id)
    except ValueError as exc:  # changed under us since the checks above
        raise HTTPException(409, str(exc)) from exc
    request.app.state.serving.invalidate()  # this process serves the promoted run from its next request
    return model_info(session, kind)
