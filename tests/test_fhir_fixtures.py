"""The vendored HL7 FHIR R4 examples: byte-identical to their npm packages, schema-valid, parseable."""

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_r4 import validate
from jakcds.ehr.fhir import READ

FHIR_DIR = Path(__file__).resolve().parent / "fhir_r4"
EXAMPLE_FILES = sorted(validate.EXAMPLES.glob("*.json"))


def _read(name: str) -> dict[str, Any]:
    return json.loads((validate.EXAMPLES / name).read_text(encoding="utf-8"))


def test_the_examples_are_all_there() -> None:
    assert len(EXAMPLE_FILES) == 11
    assert {"Bundle-101.json", "Observation-f205.json", "Patient-pat2.json"} <= {f.name for f in EXAMPLE_FILES}


@pytest.mark.parametrize("path", [*EXAMPLE_FILES, validate.SCHEMA], ids=lambda p: p.name)
def test_files_match_their_recorded_sha256(path: Path) -> None:
    provenance = (FHIR_DIR / "PROVENANCE.md").read_text(encoding="utf-8")
    assert hashlib.sha256(path.read_bytes()).hexdigest() in provenance


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example_is_schema_valid_and_parses_as_r4b(path: Path) -> None:
    resource = _read(path.name)
    assert validate.r4_schema_errors(resource) == []
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    assert model.id == resource["id"]


def test_a_string_quantity_value_inside_a_bundle_is_caught() -> None:
    broken = _read("Bundle-101.json")
    codes = [e["resource"].get("code", {}).get("coding", [{}])[0].get("code") for e in broken["entry"]]
    index = codes.index("777-3")  # platelets, 444
    broken["entry"][index]["resource"]["valueQuantity"]["value"] = "444"
    assert validate.r4_schema_errors(broken) == [
        f"Bundle.entry[{index}].resource.valueQuantity.value: '444' is not of type 'number'"
    ]
    # Why the schema check exists: fhir.resources coerces the string to a Decimal without complaint.
    parsed = get_fhir_model_class("Bundle").model_validate(broken)
    assert str(parsed.entry[index].resource.valueQuantity.value) == "444"


def test_unknown_and_nested_resource_errors_are_reported() -> None:
    assert validate.r4_schema_errors({"resourceType": "Quantity"}) == [
        "(root): not a known FHIR R4 resourceType: 'Quantity'"
    ]
    request = _read("MedicationRequest-medrx0331.json")
    request["contained"][0]["code"]["coding"][0]["code"] = 7
    assert validate.r4_schema_errors(request) == [
        "MedicationRequest.contained[0].code.coding[0].code: 7 is not of type 'string'"
    ]


def test_bundle_101_holds_the_cbc_codes_with_their_units() -> None:
    found = {}
    for entry in _read("Bundle-101.json")["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation":
            (coding,) = resource["code"]["coding"]
            quantity = resource["valueQuantity"]
            found[coding["code"]] = (quantity["value"], quantity.get("unit"), quantity.get("system"), quantity.get("code"))
    ucum = "http://unitsofmeasure.org"
    assert found["777-3"] == (444, "x10*9/L", ucum, "10*9/L")  # platelets
    assert found["751-8"] == (0.9, "x10*9/L", ucum, "10*9/L")  # neutrophils (absolute)
    assert found["731-0"] == (0.9, "x10*9/L", ucum, "10*9/L")  # lymphocytes (absolute)
    assert found["718-7"] == (176, "g/L", ucum, "g/L")  # haemoglobin, g/L not g/dL


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_read_and_what_is_not_read_is_listed(path: Path, evaluator) -> None:
    """The reader reads what decides and lists the rest: no vendored HL7 example is refused."""
    from jakcds.ehr.chart import read_chart

    resource = _read(path.name)
    reader = read_chart(evaluator, resource, datetime.date(2026, 11, 23))
    kinds = {e["resource"]["resourceType"] for e in resource.get("entry", [])} or {resource["resourceType"]}
    listed = {u.why for u in reader.sorted_unmapped()}
    assert {f"{kind} resources are not read" for kind in kinds - set(READ) - {"Medication"}} <= listed
