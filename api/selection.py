"""Which trained run answers a request: the one asked for, else the promoted one, else the best one."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException
from sqlalchemy.orm import Session

from core import runs
from core.models import Run
from core.storage import ArtifactStore


def select_run(session: Session, model: str, run_id: str | None = None) -> Run:
    """The run that serves `model`; HTTPException 404 / 422 / 409 when there is none to use.

    An explicit `run_id` must be a succeeded run of `model`. Without one: the promoted run of
    `model` when it is still succeeded, else the succeeded run with the best validation metric.
    """
    if run_id is not None:
        run = runs.get_run(session, run_id)
        if run is None:
            raise HTTPException(404, detail=f"no run {run_id[:64]!r}")
        if run.model != model:
            raise HTTPException(
                422, detail=f"run {run_id} is a {run.model} run; this endpoint needs a {model} run"
            )
        if run.status != "succeeded":
            raise HTTPException(409, detail=f"run {run_id} is {run.status}; it has no final model yet")
        return run
    run = runs.promoted_run(session, model)
    if run is None or run.status != "succeeded":
        run = runs.best_run(session, model)
    if run is None:
        raise HTTPException(
            409,
            detail=f'no trained {model} model yet: POST /train with {{"model": "{model}", ...}} '
            "and wait for it to succeed",
        )
    return run


def checkpoint_for(store: ArtifactStore, run: Run) -> Path:
    """The run's checkpoint file; HTTPException 409 when it is not on disk."""
    path = store.checkpoint_path(run.id)
    if not path.is_file():
        raise HTTPException(
            409,
            detail=f"run {run.id} succeeded but its checkpoint file is missing from the artifacts folder; "
            "train it again or pick another run",
        )
    return path
