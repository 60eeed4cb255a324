"""A Schemathesis check of inkwell's own, loaded by tests/api/test_contract.py (SCHEMATHESIS_HOOKS).

tests/api/schemathesis.toml lets a schema-valid request get a 422 on the few operations where the data
decides (an unknown dataset, a run of another kind, text with nothing to translate, a blank image). This
check keeps that from hiding a contract bug: such a 422 must be a refusal by the data, which inkwell
answers without `errors` (api/errors.py). A 422 listing `errors` means the request broke a validation
rule, and a request the schema calls valid must never do that: the rule belongs in /openapi.json.
"""

from __future__ import annotations

import json

import schemathesis
from schemathesis import Case, CheckContext, Response


@schemathesis.check
def valid_requests_pass_validation(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        errors = json.loads(response.content).get("errors")
    except (ValueError, AttributeError):
        errors = None
    if errors:
        raise AssertionError(
            "A request the schema calls valid failed validation; state the rule in /openapi.json\n"
            f"errors: {json.dumps(errors)[:500]}"
        )
    return None
