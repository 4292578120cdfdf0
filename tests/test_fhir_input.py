"""FHIR R4 input: real HL7 examples, the mapping rules, and what is listed as unmapped."""

import copy
import datetime
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jakcds
from conftest import CASES, RULES
from fhir_r4.validate import EXAMPLES, r4_schema_errors
from jakcds.ehr.chart import evaluate_chart
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
        (bundle(DM, {**DM, "id": "x", "clinicalStatus": "active"}), "entry.1.resource.clinicalStatus"),
        (bundle({"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"}), "more than one patient"),
        ({"resourceType": "NoSuchThing"}, "NoSuchThing"),
        ({"patient": ["not a resource"]}, "expected a FHIR resource"),
    ]:
        with pytest.raises(jakcds.InputError, match=message) as error:
            jakcds.evaluate_fhir(bad, as_of=AS_OF, rules=RULES)
        assert "\n" not in str(error.value)


@settings(max_examples=25, deadline=None)
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
    # an element whose JSON name is not its model attribute ("class" is Encounter.class_fhir) is checked too
    (lambda b: b["entry"].append({"resource": {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "userSelected": "true"}}}),
     "resource.class.userSelected: a FHIR boolean is JSON true or false, got 'true'"),
    (lambda b: b["entry"].append({"resource": medicine("m", "methotrexate", "stopped")}), None),
    (lambda b: b["entry"][0]["resource"].update(extension=_deep(3000)), "nested too deeply"),
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


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(MUTATED), st.data())
def test_any_mutation_of_a_valid_chart_gives_a_result_or_an_input_error(directory, data):
    chart = json.loads((directory / "bundle.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        chart = _mutations(data.draw, chart)
    try:
        jakcds.evaluate_fhir(chart, condition=None, as_of=AS_OF, rules=RULES)
    except jakcds.InputError as error:
        assert "\n" not in str(error)
