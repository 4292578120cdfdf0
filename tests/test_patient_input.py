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
        ({"comorbidities": ["12345"]}, "comorbidities: unknown diagnosis code '12345'"),
        ({"medications": ["clarithromycn"]}, "medications: unknown treatment code 'clarithromycn'; did you mean 'clarithromycin'?"),
        ({"medications": ["rifampicn"]}, "medications: unknown treatment code 'rifampicn'; did you mean 'rifampin'?"),
        ({"condition": "xyzzy"}, "condition: diagnosis 'xyzzy' is not in this pack"),
        ({"comorbidities": ["L20.99"]}, "comorbidities: L20.99 is not an ICD-10-CM code"),
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


def test_unknown_entries_are_taken_and_listed_not_refused(evaluator):
    """Issue 22.4: a real entry the pack does not know is listed in not_assessed, never dropped."""
    result = evaluate(evaluator, medications=["metformin", "clarithromycin", "Metformin "], comorbidities=["xyzzy", "Z99.89"])
    assert result.patient["medications"] == ["clarithromycin"]
    assert result.patient["not_assessed"] == {"comorbidities": ["Z99.89", "xyzzy"], "medications": ["Metformin", "metformin"]}
    shown = [(n.field, n.entry, n.why) for n in result.not_assessed]
    assert ("medications", "metformin", "this pack does not know its interactions — check them") in shown
    assert [n.entry for n in result.not_assessed if n.field == "comorbidities"] == ["Z99.89", "xyzzy"]


def test_not_assessed_does_not_depend_on_order_and_survives_a_reparse(evaluator):
    one = evaluate(evaluator, medications=["metformin", "lisinopril"])
    two = evaluate(evaluator, medications=["lisinopril", "metformin"])
    assert one.model_dump(exclude={"trace"}) == two.model_dump(exclude={"trace"})
    assert evaluator.parse(evaluator.parse({**WENZEL, "medications": ["metformin"]})).not_assessed == {"medications": ["metformin"]}


def test_a_known_entry_is_never_set_aside(evaluator):
    assert evaluate(evaluator, medications=["Clarithromycin"]).not_assessed == []


def test_every_icd10_code_of_the_vocabulary_is_in_the_cms_list(evaluator):
    import simple_icd_10_cm as cm

    codes = [code for entry in evaluator.pack.diagnoses.entries.values() for code in entry.icd10]
    assert [code for code in codes if not cm.is_valid_item(code)] == []


@pytest.mark.parametrize(
    "typed, code",
    [("HIV", "hiv_infection"), ("malignant melanoma", "melanoma"), ("basal cell carcinoma", "non_melanoma_skin_cancer"),
     ("treated NMSC", "treated_non_melanoma_skin_cancer"), ("TIA", "stroke"), ("heart attack", "myocardial_infarction"),
     ("history of VTE", "history_of_thrombosis"), ("coronary artery disease", "coronary_artery_disease")],
)
def test_common_comorbidities_map_to_facts_the_rules_use(evaluator, typed, code):
    assert evaluate(evaluator, comorbidities=[typed]).patient["comorbidities"] == [code]


def test_a_coded_comorbidity_without_a_verified_mapping_is_listed_not_dropped(evaluator):
    """ICD-10-CM codes map only where the sheet verifies them: C43.9 is taken and listed."""
    result = evaluate(evaluator, comorbidities=["C43.9"])
    assert result.patient["comorbidities"] == [] and result.patient["not_assessed"] == {"comorbidities": ["C43.9"]}


@pytest.mark.parametrize(
    "labs, expected",
    [
        ({"hemoglobin": 75}, "labs: hemoglobin 75: not a plausible g/dL value (physiological bounds 1-26 g/dL); give it as {value: 75, unit: g/L}"),
        ({"platelets": 150000}, "labs: platelets 150000: not a plausible 10^9/L value (physiological bounds 0-5000 10^9/L); give it as {value: 150000, unit: /uL}"),
        ({"lymphocytes": 1.2}, "give it as {value: 1.2, unit: 10^9/L}"),
        ({"hemoglobin": {"value": 75, "unit": "g/dL"}}, "labs: hemoglobin 75: not a plausible g/dL value"),
        ({"egfr": 300}, "labs: egfr 300: not a plausible mL/min/1.73m2 value (physiological bounds 0-250 mL/min/1.73m2)"),
    ],
)
def test_implausible_lab_values_are_errors_naming_the_likely_unit(evaluator, labs, expected):
    """Issue 22.5: a number outside a lab's physiological bounds is never read as if plausible."""
    assert expected in error_of(evaluator, {**WENZEL, "labs": labs})


def test_plausible_lab_values_in_any_unit_are_taken(evaluator):
    labs = {"hemoglobin": {"value": 75, "unit": "g/L"}, "lymphocytes": {"value": 1.2, "unit": "10^9/L"}, "platelets": 26, "egfr": 0}
    assert evaluate(evaluator, labs=labs).patient["labs"] == {"egfr": 0, "hemoglobin": 7.5, "lymphocytes": 1200, "platelets": 26}
