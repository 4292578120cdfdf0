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
