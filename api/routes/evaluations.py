"""Evaluations: score a run's checkpoint on a split (a worker job), list them, follow one, cancel it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CeleryDep, IdPath, RunDep, SessionDep, SettingsDep, is_id
from api.evaluation_schemas import (
    EvaluationCreated,
    EvaluationList,
    EvaluationOut,
    EvaluationRequest,
    evaluation_out,
)
from api.events import KEEPALIVE_SECONDS, POLL_SECONDS, RETRY_MS
from core.evaluations import (
    EvaluationRejected,
    RunNotEvaluable,
    get_evaluation,
    list_evaluations,
    request_cancel,
    submit_evaluation,
)
from core.models import Evaluation

router = APIRouter(tags=["evaluations"])


def find_evaluation(evaluation_id: IdPath, session: SessionDep) -> Evaluation:
    found = get_evaluation(session, evaluation_id) if is_id(evaluation_id) else None
    if found is None:
        raise HTTPException(404, f"no evaluation {evaluation_id[:64]!r}")
    return found


EvaluationDep = Annotated[Evaluation, Depends(find_evaluation)]


@router.post(
    "/runs/{run_id}/evaluations",
    status_code=202,
    summary="Score a run's checkpoint on a split (a worker job); an identical earlier request answers from SQL",
    response_model=EvaluationCreated,
    responses={
        200: {"model": EvaluationCreated, "description": "an identical request's evaluation (`cached`: true)"},
        404: {"description": "no such run"},
        409: {"description": "the run failed or was cancelled: there is no model to evaluate"},
        422: {"description": "invalid field, unknown dataset, a dataset of another kind, or decoding options "
                             "for an image model"},
    },
)
def create_evaluation(found: RunDep, body: EvaluationRequest, session: SessionDep, settings: SettingsDep,
                      celery: CeleryDep) -> Response:
    try:
        row, what = submit_evaluation(session, celery, settings, found, split=body.split, checkpoint=body.checkpoint,
                                      dataset=body.dataset, decoding=body.decoding, beam_size=body.beam_size,
                                      length_penalty=body.length_penalty, limit=body.limit)
    except RunNotEvaluable as exc:
        raise HTTPException(409, str(exc)) from None
    except EvaluationRejected as exc:
        raise HTTPException(422, str(exc)) from None
    cached = what == "found"
    out = EvaluationCreated(evaluation_id=row.id, **evaluation_out(row, cached=cached).model_dump())
    return JSONResponse(out.model_dump(mode="json"), status_code=200 if cached else 202,
                        headers={"Location": f"/evaluations/{row.id}"})


@router.get("/runs/{run_id}/evaluations", summary="A run's evaluations, newest first", response_model=EvaluationList,
            responses={404: {"description": "no such run"}})
def run_evaluations(found: RunDep, session: SessionDep,
                    details: Annotated[bool, Query(description="include each one's examples")] = False,
                    ) -> EvaluationList:
    return EvaluationList(evaluations=[evaluation_out(e, details=details)
                                       for e in list_evaluations(session, found.id)])


@router.get("/evaluations/{evaluation_id}", summary="One evaluation: status, progress, result and examples",
            response_model=EvaluationOut, responses={404: {"description": "no such evaluation"}})
def evaluation(found: EvaluationDep) -> EvaluationOut:
    return evaluation_out(found)


@router.post(
    "/evaluations/{evaluation_id}/cancel",
    summary="Cancel an evaluation (queued: at once; running: the worker stops at its next batch)",
    response_model=EvaluationOut,
    responses={202: {"description": "cancel requested"}, 404: {"description": "no such evaluation"},
               409: {"description": "it already finished"}},
)
def cancel_evaluation(found: EvaluationDep, session: SessionDep, response: Response) -> EvaluationOut:
    if found.status in ("succeeded", "failed"):
        raise HTTPException(409, f"evaluation {found.id} already {found.status}; there is nothing to cancel")
    updated = request_cancel(session, found.id)
    if updated is None:
        raise HTTPException(404, f"no evaluation {found.id!r}")
    if updated.status == "running":
        response.status_code = 202
    return evaluation_out(updated)


def _snapshot(factory: sessionmaker[Session], evaluation_id: str) -> Evaluation | None:
    with factory() as session:
        return get_evaluation(session, evaluation_id)


async def _events(request: Request, factory: sessionmaker[Session], evaluation_id: str) -> AsyncIterator[str]:
    """`progress` while examples are scored, `status` per status change (the last one with the result)."""
    yield f"retry: {RETRY_MS}\n\n"
    last: tuple = ()
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        found = await run_in_threadpool(_snapshot, factory, evaluation_id)
        if found is None:
            return
        now = (found.status, found.done, found.total)
        if now != last:
            event = "status" if not last or found.status != last[0] else "progress"
            data = evaluation_out(found, details=False).model_dump(mode="json")
            yield f"id: {found.done}-{found.status}\nevent: {event}\ndata: {json.dumps(data)}\n\n"
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if found.finished:
            return
        await asyncio.sleep(POLL_SECONDS)


@router.get(
    "/evaluations/{evaluation_id}/events",
    summary="Server-sent events: `progress` as examples are scored, `status` per change, until it finishes",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"},
               404: {"description": "no such evaluation"}},
)
def evaluation_events(found: EvaluationDep, session: SessionDep, request: Request) -> StreamingResponse:
    session.close()
    return StreamingResponse(_events(request, request.app.state.sessionmaker, found.id),
                             media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
