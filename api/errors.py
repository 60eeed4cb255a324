"""Every error is JSON with a readable message; no request ever sees a traceback.

The body is `api.schemas.ErrorResponse` (`/openapi.json` documents it for every error status, see api/openapi.py):
`{"detail": "<one line>"}`, plus `errors` (one `{"field", "message"}` per invalid field) for a request that
breaks a rule of the schema. A body that cannot be parsed at all (not JSON, not UTF-8, broken multipart) is a
422 like any other invalid request: inkwell never answers 400.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import ErrorResponse, FieldError
from core.errors import one_line
from core.objectstore import ObjectMissing, ObjectStoreError, StoreUnavailable
from core.training import BrokerUnavailable, TrainingRejected
from ml.errors import CheckpointError, InputError, InputTooLarge, MLError

log = logging.getLogger("inkwell.api")


def _field(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "request"


def _field_error(error: dict) -> FieldError:
    if error.get("type") == "json_invalid":  # FastAPI could not decode the JSON body: say where
        reason = (error.get("ctx") or {}).get("error", "invalid")
        return FieldError(field="body", message=f"the body is not valid JSON: {reason} (character {error['loc'][-1]})")
    return FieldError(field=_field(error.get("loc", ())), message=str(error.get("msg", "invalid")))


def error_response(status_code: int, detail: str, errors: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(detail=detail, errors=errors).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status_code, headers=headers)


def invalid_request(errors: list[FieldError]) -> JSONResponse:
    """422 listing the invalid fields; `detail` sums them up in one line."""
    return error_response(422, "; ".join(f"{e.field}: {e.message}" for e in errors), errors)


def allowed_methods(request: Request) -> str:
    """Every method some route of the app serves at this request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # the framework could not parse the body (inkwell raises no 400 itself)
            cause = exc.__cause__  # FastAPI: the decoder's error (e.g. not UTF-8); Starlette: none, a clear detail
            message = f"the body cannot be parsed: {one_line(cause)}" if cause is not None else str(exc.detail)
            return invalid_request([FieldError(field="body", message=message)])
        if exc.status_code == 405:  # Starlette names only the first route of the path: list them all
            return error_response(405, str(exc.detail), headers={"Allow": allowed_methods(request)})
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return invalid_request([_field_error(e) for e in exc.errors()])

    @app.exception_handler(TrainingRejected)
    async def training_rejected(_: Request, exc: TrainingRejected) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(BrokerUnavailable)
    async def broker_unavailable(_: Request, exc: BrokerUnavailable) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(InputTooLarge)
    async def too_large(_: Request, exc: InputTooLarge) -> JSONResponse:
        return error_response(413, str(exc))

    @app.exception_handler(InputError)
    async def bad_input(_: Request, exc: InputError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(CheckpointError)
    async def bad_checkpoint(_: Request, exc: CheckpointError) -> JSONResponse:
        log.warning("checkpoint problem: %s", exc)
        return error_response(409, f"the model's checkpoint cannot be used: {exc}")

    @app.exception_handler(MLError)
    async def ml_error(_: Request, exc: MLError) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("artifact store unreachable on %s %s: %s", request.method, request.url.path, one_line(exc))
        return error_response(503, "the artifact store is unreachable right now; try again shortly",
                              headers={"Retry-After": "5"})

    @app.exception_handler(ObjectMissing)
    async def object_missing(_: Request, exc: ObjectMissing) -> JSONResponse:
        return error_response(404, f"not in the artifact store: {exc}")

    @app.exception_handler(ObjectStoreError)
    async def store_error(request: Request, exc: ObjectStoreError) -> JSONResponse:
        log.error("artifact store error on %s %s: %s", request.method, request.url.path, one_line(exc))
        return error_response(503, f"the artifact store refused the request: {one_line(exc)}",
                              headers={"Retry-After": "30"})

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
        return error_response(500, "internal error; the server log has the details")
