"""The example CDS Hooks requests in cases/hooks/ give the cards cases/hooks/cards.yaml lists."""

import asyncio
import json

import pytest
import yaml
from jsonschema import Draft202012Validator

from conftest import CASES, RULES
import jakcds
from jakcds.ehr.service import HookRequest, Service, Settings

HOOKS = CASES / "hooks"
REQUEST_SCHEMA = json.loads((CASES.parent / "tests" / "schemas" / "cds-hooks-2.0" / "request.schema.json").read_text())
EXPECTED = yaml.safe_load((HOOKS / "cards.yaml").read_text())


@pytest.fixture(scope="module")
def service() -> Service:
    return Service(jakcds.evaluator(RULES), Settings("http://testserver", None, as_of=EXPECTED["as_of"]))


def test_every_example_request_has_expected_cards():
    assert sorted(EXPECTED["requests"]) == sorted(p.name for p in HOOKS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED["requests"]))
def test_example_request_gives_the_expected_cards(name: str, service: Service):
    wanted = EXPECTED["requests"][name]
    request = HookRequest.model_validate(json.loads((HOOKS / name).read_text()))
    cards = service.call(wanted["service"], request, asyncio.run(service.gather(request)))
    assert [f"{card['indicator']} {card['source']['topic']['code']}" for card in cards] == wanted["cards"]


@pytest.mark.parametrize("name", sorted(EXPECTED["requests"]))
def test_example_request_is_a_valid_cds_hooks_request(name: str):
    errors = [e.message for e in Draft202012Validator(REQUEST_SCHEMA).iter_errors(json.loads((HOOKS / name).read_text()))]
    assert errors == []


def test_an_engine_failure_is_a_500_naming_the_decision_and_logged(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    """Issue 25: durable-rules can fail on a valid patient (error 303 with large packs); the EHR gets a
    500 that names the decision, the log has it, and neither has a traceback."""
    from fastapi.testclient import TestClient

    from jakcds.decision.session import EngineError
    from jakcds.ehr.service import create_app

    ev = jakcds.evaluator(RULES)

    def fail(*args, **kwargs):
        raise EngineError("durable-rules: error 303")

    monkeypatch.setattr(ev, "evaluate", fail)
    with TestClient(create_app(ev, Settings("http://testserver", None)), raise_server_exceptions=False) as client:
        response = client.post("/cds-services/jak-options", json=json.loads((HOOKS / "patient-view.json").read_text()))
    decision = response.headers["X-Decision-Id"]
    assert response.status_code == 500 and decision in response.json()["error"] and "Traceback" not in response.text
    failures = [json.loads(r.getMessage()) for r in caplog.records if r.name == "jakcds.decisions" and "failure" in r.getMessage()]
    assert failures == [{"event": "failure", "decision": decision, "why": "EngineError: durable-rules: error 303"}]
    assert "Traceback" not in caplog.text
