"""The report's decoding section: greedy vs beam search (sizes 1..10, no length penalty) on the test split,
for the two seq2seq runs of the attention section, read from their evaluations (checkpoint "last").

For each (run, decoding, beam size) the newest succeeded evaluation answers (with a `limit`: only those made
with it; without: whatever their limit, `n` tells how many examples were scored); else one still queued or
running is pending; else the request that makes it is `needed`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.report_schemas import (
    AttentionSection,
    DecodingCell,
    DecodingRow,
    DecodingRun,
    DecodingSection,
    NeededEvaluation,
)
from core.db import FRESH
from core.models import Evaluation

BEAM_SIZES = tuple(range(1, 11))
Key = tuple[str, str, int | None]  # (run id, decoding, beam size or None for greedy)


def evaluation_body(decoding: str, beam_size: int | None, limit: int | None) -> dict[str, Any]:
    """The POST /runs/{id}/evaluations body of one cell."""
    body: dict[str, Any] = {"split": "test", "checkpoint": "last", "decoding": decoding}
    if decoding == "beam":
        body |= {"beam_size": beam_size, "length_penalty": 0}
    return body | ({"limit": limit} if limit is not None else {})


def _key(row: Evaluation, limit: int | None) -> Key | None:
    """The cell an evaluation fills, or None when it is not one the report reads."""
    params = row.params or {}
    if limit is not None and params.get("limit") != limit:
        return None
    if params.get("decoding") == "greedy":
        return row.run_id, "greedy", None
    if (params.get("decoding") == "beam" and params.get("beam_size") in BEAM_SIZES
            and float(params.get("length_penalty") or 0.0) == 0.0):
        return row.run_id, "beam", int(params["beam_size"])
    return None


def _cells(session: Session, runs: dict[str, str], limit: int | None) -> dict[Key, Evaluation]:
    """The evaluation answering each cell (succeeded first, then queued/running; newest of each)."""
    stmt = (select(Evaluation)
            .where(Evaluation.run_id.in_(list(runs)), Evaluation.split == "test", Evaluation.checkpoint == "last",
                   Evaluation.status.in_(("succeeded", "queued", "running")))
            .order_by(Evaluation.created_at.desc(), Evaluation.id))
    chosen: dict[Key, Evaluation] = {}
    for row in session.scalars(stmt, execution_options=FRESH):
        key = _key(row, limit)
        if key is None or row.dataset != runs[row.run_id]:
            continue
        if key not in chosen or (row.status == "succeeded" and chosen[key].status != "succeeded"):
            chosen[key] = row
    return chosen


def _cell(run_id: str, row: Evaluation | None) -> DecodingCell:
    if row is None:
        return DecodingCell(run_id=run_id, status="missing")
    done = row.status == "succeeded"
    return DecodingCell(run_id=run_id, status=row.status, evaluation_id=row.id,
                        error_rate=row.value if done else None, n=row.n if done else None,
                        limit=(row.params or {}).get("limit"))


def _needed_text(needed: list[NeededEvaluation], limit: int | None) -> list[str]:
    """One line per run: the greedy request and the beam request with the beam sizes still missing."""
    lines = []
    for run_id in dict.fromkeys(n.run_id for n in needed):
        mine = [n for n in needed if n.run_id == run_id]
        greedy = [n for n in mine if n.body["decoding"] == "greedy"]
        sizes = [str(n.body["beam_size"]) for n in mine if n.body["decoding"] == "beam"]
        asks = [f"POST /runs/{run_id}/evaluations {json.dumps(n.body)}" for n in greedy]
        if sizes:
            beam = {k: v for k, v in evaluation_body("beam", 0, limit).items() if k != "beam_size"}
            asks.append(f"POST /runs/{run_id}/evaluations {json.dumps(beam)} with beam_size {', '.join(sizes)}")
        lines.append("; ".join(asks))
    return lines


def decoding_section(session: Session, attention: AttentionSection, limit: int | None) -> DecodingSection:
    plot_url = "/report/decoding.png" + (f"?limit={limit}" if limit is not None else "")
    chosen = [r for r in (attention.without_attention, attention.with_attention) if r is not None]
    runs = [DecodingRun(run_id=r.run_id, attention=r.attention) for r in chosen]
    if not chosen:
        return DecodingSection(ready=False, missing=f"needs the seq2seq runs: {attention.missing}", plot_url=plot_url)
    cells = _cells(session, {r.run_id: r.dataset for r in chosen}, limit)
    greedy = [_cell(r.run_id, cells.get((r.run_id, "greedy", None))) for r in runs]
    beam = [DecodingRow(beam_size=k, cells=[_cell(r.run_id, cells.get((r.run_id, "beam", k))) for r in runs])
            for k in BEAM_SIZES]
    slots = [*((c, "greedy", None) for c in greedy), *((c, "beam", row.beam_size) for row in beam for c in row.cells)]
    needed = [NeededEvaluation(run_id=c.run_id, path=f"/runs/{c.run_id}/evaluations",
                               body=evaluation_body(decoding, k, limit))
              for c, decoding, k in slots if c.status == "missing"]
    pending = [c.evaluation_id for c, _, _ in slots if c.status in ("queued", "running") and c.evaluation_id]
    missing = _needed_text(needed, limit)
    if pending:
        missing.append(f"{len(pending)} evaluation(s) still queued or running")
    if len(runs) < 2:
        missing.insert(0, f"needs both seq2seq runs: {attention.missing}")
    return DecodingSection(ready=not missing, missing="; ".join(missing) or None, runs=runs, greedy=greedy,
                           beam=beam, needed=needed, pending=pending, plot_url=plot_url)
