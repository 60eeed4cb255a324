"""Learning-rate sweeps: the comparison table and the overlaid curves."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy.orm import Session

from api.deps import IdPath, SessionDep, is_id
from api.presenters import PNG_RESPONSE, history, metric_name, png, sweep_out
from api.schemas import SweepOut
from core.models import Run
from core.results import epochs
from core.runs import list_runs
from ml import plots

router = APIRouter(tags=["sweeps"])
MAX_SWEEP_RUNS = 1000
NOT_FOUND = {404: {"description": "no such sweep"}}


def sweep_runs(session: Session, sweep_id: str) -> list[Run]:
    """The sweep's runs in the order they were requested; 404 when there are none."""
    found = list_runs(session, sweep_id=sweep_id, limit=MAX_SWEEP_RUNS) if is_id(sweep_id) else []
    if not found:
        raise HTTPException(404, f"no sweep {sweep_id[:64]!r}")
    return list(reversed(found))  # list_runs gives newest first


def _labels(runs: list[Run]) -> list[str]:
    """`lr=…` per run, made unique when a sweep repeats a learning rate."""
    labels: list[str] = []
    for run in runs:
        label = f"lr={float(run.config.get('learning_rate', 0)):g}"
        labels.append(label if label not in labels else f"{label} ({run.id[:6]})")
    return labels


@router.get(
    "/sweeps/{sweep_id}",
    summary="Learning-rate sweep: per run rate, status, final losses and metrics; best marked",
    response_model=SweepOut,
    responses=NOT_FOUND,
)
def sweep(sweep_id: IdPath, session: SessionDep) -> SweepOut:
    return sweep_out(session, sweep_id, sweep_runs(session, sweep_id))


@router.get(
    "/sweeps/{sweep_id}/plot.png",
    summary="The sweep's training-loss and validation curves overlaid, one colour per learning rate (PNG)",
    response_class=Response,
    responses={**PNG_RESPONSE, **NOT_FOUND},
)
def sweep_plot(sweep_id: IdPath, session: SessionDep) -> Response:
    members = sweep_runs(session, sweep_id)
    model = members[0].model
    labels = _labels(members)
    curves = {label: history(model, epochs(session, r.id)) for label, r in zip(labels, members, strict=True)}
    title = f"learning-rate sweep {sweep_id[:8]} ({model})"
    return png(plots.sweep_png(curves, metric_name(model), title=title))
