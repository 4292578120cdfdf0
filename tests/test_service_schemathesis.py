"""The service's OpenAPI contract, fuzzed in-process by schemathesis (deterministic, 100 examples per
operation): each case carries a fresh valid JWT for the URL it calls, so no answer may be a server
error, a 401, off its declared OpenAPI response, or (for a 200) off the CDS Hooks 2.0 JSON Schema.

The token is minted when the case is sent, not in a schemathesis auth hook: schemathesis builds its
coverage cases (and runs the hook on them) at collection, and a token minted then expired on a loaded
machine before the test ran."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

import jakcds
from cds_keys import mint, write_issuers
from conftest import examples
from jakcds.ehr.auth import Verifier, load_issuers
from jakcds.ehr.service import SERVICES, Settings, create_app

pytestmark = pytest.mark.slow  # 100 requests per operation

BASE = "http://testserver"  # the ASGI client's base URL, so every aud starts with it
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "cds-hooks-2.0"
CDS_SCHEMA = {"/cds-services": "discovery", "/cds-services/{service_id}": "response"}


def verifier() -> Verifier:
    with tempfile.TemporaryDirectory() as directory:
        return Verifier(load_issuers(write_issuers(Path(directory))))


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(jakcds.evaluator(), Settings(BASE, verifier())))


@schema.hook
def flatmap_path_parameters(ctx: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Mostly the real services (so bodies reach the hook logic), sometimes the generated id."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.sampled_from([*SERVICES, path_parameters["service_id"]]).map(lambda sid: {"service_id": sid})


def not_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """A valid token is never refused."""
    assert response.status_code != 401, f"401 for a valid token, aud {BASE + case.formatted_path}"
    return None


def cds_hooks_conformance(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 200 discovery or service response conforms to the CDS Hooks 2.0 JSON Schema (the OpenAPI leaves it open)."""
    name = CDS_SCHEMA.get(case.path)
    if name and response.status_code == 200:
        validator = Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(response.json())]
        assert errors == [], errors
    return None


def feedback_accepts_valid_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schema-valid feedback is accepted (a hook call may still be refused for its meaning: 400, 412)."""
    if case.path == "/cds-services/{service_id}/feedback":
        return positive_data_acceptance(ctx, response, case)
    return None


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          feedback_accepts_valid_data, not_refused, cds_hooks_conformance]


@schema.parametrize()
@settings(max_examples=examples(100), derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_contract(case: schemathesis.Case) -> None:
    # a fresh token per case (the service refuses a replayed jti) for the URL it calls, minted as it
    # runs: the coverage phase's cases are built at collection, minutes before they run in a long suite
    case.headers = {**(case.headers or {}), "Authorization": "Bearer " + mint(BASE + case.formatted_path)}
    case.call_and_validate(checks=CHECKS)
