"""CDS Hooks 2.0.1 contract checkers: our JSON Schemas against the spec's own examples,
broken variants that must fail, and HealthChain as a second opinion (see tests/schemas/README.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from second_opinion import SUMMARY_MAX_LENGTH_140, healthchain_errors, raw_healthchain_errors

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "cds-hooks-2.0"
EXAMPLES = SCHEMAS / "examples"
SCHEMA_FILES = ["discovery", "request", "response", "feedback"]


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def example(name: str) -> dict:
    return load(EXAMPLES / f"{name}.json")


def schema_errors(schema_name: str, instance: object, definition: str | None = None) -> list[str]:
    """Sorted "path: message" errors; with `definition`, validate against that $defs entry."""
    schema = load(SCHEMAS / f"{schema_name}.schema.json")
    if definition is None:
        validator = Draft202012Validator(schema)
    else:
        registry = Registry().with_resource(schema["$id"], Resource.from_contents(schema))
        validator = Draft202012Validator({"$ref": f"{schema['$id']}#/$defs/{definition}"}, registry=registry)
    return sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(instance))


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load(SCHEMAS / f"{name}.schema.json")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "2.0.1 §" in schema["description"]


# Whole documents from the spec, valid as given.
SPEC_DOCUMENTS = [
    ("discovery", "discovery"),  # §Discovery Example
    ("discovery", "discovery-extension"),  # §Extensions, discovery example
    ("request", "request"),  # §Calling a CDS Service > Example
    ("request", "request-extension"),  # §Extensions, request example
    ("response", "response"),  # §CDS Service Response > Example
    ("response", "response-empty"),  # §HTTP Response, no decision support
    ("feedback", "feedback-accepted"),  # §Example suggestion accepted
    ("feedback", "feedback-overridden"),  # §Example overridden guidance without overrideReason
    ("feedback", "feedback-override-reason"),  # §Example overridden guidance with overrideReason
]


@pytest.mark.parametrize(("schema_name", "name"), SPEC_DOCUMENTS)
def test_spec_example_is_valid(schema_name: str, name: str) -> None:
    assert schema_errors(schema_name, example(name)) == []


# Fragments from the spec: (schema, $defs entry, example file, key holding the fragment or None).
SPEC_FRAGMENTS = [
    ("discovery", "Prefetch", "prefetch-templates", "prefetch"),  # §Example prefetch templates
    ("request", "FhirAuthorization", "fhir-authorization", "fhirAuthorization"),  # §Passing the Access Token
    ("response", "Source", "source", "source"),  # §Source example
    ("response", "Action", "action-create", None),  # §Action examples
    ("response", "Action", "action-update", None),
    ("response", "Action", "action-delete", None),
]


@pytest.mark.parametrize(("schema_name", "definition", "name", "key"), SPEC_FRAGMENTS)
def test_spec_fragment_is_valid(schema_name: str, definition: str, name: str, key: str | None) -> None:
    fragment = example(name)
    assert schema_errors(schema_name, fragment[key] if key else fragment, definition) == []


def test_spec_override_reasons_are_valid() -> None:  # §Reasons for rejecting a card
    for coding in example("override-reasons")["overrideReasons"]:
        assert schema_errors("response", coding, "OverrideReasonCoding") == []


# Spec examples that break the spec's own tables; the schema keeps the table, and the test
# pins the one error each, so anything else wrong would still show.
SPEC_EXAMPLE_DEFECTS = [
    # §Link "Example response using autolaunchable": the card has no indicator (REQUIRED).
    ("response", "response-autolaunchable", None, ["$.cards[0]: 'indicator' is a required property"]),
    # §System Action example: the action has no description (REQUIRED in §Action).
    ("response", "response-system-actions", None, ["$.systemActions[0]: 'description' is a required property"]),
    # §Example prefetch data: "user": "123" is not a FHIR resource or null (fixed in later builds).
    ("request", "prefetch-data", "Prefetch", ["$.user: '123' is not valid under any of the given schemas"]),
]


@pytest.mark.parametrize(("schema_name", "name", "definition", "expected"), SPEC_EXAMPLE_DEFECTS)
def test_spec_example_defect_is_reported(
    schema_name: str, name: str, definition: str | None, expected: list[str]
) -> None:
    document = example(name)
    assert schema_errors(schema_name, document["prefetch"] if definition else document, definition) == expected


def mutate(name: str, change: Callable[[dict], None]) -> dict:
    document = copy.deepcopy(example(name))
    change(document)
    return document


def test_summary_limit_is_below_140() -> None:
    assert schema_errors("response", mutate("response", lambda d: d["cards"][0].update(summary="x" * 139))) == []


# (schema, example, change, the one error expected): each variant breaks exactly one rule.
BROKEN = {
    "summary of 140 chars": ("response", "response", lambda d: d["cards"][0].update(summary="x" * 140), "is too long"),
    "indicator severe": (
        "response", "response", lambda d: d["cards"][0].update(indicator="severe"),
        "$.cards[0].indicator: 'severe' is not one of",
    ),
    "null title": (
        "discovery", "discovery", lambda d: d["services"][0].update(title=None),
        "$.services[0].title: None is not of type 'string'",
    ),
    "missing source.label": (
        "response", "response", lambda d: d["cards"][1]["source"].pop("label"),
        "$.cards[1].source: 'label' is a required property",
    ),
    "feedback outcome ignored": (
        "feedback", "feedback-overridden", lambda d: d["feedback"][0].update(outcome="ignored"),
        "$.feedback[0].outcome: 'ignored' is not one of",
    ),
    "missing indicator": (
        "response", "response", lambda d: d["cards"][0].pop("indicator"), "'indicator' is a required property"
    ),
    "empty summary": ("response", "response", lambda d: d["cards"][0].update(summary=""), "should be non-empty"),
    "HealthChain spelling autoLaunchable": (
        "response", "response", lambda d: d["cards"][0]["links"][0].update(autoLaunchable=True),
        "('autoLaunchable' was unexpected)",
    ),
    "suggestions without selectionBehavior": (
        "response", "response", lambda d: d["cards"][0].update(suggestions=[{"label": "Stop"}]),
        "'selectionBehavior' is a dependency of 'suggestions'",
    ),
    "empty actions": (
        "response", "response",
        lambda d: d["cards"][0].update(suggestions=[{"label": "Stop", "actions": []}], selectionBehavior="any"),
        "actions: [] should be non-empty",
    ),
    "appContext on an absolute link": (
        "response", "response", lambda d: d["cards"][0]["links"][0].update(appContext="x"),
        "should not be valid under {'required': ['appContext']}",
    ),
    "override reason without display": (
        "response", "response", lambda d: d["cards"][1]["overrideReasons"][0].pop("display"),
        "'display' is a required property",
    ),
    "null prefetch template": (
        "discovery", "discovery", lambda d: d["services"][0]["prefetch"].update(x=None),
        "prefetch.x: None is not of type 'string'",
    ),
    "missing hookInstance": ("request", "request", lambda d: d.pop("hookInstance"), "'hookInstance' is a required"),
    "fhirAuthorization without fhirServer": (
        "request", "request", lambda d: d.pop("fhirServer"), "'fhirServer' is a dependency of 'fhirAuthorization'"
    ),
    "token_type not Bearer": (
        "request", "request", lambda d: d["fhirAuthorization"].update(token_type="MAC"), "'Bearer' was expected"
    ),
    "accepted without acceptedSuggestions": (
        "feedback", "feedback-accepted", lambda d: d["feedback"][0].pop("acceptedSuggestions"),
        "'acceptedSuggestions' is a required property",
    ),
    "non-UTC outcomeTimestamp": (
        "feedback", "feedback-accepted",
        lambda d: d["feedback"][0].update(outcomeTimestamp="2021-12-11T10:05:31+02:00"),
        "outcomeTimestamp: '2021-12-11T10:05:31+02:00' does not match",
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_variant_fails(case: str) -> None:
    schema_name, name, change, expected = BROKEN[case]
    errors = schema_errors(schema_name, mutate(name, change))
    assert len(errors) == 1 and expected in errors[0], errors


# HealthChain 0.16.1 as a second opinion, minus its known deviations (ehr-tooling.md §1).
@pytest.mark.slow  # HealthChain's venv (built from PyPI once)
@pytest.mark.parametrize(
    ("kind", "name"),
    [("discovery", "discovery"), ("discovery", "discovery-extension"), ("response", "response"), ("response", "response-empty")],
)
def test_healthchain_accepts_spec_example(kind: str, name: str) -> None:
    assert healthchain_errors(kind, example(name)) == []


@pytest.mark.slow  # HealthChain's venv (built from PyPI once)
def test_healthchain_allowlist_is_exercised() -> None:
    # The spec's links have no autoLaunchable, which HealthChain requires: raw errors, none left after the allowlist.
    raw = raw_healthchain_errors("response", example("response"))
    assert raw and all(e.endswith(".autoLaunchable: Field required") for e in raw)


@pytest.mark.slow  # HealthChain's venv (built from PyPI once)
def test_healthchain_rejects_card_without_indicator() -> None:
    document = mutate("response", lambda d: d["cards"][1].pop("indicator"))
    assert healthchain_errors("response", document) == ["cards.1.indicator: Field required"]


@pytest.mark.slow  # HealthChain's venv (built from PyPI once)
def test_healthchain_summary_limit_is_140() -> None:
    # Known leniency (§1 Summary): 140 chars pass HealthChain; only the JSON Schema catches it.
    assert healthchain_errors("response", mutate("response", lambda d: d["cards"][1].update(summary="x" * 140))) == []
    too_long = mutate("response", lambda d: d["cards"][1].update(summary="x" * 141))
    assert healthchain_errors("response", too_long) == ["cards.1." + SUMMARY_MAX_LENGTH_140]
