"""The assignment's report: JSON sections (GET /report), one PDF, its two images, and POST /report/reproduce.

Building is api/report.py (sections from SQL), api/report_images.py (images), api/report_pdf.py (the PDF) and
api/reproduce.py (queuing what is missing); each image route builds only the sections it draws.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.deps import CeleryDep, SessionDep, SettingsDep
from api.presenters import PNG_RESPONSE, png
from api.report import activations_section, attention_section, build_report, sweep_section
from api.report_decoding import decoding_section
from api.report_images import NotReady, activations_png, decoding_png
from api.report_pdf import report_pdf
from api.report_schemas import Report, ReproduceRequest, ReproduceResponse
from api.reproduce import reproduce

router = APIRouter(tags=["report"])

LimitQuery = Annotated[int | None, Query(ge=1, le=1_000_000, description=(
    "read only runs trained and evaluations made with this limit (POST /report/reproduce's `limit`); "
    "default: any"))]
NOT_READY = {409: {"description": "not ready yet: the message says which request produces it"}}
DASHBOARD_REPORT = "/#/report"


def _quality(accept: str, media: str) -> float:
    """The q the Accept header gives `media` (its most specific matching range; 0 when none matches)."""
    kind = media.split("/")[0]
    best: tuple[int, float] = (-1, 0.0)
    for part in accept.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        specificity = {media: 2, f"{kind}/*": 1, "*/*": 0}.get(name.lower())
        if specificity is None or specificity < best[0]:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best = (specificity, q)
    return best[1]


def prefers_html(accept: str | None) -> bool:
    return bool(accept) and _quality(accept, "text/html") > _quality(accept, "application/json")


@router.get(
    "/report",
    summary="The assignment's report rebuilt from the runs and evaluations: sections, each ready or saying which "
            "request produces it",
    response_model=Report,
    responses={303: {"description": "a browser (Accept prefers text/html): see the dashboard's report page",
                     "headers": {"Location": {"schema": {"type": "string"}}}}},
)
def report(request: Request, response: Response, session: SessionDep, limit: LimitQuery = None) -> Any:
    if prefers_html(request.headers.get("accept")):
        return RedirectResponse(DASHBOARD_REPORT, status_code=303, headers={"Vary": "Accept"})
    response.headers["Vary"] = "Accept"
    return build_report(session, limit)


@router.get(
    "/report.pdf",
    summary="The whole report as one PDF, a page per section (a missing section: what produces it)",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "a PDF document"}},
)
def report_document(request: Request, session: SessionDep, limit: LimitQuery = None) -> Response:
    built = build_report(session, limit)
    picture, note = None, None
    if built.activations.ready:
        try:
            picture = activations_png(request.app.state, session, built.activations)
        except NotReady as exc:
            note = str(exc)
    headers = {"Content-Disposition": 'inline; filename="inkwell-report.pdf"', "Cache-Control": "no-store"}
    return Response(report_pdf(built, picture, note), media_type="application/pdf", headers=headers)


@router.get(
    "/report/activations.png",
    summary="conv1 activation maps of the first test image, by the best-rate run of the newest CNN sweep (PNG)",
    response_class=Response,
    responses={**PNG_RESPONSE, **NOT_READY},
)
def report_activations(request: Request, session: SessionDep, limit: LimitQuery = None) -> Response:
    section = activations_section(sweep_section(session, limit), limit)
    try:
        return png(activations_png(request.app.state, session, section))
    except NotReady as exc:
        raise HTTPException(409, str(exc)) from None


@router.get(
    "/report/decoding.png",
    summary="Test error rate vs beam size for both seq2seq runs, greedy as dashed lines (PNG)",
    response_class=Response,
    responses={**PNG_RESPONSE, **NOT_READY},
)
def report_decoding(session: SessionDep, limit: LimitQuery = None) -> Response:
    section = decoding_section(session, attention_section(session, limit), limit)
    try:
        return png(decoding_png(section))
    except NotReady as exc:
        raise HTTPException(409, str(exc)) from None


@router.post(
    "/report/reproduce",
    status_code=202,
    summary="Queue every run and evaluation the report still needs, reusing matching ones",
    response_model=ReproduceResponse,
    responses={
        422: {"description": "invalid field, or a dataset that is unknown or holds data of another kind"},
        503: {"description": "the broker is unreachable; the runs were marked failed"},
    },
)
def reproduce_report(body: ReproduceRequest, session: SessionDep, settings: SettingsDep,
                     celery: CeleryDep) -> ReproduceResponse:
    return reproduce(session, celery, settings, body)
