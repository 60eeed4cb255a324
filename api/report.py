"""The assignment's report, rebuilt from the runs and evaluations in SQL, one section at a time.

Sections: the CNN learning-rate sweep, the best rate's curves, its conv1 activation maps, seq2seq without vs
with attention, greedy vs beam decoding (api/report_decoding.py) and the theory answers (ml/theory.py).
A section that cannot be built yet says which request produces it. With a `limit`, only runs trained with
that limit (config["limit"]) and evaluations made with it are read; without one, any.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.comparison import best_epoch, epochs_by_run, finals_by_run
from api.report_decoding import decoding_section
from api.report_schemas import (
    ActivationsSection,
    AttentionRun,
    AttentionSection,
    CurveEpoch,
    CurvesSection,
    ErrorEpoch,
    Report,
    SweepRow,
    SweepSection,
)
from api.report_theory import theory_section
from core.db import FRESH
from core.models import Run
from ml.kinds.cnn import CNN_KIND
from ml.kinds.seq2seq import SEQ2SEQ_KIND

CNN, SEQ2SEQ = CNN_KIND.name, SEQ2SEQ_KIND.name  # the assignment's two models: the report is about them
SWEEP_RATES = (0.01, 0.0005, 0.00001)
SCAN = 2000  # newest runs of a kind looked at when choosing


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.10f}".rstrip("0").rstrip(".") if v != 0 and abs(v) < 1e-4 else repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return json.dumps(v)


def body_text(body: dict[str, Any]) -> str:
    """A JSON body as a person would type it (0.00001, not 1e-05)."""
    return "{" + ", ".join(f'"{k}": {_value(v)}' for k, v in body.items()) + "}"


def train_request(model: str, limit: int | None, **fields: Any) -> str:
    body = {"model": model, **fields, **({"limit": limit} if limit is not None else {})}
    return f"POST /train {body_text(body)}"


def with_limit(url: str, limit: int | None) -> str:
    return url if limit is None else f"{url}?limit={limit}"


def _matches(run: Run, limit: int | None) -> bool:
    return limit is None or (run.config or {}).get("limit") == limit


def _newest(session: Session, model: str, limit: int | None, **where: Any) -> list[Run]:
    stmt = select(Run).where(Run.model == model).order_by(Run.created_at.desc(), Run.id).limit(SCAN)
    for name, value in where.items():
        stmt = stmt.where(getattr(Run, name) == value) if value is not None else stmt
    return [r for r in session.scalars(stmt, execution_options=FRESH) if _matches(r, limit)]


def _rate(run: Run) -> float | None:
    rate = (run.config or {}).get("learning_rate")
    return float(rate) if isinstance(rate, int | float) else None


# ---------------------------------------------------------------- the CNN sweep and what follows from it
def sweep_section(session: Session, limit: int | None) -> SweepSection:
    """The newest CNN sweep (runs sharing a sweep_id): per rate its losses and accuracies; the best rate."""
    request = train_request(CNN, limit, learning_rates=list(SWEEP_RATES))
    newest = next((r for r in _newest(session, CNN, limit) if r.sweep_id is not None), None)
    if newest is None:
        return SweepSection(ready=False, missing=request)
    members = sorted((r for r in _newest(session, CNN, None, sweep_id=newest.sweep_id)),
                     key=lambda r: (r.created_at, r.id))
    ids = [r.id for r in members]
    curves, finals = epochs_by_run(session, ids), finals_by_run(session, ids)
    rows = []
    for run in members:
        history = curves.get(run.id, [])
        best = best_epoch(run.model, history)
        rows.append(SweepRow(
            learning_rate=_rate(run), run_id=run.id, status=run.status, epochs_done=len(history),
            epochs_total=run.epochs_total, final_train_loss=history[-1].train_loss if history else None,
            best_val_accuracy=best.value if best else None, best_epoch=best.epoch if best else None,
            test_accuracy=finals.get(run.id, {}).get("test_accuracy"),
        ))
    scored = [row for row in rows if row.best_val_accuracy is not None]
    top = max(scored, key=lambda row: row.best_val_accuracy, default=None)
    unfinished = [row.run_id for row in rows if row.status in ("queued", "running")]
    broken = [row.run_id for row in rows if row.status in ("failed", "cancelled")]
    missing = None
    if unfinished:
        missing = f"sweep {newest.sweep_id} is still training: run(s) {', '.join(unfinished)} queued or running"
    elif broken:
        missing = f"sweep {newest.sweep_id}: run(s) {', '.join(broken)} failed or were cancelled; {request} again"
    return SweepSection(ready=missing is None, missing=missing, sweep_id=newest.sweep_id, dataset=newest.dataset,
                        rows=rows, best_rate=top.learning_rate if top else None,
                        best_run_id=top.run_id if top else None)


def _waiting(sweep: SweepSection) -> str | None:
    return None if sweep.ready else f"needs the CNN sweep: {sweep.missing}"


def curves_section(session: Session, sweep: SweepSection) -> CurvesSection:
    """The best rate's run: per-epoch training loss and validation accuracy, and its plots."""
    if sweep.best_run_id is None:
        return CurvesSection(ready=False, missing=_waiting(sweep))
    run_id = sweep.best_run_id
    rows = epochs_by_run(session, [run_id]).get(run_id, [])
    return CurvesSection(
        ready=sweep.ready, missing=_waiting(sweep), run_id=run_id, learning_rate=sweep.best_rate,
        epochs=[CurveEpoch(epoch=r.epoch, train_loss=r.train_loss, val_accuracy=r.val_metric) for r in rows],
        loss_plot_url=f"/runs/{run_id}/plots/loss.png", validation_plot_url=f"/runs/{run_id}/plots/validation.png",
    )


