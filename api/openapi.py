"""The published contract, `/openapi.json`: FastAPI's schema, with inkwell's error body and every status.

FastAPI documents its own `HTTPValidationError` (`detail` as a list) for 422s, which is not what inkwell
answers (api/errors.py). Here, once per schema:

- every error status (4xx, 5xx) of every operation is documented as `ErrorResponse`
  (`{"detail": "<one line>", "errors": [{"field", "message"}]}`), unless the route documents a body of its own
  (`/readyz`'s 503 is a `Readiness`); FastAPI's `HTTPValidationError` and `ValidationError` are dropped;
- every operation that needs a key (api/access.py) may answer 401 and 403 (when API keys are set), and 503
  (the database, the broker or the inference slots unavailable for a moment: `Retry-After`);
- routes whose body FastAPI cannot describe (`openapi_extra=request_body(build)`) get theirs, made now
  that every kind is registered (INKWELL_KIND_MODULES are loaded before the first schema is made).

Routes still say which statuses they answer and why (`responses=` in api/routes); this module fills in the
body those statuses carry. tests/api/test_contract.py runs Schemathesis against the result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.access import OPEN, ROUTE_SCOPES
from api.schemas import ErrorResponse

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model=ErrorResponse.__name__)}
FASTAPI_ERRORS = ("HTTPValidationError", "ValidationError")
# Answered to anyone, API key or not (api/access.py): probes, the dashboard's page and files, the API docs.
PUBLIC = {(method.lower(), path) for (method, path), scope in ROUTE_SCOPES.items() if scope is OPEN}
AUTH_RESPONSES = {
    "401": "the API key is missing or unknown (when the server has keys: INKWELL_API_KEYS)",
    "403": "the API key does not have the scope this operation needs",
    "503": "the database, the broker or the inference slots are unavailable for a moment: retry after "
           "`Retry-After`",
}
VALIDATION = "invalid request: `errors` lists the fields (a body that is not JSON is one)"

BUILD = "x-inkwell-build"  # a request body made when the schema is (see request_body)
_BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {}


def request_body(name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its request itself: `build()` gives its OpenAPI `requestBody`,
    called when the schema is made, so that it lists every registered kind (`name` tells it apart)."""
    _BUILDERS[name] = build
    return {"requestBody": {BUILD: name}}


def _is_error(status: str) -> bool:
    return status[:1] in ("4", "5")


def _document_errors(operation: dict[str, Any], public: bool) -> None:
    responses = operation.setdefault("responses", {})
    if not public:
        for status, description in AUTH_RESPONSES.items():
            responses.setdefault(status, {"description": description})
    for status, response in responses.items():
        if not _is_error(status):
            continue
        content = response.setdefault("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema is None or schema.get("$ref", "").rsplit("/", 1)[-1] in FASTAPI_ERRORS:
            content["application/json"] = {"schema": dict(ERROR_REF)}
            if response.get("description") == "Validation Error":  # FastAPI's own 422
                response["description"] = VALIDATION


def contract(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` (FastAPI's) turned into inkwell's contract, in place; doing it again changes nothing."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorResponse.model_json_schema(ref_template=REF)
    components.update(error_schema.pop("$defs", {}))
    components[ErrorResponse.__name__] = error_schema
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if BUILD in operation.get("requestBody", {}):
                operation["requestBody"] = _BUILDERS[operation["requestBody"][BUILD]]()
            _document_errors(operation, public=(method, path) in PUBLIC)
    for name in FASTAPI_ERRORS:
        components.pop(name, None)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and so `/openapi.json` and `/docs`) return the contract."""
    fastapi_schema = app.openapi  # FastAPI's: made once, again only when the routes change
    made: list[dict[str, Any]] = []  # the schema last turned into the contract

    def openapi() -> dict[str, Any]:
        schema = fastapi_schema()
        if not made or made[0] is not schema:
            made[:] = [contract(schema)]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
