"""Runs: list, read, cancel, per-epoch metrics, live events (SSE), plots and the checkpoint download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from api import events
from api.deps import RunDep, SessionDep
from api.inference_schemas import Checkpoint
from api.presenters import PNG_RESPONSE, history, metric_name, metrics_out, png, run_out, run_outs
from api.schemas import ArtifactList, ArtifactOut, ModelName, RunList, RunMetrics, RunOut, RunStatus
from core.results import artifacts, checkpoint_key_of, epochs
from core.runs import list_runs, request_cancel
from core.storage import ArtifactStore
from ml import plots

router = APIRouter(tags=["runs"])

PLOTS = ("loss", "validation")
NOT_FOUND = {404: {"description": "no such run"}}
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
def run(found: RunDep, session: SessionDep) -> RunOut:
    return run_out(session, found)


@router.post(
    "/runs/{run_id}/cancel",
    summary="Cancel a run (queued: at once; running: the worker stops after the current batch)",
    response_model=RunOut,
    responses={
        200: {"description": "cancelled (or already cancelled)"},
        202: {"description": "cancel requested; the worker will stop the running training"},
        404: {"description": "no such run"},
        409: {"description": "the run already finished"},
    },
)
def cancel(found: RunDep, session: SessionDep, response: Response) -> RunOut:
    if found.status in ("succeeded", "failed"):
        raise HTTPException(409, f"run {found.id} already {found.status}; there is nothing to cancel")
    updated = request_cancel(session, found.id)
    if updated is None:  # deleted meanwhile
        raise HTTPException(404, f"no run {found.id!r}")
    if updated.status == "running":
        response.status_code = 202
    return run_out(session, updated)


@router.get(
    "/runs/{run_id}/metrics",
    summary="Per-epoch training loss and validation metric, and the test metric once known",
    response_model=RunMetrics,
    responses=NOT_FOUND,
)
def run_metrics(found: RunDep, session: SessionDep) -> RunMetrics:
    return metrics_out(session, found)


@router.get(
    "/runs/{run_id}/plots/{name}.png",
    summary="Training-loss or validation-metric curve (PNG), current while the run trains",
    response_class=Response,
    responses={**PNG_RESPONSE, 404: {"description": "no such run or plot (plots: loss, validation)"}},
)
def run_plot(
    found: RunDep, name: Annotated[str, Path(json_schema_extra={"enum": list(PLOTS)})], session: SessionDep
) -> Response:
    if name not in PLOTS:
        raise HTTPException(404, f"no plot {name[:40]!r}; choose one of {', '.join(PLOTS)}")
    hist = history(found.model, epochs(session, found.id))
    where = f"({found.model}, run {found.id[:8]})"
    if name == "loss":
        return png(plots.loss_curve_png(hist, title=f"training loss {where}"))
    metric = metric_name(found.model)
    return png(plots.validation_curve_png(hist, metric, title=f"validation {metric.replace('_', ' ')} {where}"))


CHECKPOINT_RESPONSES = {
    200: {"content": {"application/octet-stream": {}}, "description": "the checkpoint file, streamed from the store"},
    404: {"description": "no such run, or the run left no checkpoint of that kind (which=best: runs trained "
                         "before best.pt was kept have none)"},
    409: {"description": "the run has not finished"},
    503: {"description": "the artifact store is unreachable"},
}


def _stream(store: ArtifactStore, key: str, media_type: str, filename: str, size: int | None = None,
            ) -> StreamingResponse:
    """The object under `key`, streamed from the artifact store (opened first: a missing object is a 404)."""
    pieces = store.open_stream(key)
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if size is not None:
        headers["Content-Length"] = str(size)
    return StreamingResponse(pieces, media_type=media_type, headers=headers)


WHICH_DESCRIPTION = "best: the weights of the best validation epoch; last: the final epoch's (default)"


@router.get("/runs/{run_id}/checkpoint",
            summary="Download a checkpoint of a finished run (which=best: the weights of the best validation "
                    "epoch; which=last, the default: the final epoch's)",
            response_class=StreamingResponse, responses=CHECKPOINT_RESPONSES)
def checkpoint(found: RunDep, session: SessionDep, request: Request,
               which: Annotated[Checkpoint, Query(description=WHICH_DESCRIPTION)] = "last") -> StreamingResponse:
    """Streamed through the API from the artifact store (no presigned redirect: clients need no access to
    the store, and the API's keys and scopes apply to the download).

    `which=best`: the weights of the best validation epoch (best.pt); `which=last` (the default): the final
    epoch's (checkpoint.pt). The file is named `inkwell-<model>-<run id>-<which>.pt`."""
    if not found.finished:
        raise HTTPException(
            409, f"run {found.id} is {found.status}; its checkpoint is ready once it has finished"
        )
    store: ArtifactStore = request.app.state.store
    key = checkpoint_key_of(session, store, found.id, which)
    if key is None and which == "best":
        raise HTTPException(404, f"run {found.id} has no best checkpoint (no best.pt, e.g. trained before "
                                 "best checkpoints were kept); ask for which=last")
    if key is None:
        raise HTTPException(404, f"run {found.id} ({found.status}) left no checkpoint")
    session.close()  # hold no pooled connection while the file streams
    return _stream(store, key, "application/octet-stream", f"inkwell-{found.model}-{found.id}-{which}.pt")


@router.get("/runs/{run_id}/artifacts", summary="The files a run stored (checkpoint, plots), with their sizes",
            response_model=ArtifactList, responses=NOT_FOUND)
def run_artifacts(found: RunDep, session: SessionDep) -> ArtifactList:
    return ArtifactList(artifacts=[
        ArtifactOut(name=a.name, kind=a.kind, size_bytes=a.size_bytes, created_at=a.created_at,
                    url=f"/runs/{found.id}/artifacts/{a.name}")
        for a in artifacts(session, found.id)
    ])


@router.get(
    "/runs/{run_id}/artifacts/{name}",
    summary="Download one of a run's stored files, streamed from the artifact store",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}, "image/png": {}}, "description": "the file"},
        404: {"description": "no such run or artifact"},
        503: {"description": "the artifact store is unreachable"},
    },
)
def run_artifact(found: RunDep, name: Annotated[str, Path(max_length=128)], session: SessionDep,
                 request: Request) -> StreamingResponse:
    match = next((a for a in artifacts(session, found.id) if a.name == name), None)
    if match is None:
        raise HTTPException(404, f"run {found.id} has no artifact {name[:40]!r}; GET /runs/{found.id}/artifacts")
    session.close()
    media = "image/png" if name.endswith(".png") else "application/octet-stream"
    return _stream(request.app.state.store, match.path, media, name)


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
def run_events(
    found: RunDep,
    session: SessionDep,
    request: Request,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> Response:
    session.close()  # the stream reads with sessions of its own: hold no pooled connection while it runs
    after_epoch = events.resume_point(last_event_id, found)
    if after_epoch is None:
        return Response(status_code=204)  # tells EventSource to stop reconnecting
    return StreamingResponse(
        events.run_events(request, request.app.state.sessionmaker, found.id, after_epoch),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
