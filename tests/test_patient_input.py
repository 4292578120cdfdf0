"""The input contract: normalisation, and a clear one-line error for every kind of bad input."""

import pytest

import jakcds
from conftest import WENZEL


def evaluate(evaluator, **changes):
    return evaluator.evaluate({**WENZEL, **changes})


def error_of(evaluator, patient) -> str:
    with pytest.raises(jakcds.InputError) as info:
        evaluator.evaluate(patient)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"age": -3}, "age: Input should be greater than or equal to 0 (got -3)"),
        ({"age": "69"}, "age: Input should be a valid integer (got '69')"),
        ({"age": 69.5}, "age: Input should be a valid integer"),
        ({"age": True}, "age: Input should be a valid integer (got True)"),
        ({"smoking": "sometimes"}, "smoking: Input should be 'never', 'former' or 'current' (got 'sometimes')"),
        ({"pregnant": "no"}, "pregnant: Input should be a valid boolean (got 'no')"),
        ({"comorbidities": "myelofibrosis"}, "comorbidities: Input should be a valid list"),
        ({"weight": 70}, "weight: Extra inputs are not permitted (got 70)"),
        ({"condition": "dermatomyosistis"}, "condition: unknown diagnosis code 'dermatomyosistis'; did you mean 'dermatomyositis'?"),
        ({"failed_therapies": ["methotrexat"]}, "failed_therapies: unknown treatment code 'methotrexat'; did you mean 'methotrexate'?"),
        ({"comorbidities": ["xyzzy"]}, "comorbidities: unknown diagnosis code 'xyzzy'"),
        ({"labs": {"platelets": -1}}, "labs: platelets: value must not be negative, got -1"),
        ({"labs": {"platelets": "120"}}, "labs: platelets: value must be a finite number, got '120'"),
        ({"labs": {"platelets": float("nan")}}, "labs: platelets: value must be a finite number, got nan"),
        ({"labs": {"platelets": {"value": 120, "unit": "mg"}}}, "labs: platelets: unknown unit 'mg'"),
        ({"labs": {"platelets": {"value": 120}}}, "labs: platelets: expected {'value': number, 'unit': text}"),
        ({"labs": {"platelet": 120}}, "labs: unknown lab 'platelet'"),
    ],
)
def test_bad_input_names_field_and_value(evaluator, change, expected):
    assert expected in error_of(evaluator, {**WENZEL, **change})


def test_missing_condition_and_non_object(evaluator):
    assert "condition: Field required" in error_of(evaluator, {"age": 40})
    assert "Input should be a valid dictionary" in error_of(evaluator, [WENZEL])


def test_synonyms_and_icd10_codes_are_normalised(evaluator):
    by_code = evaluate(evaluator, condition="M33.12", comorbidities=[])
    by_synonym = evaluate(evaluator, condition="Dermatomyositis", comorbidities=[])
    assert by_code.patient["condition"] == by_synonym.patient["condition"] == "dermatomyositis"
    assert evaluate(evaluator, comorbidities=["D47.4", "D69.6"]).patient["comorbidities"] == [
        "primary_myelofibrosis",
        "thrombocytopenia",
    ]


def test_narrower_condition_gets_the_broader_rules(evaluator):
    """Chilblain lupus is a cutaneous lupus: the cutaneous-lupus tofacitinib rules apply to it."""
    result = evaluate(evaluator)
    tofacitinib = next(c for c in result.candidates if c.drug == "tofacitinib")
    assert "SEED-TOF-010" in tofacitinib.rules


@pytest.mark.parametrize("unit, value", [("/uL", 120000), ("/mm3", 120000), ("10^9/L", 120), ("10^3/uL", 120), ("/µL", 120000)])
def test_equivalent_units_give_identical_results(evaluator, unit, value):
    bare = evaluate(evaluator).model_dump_json()
    assert evaluate(evaluator, labs={"platelets": {"value": value, "unit": unit}}).model_dump_json() == bare


def test_unknown_is_not_false(evaluator):
    """No platelet count: the ruxolitinib rule that needs it says so, instead of assuming normal."""
    result = evaluate(evaluator, labs={})
    platelets = next(p for p in result.before_starting if p.fact == "platelets")
    needed = [r for r in platelets.rules if r.rule == "SEED-RUX-003"]
    assert "ruxolitinib" in platelets.drugs and needed[0].message.startswith("Platelet count needed")
    assert result.patient["labs"] == {} and result.patient["severity"] is None
