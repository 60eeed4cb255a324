"""Runs: list, read, cancel, per-epoch metrics, live events (SSE), plots and the checkpoint download.

Also the helpers the sweep and model routes share: run lookup (404 for unknown or malformed ids)
and turning database rows into response bodies.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from api.deps import ApiKey, SessionDep
from api.schemas import (
    CnnEpoch,
    CnnMetrics,
    Epoch,
    ModelName,
    RunList,
    RunMetrics,
    RunOut,
    RunStatus,
    Seq2SeqEpoch,
    Seq2SeqMetrics,
)
from core.models import Artifact, EpochMetric, FinalMetric, Run
from core.runs import epochs, final_metrics, get_run, list_runs, request_cancel
from core.storage import CHECKPOINT_NAME, RUN_ID, ArtifactStore
from ml import plots

router = APIRouter(tags=["runs"])

POLL_SECONDS = 0.5  # how often the event stream looks at the database
KEEPALIVE_SECONDS = 15.0  # a comment line after this long without events (keeps proxies from closing)
RETRY_MS = 2000  # the reconnection delay suggested to EventSource clients
PLOTS = ("loss", "validation")
NOT_FOUND = {404: {"description": "no such run"}}
_EVENT_ID = re.compile(r"^(\d{1,6})-([a-z]{1,16})$")  # "<last epoch sent>-<last status sent>"


# ---- shared helpers ---------------------------------------------------------------------------


def metric_name(model: str) -> str:
    """The validation/test metric of a model: accuracy (cnn) or error_rate (seq2seq)."""
    return "accuracy" if model == "cnn" else "error_rate"


def test_metric_name(model: str) -> str:
    return f"test_{metric_name(model)}"


def epoch_out(model: str, row: EpochMetric) -> Epoch:
    """One epoch row as `{"epoch", "train_loss", "val_accuracy" | "val_error_rate", "seconds"}`."""
    common = {"epoch": row.epoch, "train_loss": row.train_loss, "seconds": row.seconds}
    if model == "cnn":
        return CnnEpoch(**common, val_accuracy=row.val_metric)
    return Seq2SeqEpoch(**common, val_error_rate=row.val_metric)


def history(model: str, rows: list[EpochMetric]) -> list[dict[str, Any]]:
    """Epoch rows as the per-epoch dicts ml.plots draws."""
    return [epoch_out(model, row).model_dump() for row in rows]


def is_id(value: str) -> bool:
    """Whether `value` has the shape of a run or sweep id (32 lowercase hex characters)."""
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def find_run(session: Session, run_id: str) -> Run:
    """The run, or 404 (also for ids that are not 32 hex characters)."""
    run = get_run(session, run_id) if is_id(run_id) else None
    if run is None:
        raise HTTPException(404, f"no run {run_id[:64]!r}")
    return run


def run_outs(session: Session, runs: list[Run]) -> list[RunOut]:
    """Response bodies for `runs`, with their latest epoch and test metric read in two queries."""
    ids = [r.id for r in runs]
    latest: dict[str, EpochMetric] = {}
    finals: dict[tuple[str, str], float | None] = {}
    if ids:
        last = (
            select(EpochMetric.run_id, func.max(EpochMetric.epoch).label("epoch"))
            .where(EpochMetric.run_id.in_(ids)).group_by(EpochMetric.run_id).subquery()
        )
        stmt = select(EpochMetric).join(
            last, and_(EpochMetric.run_id == last.c.run_id, EpochMetric.epoch == last.c.epoch)
        )
        fresh = {"populate_existing": True}
        latest = {row.run_id: row for row in session.scalars(stmt, execution_options=fresh)}
        rows = session.execute(select(FinalMetric.run_id, FinalMetric.name, FinalMetric.value)
                               .where(FinalMetric.run_id.in_(ids)))
        finals = {(run_id, name): value for run_id, name, value in rows}
    out = []
    for run in runs:
        row = latest.get(run.id)
        out.append(RunOut(
            id=run.id, model=run.model, dataset=run.dataset, config=run.config, status=run.status,
            sweep_id=run.sweep_id, attempt=run.attempt, worker=run.worker, device=run.device,
            cancel_requested=bool(run.cancel_requested), epochs_total=run.epochs_total,
            epochs_done=row.epoch if row is not None else 0,
            latest_epoch=epoch_out(run.model, row) if row is not None else None,
            metric=metric_name(run.model), best_val_metric=run.best_val_metric,
            test_metric_name=test_metric_name(run.model),
            test_metric=finals.get((run.id, test_metric_name(run.model))),
            created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
            heartbeat_at=run.heartbeat_at, error=run.error,
        ))
    return out


def run_out(session: Session, run: Run) -> RunOut:
    return run_outs(session, [run])[0]


def png(data: bytes) -> Response:
    """A PNG that is never cached (plots change while a run trains)."""
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


PNG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "a PNG image"},
}


# ---- routes -----------------------------------------------------------------------------------


@router.get("/runs", summary="List runs, newest first", response_model=RunList)
def runs(
    session: SessionDep,
    status: RunStatus | None = None,
    model: ModelName | None = None,
    sweep_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> RunList:
    found = list_runs(session, status=status, model=model, sweep_id=sweep_id, limit=limit)
    return RunList(runs=run_outs(session, found))


@router.get("/runs/{run_id}", summary="One run", response_model=RunOut, responses=NOT_FOUND)
def run(run_id: str, session: SessionDep) -> RunOut:
    return run_out(session, find_run(session, run_id))


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run (queued: at once; running: the worker stops after the current batch)",
    response_model=RunOut,
    dependencies=[ApiKey],
    responses={
        200: {"description": "cancelled (or already cancelled)"},
        202: {"description": "cancel requested; the worker will stop the running training"},
        401: {"description": "API key missing or wrong"},
        404: {"description": "no such run"},
        409: {"description": "the run already finished"},
    },
)
def cancel(run_id: str, session: SessionDep, response: Response) -> RunOut:
    found = find_run(session, run_id)
    if found.status in ("succeeded", "failed"):
        raise HTTPException(409, f"run {run_id} already {found.status}; there is nothing to cancel")
    updated = request_cancel(session, run_id)
    if updated is None:  # deleted meanwhile
        raise HTTPException(404, f"no run {run_id!r}")
    if updated.status == "running":
        response.status_code = 202
    return run_out(session, updated)


@router.get(
    "/runs/{run_id}/metrics",
    summary="Per-epoch training loss and validation metric, and the test metric once known",
    response_model=RunMetrics,
    responses=NOT_FOUND,
)
def run_metrics(run_id: str, session: SessionDep) -> RunMetrics:
    found = find_run(session, run_id)
    rows = epochs(session, run_id)
    test = final_metrics(session, run_id).get(test_metric_name(found.model))
    common = {"run_id": found.id, "model": found.model, "status": found.status,
              "epochs_total": found.epochs_total}
    if found.model == "cnn":
        return CnnMetrics(**common, epochs=[epoch_out("cnn", r) for r in rows], test_accuracy=test)
    return Seq2SeqMetrics(**common, epochs=[epoch_out("seq2seq", r) for r in rows], test_error_rate=test)


@router.get(
    "/runs/{run_id}/plots/{name}.png",
    summary="Training-loss or validation-metric curve (PNG), current while the run trains",
    response_class=Response,
    responses={**PNG_RESPONSE, 404: {"description": "no such run or plot (plots: loss, validation)"}},
)
def run_plot(run_id: str, name: str, session: SessionDep) -> Response:
    found = find_run(session, run_id)
    if name not in PLOTS:
        raise HTTPException(404, f"no plot {name[:40]!r}; choose one of {', '.join(PLOTS)}")
    hist = history(found.model, epochs(session, run_id))
    if name == "loss":
        return png(plots.loss_curve_png(hist, title=f"training loss ({found.model}, run {run_id[:8]})"))
    metric = metric_name(found.model)
    return png(plots.validation_curve_png(hist, metric, title=f"validation {metric.replace('_', ' ')} "
                                                              f"({found.model}, run {run_id[:8]})"))


def _checkpoint_file(session: Session, store: ArtifactStore, run_id: str) -> Path | None:
    """The run's checkpoint: a registered checkpoint artifact, else the store's usual place."""
    stmt = select(Artifact.path).where(Artifact.run_id == run_id, Artifact.kind == "checkpoint")
    for relative in session.scalars(stmt):
        try:
            path = store.resolve(relative)
        except ValueError:
            continue
        if path.is_file():
            return path
    default = store.root / "runs" / run_id / CHECKPOINT_NAME
    return default if default.is_file() else None


@router.get(
    "/runs/{run_id}/checkpoint",
    summary="Download the checkpoint of a finished run",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint file"},
        404: {"description": "no such run, or the run left no checkpoint"},
        409: {"description": "the run has not finished"},
    },
)
def checkpoint(run_id: str, session: SessionDep, request: Request) -> FileResponse:
    found = find_run(session, run_id)
    if not found.finished:
        raise HTTPException(
            409, f"run {run_id} is {found.status}; its checkpoint is ready once it has finished"
        )
    path = _checkpoint_file(session, request.app.state.store, run_id)
    if path is None:
        raise HTTPException(404, f"run {run_id} ({found.status}) left no checkpoint file")
    name = f"inkwell-{found.model}-{run_id}.pt"
    return FileResponse(path, media_type="application/octet-stream", filename=name)


# ---- server-sent events -----------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any], event_id: str) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _status_event(found: Run, rows: list[EpochMetric], finals: dict[str, float | None], last_epoch: int,
                  ) -> str:
    name = test_metric_name(found.model)
    data = {
        "run_id": found.id, "status": found.status, "attempt": found.attempt, "error": found.error,
        "cancel_requested": bool(found.cancel_requested), "epochs_done": rows[-1].epoch if rows else 0,
        "epochs_total": found.epochs_total, "test_metric_name": name, "test_metric": finals.get(name),
    }
    return _sse("status", data, f"{last_epoch}-{found.status}")


def _snapshot(factory: sessionmaker[Session], run_id: str) -> tuple[Run, list[EpochMetric], dict] | None:
    """The run, then its epochs (in that order: a finished status implies every epoch is already written)."""
    with factory() as session:
        found = get_run(session, run_id)
        if found is None:
            return None
        rows = epochs(session, run_id)
        finals = final_metrics(session, run_id) if found.finished else {}
        return found, rows, finals


async def run_events(
    request: Request, factory: sessionmaker[Session], run_id: str, after_epoch: int = 0,
) -> AsyncIterator[str]:
    """SSE text: `epoch` per new (or rewritten) epoch, `status` per status change; ends when finished."""
    yield f"retry: {RETRY_MS}\n\n"
    sent: dict[int, tuple] = {}
    last_epoch, last_status = after_epoch, ""
    quiet_since = time.monotonic()
    while not await request.is_disconnected():
        snap = await run_in_threadpool(_snapshot, factory, run_id)
        if snap is None:
            return  # the run was deleted
        found, rows, finals = snap
        chunks = []
        if found.status != last_status and not found.finished:  # "running" comes before its epochs
            last_status = found.status
            chunks.append(_status_event(found, rows, finals, last_epoch))
        for row in rows:
            values = (row.train_loss, row.val_metric, row.seconds)
            if row.epoch <= after_epoch or sent.get(row.epoch) == values:
                continue
            sent[row.epoch] = values
            last_epoch = max(last_epoch, row.epoch)
            data = {"run_id": run_id, **epoch_out(found.model, row).model_dump(),
                    "epochs_total": found.epochs_total}
            chunks.append(_sse("epoch", data, f"{last_epoch}-{last_status or 'none'}"))
        if found.status != last_status:  # a finished status comes after the last epoch
            last_status = found.status
            chunks.append(_status_event(found, rows, finals, last_epoch))
        if chunks:
            yield "".join(chunks)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        if found.finished:
            return
        await asyncio.sleep(POLL_SECONDS)


def _load_run(factory: sessionmaker[Session], run_id: str) -> Run:
    with factory() as session:
        return find_run(session, run_id)


@router.get(
    "/runs/{run_id}/events",
    summary="Server-sent events: `epoch` per finished epoch, `status` per status change, until the run ends",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "an event stream"},
        204: {"description": "reconnection after the run's final status was already delivered"},
        404: {"description": "no such run"},
    },
)
async def run_events_route(
    run_id: str,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> Response:
    factory: sessionmaker[Session] = request.app.state.sessionmaker
    found = await run_in_threadpool(_load_run, factory, run_id)
    after_epoch = 0
    match = _EVENT_ID.fullmatch(last_event_id or "")
    if match is not None:
        if found.finished and match[2] == found.status:
            return Response(status_code=204)  # tells EventSource to stop reconnecting
        after_epoch = int(match[1])
    return StreamingResponse(
        run_events(request, factory, run_id, after_epoch),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
