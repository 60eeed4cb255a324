"""POST /report/reproduce: queue, in one request, every run and evaluation the report still needs.

Runs are reused when a matching one is succeeded, queued or running: the CNN sweep (every rate of the
assignment, each with exactly the config POST /train would make now) and the seq2seq runs without and with
attention. Evaluations (greedy and each beam size, on the test split, checkpoint "last") are asked for on the
seq2seq runs at once; core.evaluations finds identical ones, and those of runs still training wait for them.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.report import CNN, SEQ2SEQ, SWEEP_RATES
from api.report_schemas import ReproduceRequest, ReproduceResponse
from core.db import FRESH
from core.evaluations import submit_evaluation
from core.models import Run
from core.settings import Settings
from core.training import plan_configs, submit_training
from ml.kinds import get_kind

USABLE = ("succeeded", "queued", "running")


def _candidates(session: Session, model: str, dataset: str, sha256: str | None, *, sweeps_only: bool = False,
                ) -> list[Run]:
    """Usable runs of `model` on `dataset` (those exact bytes for an upload), newest first."""
    stmt = (select(Run).where(Run.model == model, Run.dataset == dataset, Run.status.in_(USABLE))
            .order_by(Run.created_at.desc(), Run.id))
    if sweeps_only:
        stmt = stmt.where(Run.sweep_id.is_not(None))
    return [r for r in session.scalars(stmt, execution_options=FRESH) if r.dataset_sha256 == sha256]


def _matching_sweep(runs: list[Run], configs: list[dict[str, Any]]) -> list[Run] | None:
    """The members of the newest sweep that holds a run of every config (one per config, in config order)."""
    for sweep_id in dict.fromkeys(r.sweep_id for r in runs):
        members = [r for r in runs if r.sweep_id == sweep_id]
        found = [next((r for r in members if r.config == c), None) for c in configs]
        if all(found):
            return found  # type: ignore[return-value]
    return None


def reproduce(session: Session, celery: Celery, settings: Settings, body: ReproduceRequest) -> ReproduceResponse:
    epochs = {CNN: body.epochs.cnn if body.epochs else get_kind(CNN).defaults["epochs"],
              SEQ2SEQ: body.epochs.seq2seq if body.epochs else get_kind(SEQ2SEQ).defaults["epochs"]}
    common = {"limit": body.limit} if body.limit is not None else {}
    # plan everything first: a dataset that cannot train is refused (TrainingRejected, 422) before any run exists
    sweep_over = {"epochs": epochs[CNN], **common}
    image, sweep_configs, image_sha = plan_configs(CNN, body.image_dataset, sweep_over, list(SWEEP_RATES),
                                                   settings.data_dir, session)
    text_plans = {}
    for attention in (False, True):
        over = {"epochs": epochs[SEQ2SEQ], "attention": attention, **common}
        text_plans[attention] = (over, plan_configs(SEQ2SEQ, body.text_dataset, over, None, settings.data_dir, session))

    queued: list[str] = []
    reused: list[str] = []
    sweep = _matching_sweep(_candidates(session, CNN, image, image_sha, sweeps_only=True), sweep_configs)
    if sweep is None:
        sweep = submit_training(session, celery, settings, model=CNN, dataset=body.image_dataset,
                                overrides=sweep_over, learning_rates=list(SWEEP_RATES))
        queued += [r.id for r in sweep]
    else:
        reused += [r.id for r in sweep]

    text_runs = []
    for attention in (False, True):
        over, (name, (config,), sha) = text_plans[attention]
        found = next((r for r in _candidates(session, SEQ2SEQ, name, sha) if r.config == config), None)
        if found is None:
            (found,) = submit_training(session, celery, settings, model=SEQ2SEQ, dataset=body.text_dataset,
                                       overrides=over)
            queued.append(found.id)
        else:
            reused.append(found.id)
        text_runs.append(found)

    evaluations = []
    for run in text_runs:
        asks = [("greedy", 5), *(("beam", k) for k in sorted(set(body.beam_sizes)))]
        for decoding, beam_size in asks:
            row, _ = submit_evaluation(session, celery, settings, run, split="test", checkpoint="last",
                                       decoding=decoding, beam_size=beam_size, length_penalty=0.0, limit=body.limit)
            evaluations.append(row.id)
    return ReproduceResponse(runs=queued, reused_runs=reused, evaluations=evaluations, sweep_id=sweep[0].sweep_id)
