"""Every error is JSON with a readable message; no request ever sees a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import one_line
from core.training import BrokerUnavailable, TrainingRejected
from ml.errors import CheckpointError, InputError, InputTooLarge, MLError

log = logging.getLogger("inkwell.api")


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")} for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": summary, "errors": errors}, status_code=422)

    @app.exception_handler(TrainingRejected)
    async def training_rejected(_: Request, exc: TrainingRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(BrokerUnavailable)
    async def broker_unavailable(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(InputTooLarge)
    async def too_large(_: Request, exc: InputTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(InputError)
    async def bad_input(_: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(CheckpointError)
    async def bad_checkpoint(_: Request, exc: CheckpointError) -> JSONResponse:
        log.warning("checkpoint problem: %s", exc)
        return JSONResponse({"detail": f"the model's checkpoint cannot be used: {exc}"}, status_code=409)

    @app.exception_handler(MLError)
    async def ml_error(_: Request, exc: MLError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(OperationalError)
    async def database_unreachable(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, one_line(exc))
        return JSONResponse({"detail": "the database is unreachable right now; try again shortly"},
                            status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated:
            return await unexpected(request, exc)
        return await database_unreachable(request, exc)  # type: ignore[arg-type]

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)
