"""Runs side by side, read from SQL: configs and their differences, metrics, curves and evaluations, and the
per-epoch export (JSON and CSV) of any set of runs."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.compare_schemas import (
    BestEpoch,
    ComparedRun,
    Comparison,
    CurvePoint,
    ExportEpoch,
    ExportRun,
    MetricsExport,
)
from api.evaluation_schemas import evaluation_out
from api.presenters import metric_name
from core.db import FRESH
from core.evaluations import list_evaluations
from core.models import EpochMetric, FinalMetric, Run
from core.results import higher_is_better
from ml.kinds import find_kind

MISSING = object()  # a config key a run does not have


def runs_in_order(session: Session, ids: list[str]) -> list[Run]:
    """The runs named, in that order; 404 naming the first unknown id."""
    found = {r.id: r for r in session.scalars(select(Run).where(Run.id.in_(ids)), execution_options=FRESH)}
    for run_id in ids:
        if run_id not in found:
            raise HTTPException(404, f"no run {run_id!r}")
    return [found[i] for i in ids]


def epochs_by_run(session: Session, ids: list[str]) -> dict[str, list[EpochMetric]]:
    rows = session.scalars(select(EpochMetric).where(EpochMetric.run_id.in_(ids))
                           .order_by(EpochMetric.run_id, EpochMetric.epoch), execution_options=FRESH)
    grouped: dict[str, list[EpochMetric]] = defaultdict(list)
    for row in rows:
        grouped[row.run_id].append(row)
    return grouped


def finals_by_run(session: Session, ids: list[str]) -> dict[str, dict[str, float | None]]:
    grouped: dict[str, dict[str, float | None]] = defaultdict(dict)
    rows = session.execute(select(FinalMetric.run_id, FinalMetric.name, FinalMetric.value)
                           .where(FinalMetric.run_id.in_(ids)).order_by(FinalMetric.name))
    for run_id, name, value in rows:
        grouped[run_id][name] = value
    return grouped


def best_epoch(model: str, rows: list[EpochMetric]) -> BestEpoch | None:
    """The epoch with the best validation metric (the earliest on a tie); None when no epoch has one."""
    scored = [r for r in rows if r.val_metric is not None]
    if not scored:
        return None
    sign = 1.0 if higher_is_better(model) else -1.0
    best = max(scored, key=lambda r: (sign * r.val_metric, -r.epoch))
    return BestEpoch(epoch=best.epoch, value=best.val_metric)


def config_differences(configs: list[dict[str, Any]]) -> list[str]:
    """The keys (sorted) whose values are not the same in every config (a key some lack counts)."""
    keys = sorted({k for c in configs for k in c})
    return [k for k in keys if len({repr(c.get(k, MISSING)) for c in configs}) > 1]


def compare(session: Session, ids: list[str]) -> Comparison:
    runs = runs_in_order(session, ids)
    curves, finals = epochs_by_run(session, ids), finals_by_run(session, ids)
    evaluations = defaultdict(list)
    for row in list_evaluations(session, run_ids=ids, limit=100 * len(ids)):
        evaluations[row.run_id].append(evaluation_out(row, details=False))
    out = []
    for run in runs:
        metric = metric_name(run.model)
        final = finals.get(run.id, {})
        out.append(ComparedRun(
            id=run.id, model=run.model, dataset=run.dataset, status=run.status, config=run.config, metric=metric,
            final_metrics=final, best=best_epoch(run.model, curves.get(run.id, [])),
            test_metric_name=f"test_{metric}", test_metric=final.get(f"test_{metric}"),
            evaluations=evaluations.get(run.id, []),
            curves=[CurvePoint(epoch=e.epoch, train_loss=e.train_loss, val_metric=e.val_metric)
                    for e in curves.get(run.id, [])],
        ))
    return Comparison(differences=config_differences([r.config for r in runs]), runs=out)


def _rate(config: dict[str, Any]) -> float | None:
    value = config.get("learning_rate")
    return float(value) if isinstance(value, int | float) else None


def _attention(run: Run) -> bool | None:
    kind = find_kind(run.model)
    return bool(run.config.get("attention", False)) if kind is not None and kind.data_kind == "pairs" else None


def export(session: Session, ids: list[str]) -> MetricsExport:
    runs = runs_in_order(session, ids)
    curves, finals = epochs_by_run(session, ids), finals_by_run(session, ids)
    return MetricsExport(runs=[
        ExportRun(
            run_id=run.id, model=run.model, dataset=run.dataset, status=run.status,
            learning_rate=_rate(run.config),
            attention=_attention(run),
            val_metric_name=f"val_{metric_name(run.model)}",
            epochs=[ExportEpoch(epoch=e.epoch, train_loss=e.train_loss, val_metric=e.val_metric)
                    for e in curves.get(run.id, [])],
            final=finals.get(run.id, {}),
        )
        for run in runs
    ])


CSV_COLUMNS = ("run_id", "model", "dataset", "learning_rate", "attention", "epoch", "train_loss",
               "val_metric_name", "val_metric")


def export_csv(data: MetricsExport) -> str:
    """One row per epoch; each run's final metrics as columns after the per-epoch ones (repeated on its rows)."""
    final_names = sorted({name for run in data.runs for name in run.final})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *final_names])
    for run in data.runs:
        finals = ["" if run.final.get(n) is None else repr(run.final[n]) for n in final_names]
        for e in run.epochs:
            writer.writerow([
                run.run_id, run.model, run.dataset, "" if run.learning_rate is None else repr(run.learning_rate),
                "" if run.attention is None else str(run.attention).lower(), e.epoch,
                "" if e.train_loss is None else repr(e.train_loss), run.val_metric_name,
                "" if e.val_metric is None else repr(e.val_metric), *finals,
            ])
    return buffer.getvalue()