def activations_section(sweep: SweepSection, limit: int | None) -> ActivationsSection:
    """conv1 activation maps of the first test image, by the best rate's run (drawn by api/report_images)."""
    url = with_limit("/report/activations.png", limit)
    if sweep.best_run_id is None:
        return ActivationsSection(ready=False, missing=_waiting(sweep), image_url=url)
    return ActivationsSection(ready=sweep.ready, missing=_waiting(sweep), run_id=sweep.best_run_id,
                              dataset=sweep.dataset, image_url=url)


# ---------------------------------------------------------------- seq2seq without and with attention
def _attention_of(run: Run) -> bool:
    return bool((run.config or {}).get("attention", False))


def _pick_pair(done: list[Run]) -> tuple[Run | None, Run | None]:
    """(newest without attention, newest with), both on one dataset when some dataset has both."""
    both = {r.dataset for r in done if not _attention_of(r)} & {r.dataset for r in done if _attention_of(r)}
    if both:
        dataset = next(r.dataset for r in done if r.dataset in both)  # that of the newest such run
        done = [r for r in done if r.dataset == dataset]
    plain = next((r for r in done if not _attention_of(r)), None)
    attending = next((r for r in done if _attention_of(r)), None)
    return plain, attending


def _attention_run(run: Run, curves: dict[str, list], finals: dict[str, dict]) -> AttentionRun:
    history = curves.get(run.id, [])
    best = best_epoch(run.model, history)
    return AttentionRun(
        run_id=run.id, dataset=run.dataset, attention=_attention_of(run), epochs_done=len(history),
        epochs_total=run.epochs_total,
        curve=[ErrorEpoch(epoch=r.epoch, train_loss=r.train_loss, val_error_rate=r.val_metric) for r in history],
        best_val_error_rate=best.value if best else None, best_epoch=best.epoch if best else None,
        test_error_rate=finals.get(run.id, {}).get("test_error_rate"),
    )


def attention_section(session: Session, limit: int | None) -> AttentionSection:
    """The newest succeeded seq2seq run without attention and the newest with it (same dataset if possible)."""
    runs = _newest(session, SEQ2SEQ, limit)
    plain, attending = _pick_pair([r for r in runs if r.status == "succeeded"])
    missing = []
    for flag, found in ((False, plain), (True, attending)):
        if found is None:
            training = next((r for r in runs if _attention_of(r) == flag and r.status in ("queued", "running")), None)
            missing.append(f"run {training.id} (attention {str(flag).lower()}) is still {training.status}"
                           if training else train_request(SEQ2SEQ, limit, attention=flag))
    chosen = [r for r in (plain, attending) if r is not None]
    ids = [r.id for r in chosen]
    curves, finals = epochs_by_run(session, ids), finals_by_run(session, ids)
    return AttentionSection(
        ready=not missing, missing="; ".join(missing) or None,
        without_attention=_attention_run(plain, curves, finals) if plain else None,
        with_attention=_attention_run(attending, curves, finals) if attending else None,
        same_dataset=plain is not None and attending is not None and plain.dataset == attending.dataset,
    )


def build_report(session: Session, limit: int | None) -> Report:
    sweep = sweep_section(session, limit)
    attention = attention_section(session, limit)
    sections = {
        "sweep": sweep, "curves": curves_section(session, sweep), "activations": activations_section(sweep, limit),
        "attention": attention, "decoding": decoding_section(session, attention, limit),
        "theory": theory_section(),
    }
    return Report(generated_at=datetime.now(UTC), limit=limit, ready=all(s.ready for s in sections.values()),
                  reproduce="POST /report/reproduce" + (f' {{"limit": {limit}}}' if limit is not None else ""),
                  **sections)
