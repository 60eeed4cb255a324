"""Which trained run answers a request: the one asked for, else the promoted one, else the best one.

An endpoint is answered by the kinds declared to serve it (ml.kinds: `serves`); the first of them is the
default when a request names neither a run nor a kind.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException
from sqlalchemy.orm import Session

from core.models import Run
from core.results import best_run, promoted_run
from core.runs import get_run
from core.storage import ArtifactStore
from ml.kinds import ModelKind, find_kind, get_kind, kinds_serving


def _wrong_kind(run: Run, endpoint: str) -> HTTPException:
    names = " or ".join(k.name for k in kinds_serving(endpoint))
    return HTTPException(422, detail=f"run {run.id} is a {run.model} run; this endpoint needs a {names} run")


def select_run(session: Session, endpoint: str, run_id: str | None = None, model: str | None = None,
               ) -> tuple[Run, ModelKind]:
    """(run, its kind) that answers `endpoint`; HTTPException 404 / 422 / 409 when there is none to use.

    An explicit `run_id` must be a succeeded run of a kind serving `endpoint` (and of `model`, when given).
    Without one: the promoted run of `model` (default: the endpoint's first kind) when it is still
    succeeded, else its succeeded run with the best validation metric.
    """
    if model is not None and get_kind(model).serves != endpoint:
        names = ", ".join(k.name for k in kinds_serving(endpoint))
        raise HTTPException(422, detail=f"model {model!r} does not answer this endpoint; use one of {names}")
    if run_id is not None:
        run = get_run(session, run_id)
        if run is None:
            raise HTTPException(404, detail=f"no run {run_id[:64]!r}")
        kind = find_kind(run.model)
        if kind is None or kind.serves != endpoint or (model is not None and run.model != model):
            raise _wrong_kind(run, endpoint)
        if run.status != "succeeded":
            raise HTTPException(409, detail=f"run {run_id} is {run.status}; it has no final model yet")
        return run, kind
    kind = get_kind(model) if model is not None else kinds_serving(endpoint)[0]
    run = promoted_run(session, kind.name)
    if run is None or run.status != "succeeded":
        run = best_run(session, kind.name)
    if run is None:
        raise HTTPException(
            409,
            detail=f'no trained {kind.name} model yet: POST /train with {{"model": "{kind.name}", ...}} '
            "and wait for it to succeed",
        )
    return run, kind


def checkpoint_for(store: ArtifactStore, run: Run, which: str = "last") -> tuple[Path, str]:
    """(the run's current `which` checkpoint as a local file, the checkpoint it is: "best" or "last"), fetched
    from the store into the cache once per version.

    "best" falls back to "last" for a run that has no best.pt (trained before training kept one); the second
    value says which answered. HTTPException 409 when the store has no checkpoint of the run;
    StoreUnavailable (503) when the store cannot be reached.
    """
    if which == "best":
        path = store.cached_checkpoint(run.id, "best")
        if path is not None:
            return path, "best"
    path = store.cached_checkpoint(run.id, "last")
    if path is None:
        raise HTTPException(
            409,
            detail=f"run {run.id} succeeded but its checkpoint is missing from the artifact store; "
            "train it again or pick another run",
        )
    return path, "last"
