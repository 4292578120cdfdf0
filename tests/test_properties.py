"""Hypothesis properties: list order never matters, equivalent units agree, output is stable."""

from hypothesis import given, settings
from hypothesis import strategies as st

import jakcds
from conftest import RULES, examples
from jakcds.knowledge.catalogue import BOOLS, ENUMS

EVALUATOR = jakcds.evaluator(RULES)
PACK = EVALUATOR.pack
SKIN = sorted(code for code, closure in PACK.diagnoses.closures.items() if "skin_disease" in closure)
DIAGNOSES = sorted(PACK.diagnoses.entries)
TREATMENTS = sorted(PACK.treatments.entries)

# a plausible value of each lab, in its default unit (a new lab in the pack must be added here)
LAB_VALUES = {
    "platelets": st.integers(0, 600),
    "lymphocytes": st.integers(0, 5000),
    "neutrophils": st.integers(0, 10000),
    "hemoglobin": st.integers(40, 200).map(lambda tenths: tenths / 10),
    "egfr": st.integers(0, 150),
}
assert set(LAB_VALUES) == set(PACK.labs), sorted(set(PACK.labs) ^ set(LAB_VALUES))


def _coherent(patient: dict) -> bool:
    return patient.get("sex") != "male" or not (patient.get("pregnant") or patient.get("breastfeeding"))


# every fact the rules read, each optional (absent = unknown)
patients = st.fixed_dictionaries(
    {"condition": st.sampled_from(SKIN)},
    optional={
        "age": st.integers(0, 100),
        "sex": st.sampled_from(ENUMS["sex"]),
        "severity": st.sampled_from(ENUMS["severity"]),
        "failed_therapies": st.lists(st.sampled_from(TREATMENTS), max_size=4),
        "contraindicated_therapies": st.lists(st.sampled_from(TREATMENTS), max_size=2),
        "comorbidities": st.lists(st.sampled_from(DIAGNOSES), max_size=4),
        "medications": st.lists(st.sampled_from(TREATMENTS), max_size=3),
        "labs": st.fixed_dictionaries({}, optional=LAB_VALUES),
        "weight_kg": st.integers(20, 150),
        "bsa_percent": st.integers(0, 100),
        "cardiovascular_risk_factors": st.integers(0, 4),
        **{fact: st.sampled_from(ENUMS[fact]) for fact in ENUMS if fact not in ("sex", "severity")},
        **{fact: st.booleans() for fact in BOOLS},
    },
).filter(_coherent)
LISTS = ("failed_therapies", "contraindicated_therapies", "comorbidities", "medications")


@settings(max_examples=examples(150), deadline=None)
@given(patients, st.randoms(use_true_random=False))
def test_list_order_and_duplicates_never_change_the_result(patient, rng):
    shuffled = dict(reversed(list(patient.items())))
    for key in LISTS:
        if key in shuffled:
            items = shuffled[key] + shuffled[key][:1]
            rng.shuffle(items)
            shuffled[key] = items
    assert EVALUATOR.evaluate(shuffled).model_dump_json() == EVALUATOR.evaluate(patient).model_dump_json()


@settings(max_examples=examples(150), deadline=None)
@given(patients, st.integers(0, 2_000_000), st.sampled_from(["/uL", "/mm3", "cells/uL", "cells/mm3"]))
def test_equivalent_units_give_identical_results(patient, per_microlitre, unit):
    canonical = {**patient, "labs": {"platelets": per_microlitre / 1000}}
    converted = {**patient, "labs": {"platelets": {"value": per_microlitre, "unit": unit}}}
    thousands = {**patient, "labs": {"platelets": {"value": per_microlitre / 1000, "unit": "10^3/uL"}}}
    expected = EVALUATOR.evaluate(canonical).model_dump_json()
    assert EVALUATOR.evaluate(converted).model_dump_json() == expected
    assert EVALUATOR.evaluate(thousands).model_dump_json() == expected


@settings(max_examples=examples(100), deadline=None)
@given(patients)
def test_the_same_input_gives_byte_identical_output(patient):
    first = EVALUATOR.evaluate(patient).model_dump_json(indent=2)
    for _ in range(2):
        assert EVALUATOR.evaluate(patient).model_dump_json(indent=2) == first


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
FIELDS = sorted(jakcds.Patient.model_fields) + ["colour"]


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6), st.sampled_from(SKIN))
def test_any_input_gives_a_result_or_a_one_line_input_error(patient, condition):
    """Bad input is never silent and never a crash: a Result, or an InputError on one line."""
    patient = {"condition": condition, **patient}
    try:
        EVALUATOR.evaluate(patient)
    except jakcds.InputError as error:
        assert str(error) and "\n" not in str(error)


@settings(max_examples=examples(150), deadline=None)
@given(patients)
def test_a_critical_finding_never_ranks_above_a_candidate_without_one(patient):
    critical = [any(c.severity == "critical" for c in cand.cautions) for cand in EVALUATOR.evaluate(patient).candidates]
    assert critical == sorted(critical), critical


DRUGS = sorted(PACK.drugs)
RULE = {rule.id: rule for rule in PACK.rules}


@settings(max_examples=examples(150), deadline=None)
@given(patients, st.sampled_from(DRUGS), st.sampled_from(["failed_therapies", "contraindicated_therapies"]))
def test_a_drug_recorded_as_failed_is_never_proposed_again(patient, drug, field):
    result = EVALUATOR.evaluate({**patient, field: [*patient.get(field, []), drug]})
    assert drug not in [c.drug for c in result.candidates]
    reasons = next(x.reasons for x in result.excluded if x.drug == drug)
    assert reasons[0].rule == "JAKCDS-004"


# a normal value for each fact the result may ask for
ANSWERS = {"platelets": 250, "lymphocytes": 2000, "neutrophils": 4000, "hemoglobin": 14, "egfr": 95,
           "tb_status": "negative", "hepatitis_b": "negative", "hepatitis_c": "negative", "cyp2c9": "normal",
           "cardiovascular_risk_factors": 0, "smoking": "never", "immunizations_up_to_date": True}


def _answer(patient: dict, fact: str) -> dict:
    if fact in PACK.labs:
        return {**patient, "labs": {**patient.get("labs", {}), fact: ANSWERS[fact]}}
    return {**patient, fact: ANSWERS[fact]}


@settings(max_examples=examples(150), deadline=None)
@given(patients, st.data())
def test_answering_a_prompt_removes_it_and_adds_none(patient, data):
    before = {p.fact for p in EVALUATOR.evaluate(patient).before_starting}
    if not before:
        return
    fact = data.draw(st.sampled_from(sorted(before)))
    after = {p.fact for p in EVALUATOR.evaluate(_answer(patient, fact)).before_starting}
    assert after <= before - {fact}


@settings(max_examples=examples(100), deadline=None)
@given(patients)
def test_no_fact_is_asked_twice_and_no_candidate_repeats_a_prompt(patient):
    result = EVALUATOR.evaluate(patient)
    facts = [p.fact for p in result.before_starting]
    assert len(facts) == len(set(facts))
    asking = {r.rule for p in result.before_starting for r in p.rules}
    assert not asking & {caution.rule for c in result.candidates for caution in c.cautions}


def _unknown(patient: dict, fact: str) -> bool:
    return fact not in patient and fact not in patient.get("labs", {})


@settings(max_examples=examples(150), deadline=None)
@given(patients)
def test_a_conditional_candidate_waits_only_on_what_the_profile_lacks(patient):
    """Conditional: each fact to confirm is unknown (or the condition was given too broadly), and
    conditional candidates rank below the unconditional ones of the same risk and label status."""
    result = EVALUATOR.evaluate(patient)
    for candidate in result.candidates:
        assert candidate.conditional == bool(candidate.confirm)
        for item in candidate.confirm:
            assert all(fact == "condition" or _unknown(patient, fact) for fact in item.facts), item
    keys = [(any(c.severity == "critical" for c in cand.cautions), cand.label_status, cand.conditional) for cand in result.candidates]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1] == "off_label", k[2]))


VALUES = {"severity": ["mild", "moderate", "severe"], "age": [11, 16, 40, 70], "weight_kg": [35, 60]}


@settings(max_examples=examples(150), deadline=None)
@given(patients, st.data())
def test_confirming_a_fact_decides_each_candidate_that_waited_on_it(patient, data):
    """Recording a fact a conditional candidate waits on either makes it unconditional or removes
    it with a why-not; it never leaves it waiting on that fact."""
    result = EVALUATOR.evaluate(patient)
    waiting = {fact for c in result.candidates for item in c.confirm for fact in item.facts if fact in VALUES}
    if not waiting:
        return
    fact = data.draw(st.sampled_from(sorted(waiting)))
    after = EVALUATOR.evaluate({**patient, fact: data.draw(st.sampled_from(VALUES[fact]))})
    assert not any(fact in item.facts for c in after.candidates for item in c.confirm)


@settings(max_examples=examples(100), deadline=None)
@given(patients)
def test_every_why_not_names_the_decision(patient):
    """A drug not suggested: JAKCDS-001 alone (no proposal for the condition concerns it), or the
    failed proposals with their unmet tests and the patient's values, or the exclusions."""
    for x in EVALUATOR.evaluate(patient).excluded:
        rules = [r.rule for r in x.reasons]
        assert rules and ("JAKCDS-001" not in rules or rules == ["JAKCDS-001"])
        for reason in x.reasons:
            assert reason.rule.startswith("JAKCDS-") or reason.unmet or RULE[reason.rule].kind == "exclude"
            for unmet in reason.unmet:
                assert unmet.needs in reason.message and set(unmet.patient) <= set(RULE[reason.rule].facts)


@settings(max_examples=examples(60), deadline=None)
@given(patients)
def test_explain_and_the_cards_agree_with_the_result(patient):
    from jakcds.decision.result import BUILT_IN
    from jakcds.ehr.cards import patient_view
    from jakcds.review.explain import explain

    result = EVALUATOR.evaluate(patient)
    fired = {t.rule for t in result.trace}
    for drug in DRUGS:
        doc = explain(EVALUATOR, patient, drug)
        candidate = next((c for c in result.candidates if c.drug == drug), None)
        assert doc["status"] == ("candidate" if candidate else "excluded")
        assert doc["rank"] == (candidate.rank if candidate else None)
        assert {r["rule"] for r in doc["rules"] if r["fired"]} == {r.id for r in EVALUATOR.rules if drug in r.drugs} & fired
        for reason in doc["reasons"]:  # a failed proposal: explain shows a test that does not hold
            if reason["unmet"]:
                assert not all(t["holds"] for r in doc["rules"] if r["rule"] == reason["rule"] for t in r["tests"])
    titles = BUILT_IN | {r.id: r.title for r in PACK.rules}
    cards = patient_view(result, result.condition_name, titles)
    carded = [c for c in result.candidates if not c.beside_on_label]  # off-label beside on-label: no card
    shown = [card["source"]["topic"]["code"] for card in cards[: len(carded)]]
    assert shown == [c.rules[0] for c in carded]
    order = ["info", "warning", "critical"]
    for card, candidate in zip(cards, carded):
        severities = [c.severity for c in candidate.cautions] + (["warning"] if candidate.conditional else [])
        assert card["indicator"] == max(severities, key=order.index, default="info")


# The review's E-D1 and E-D2 (issue 23): the off-label bar, and one starting dose.
RULES_BY_ID = {rule.id: rule for rule in PACK.rules}
ON_LABEL = [r for r in PACK.active() if r.kind == "propose" and r.label_status == "on_label"]
BAR_FACTS = {"severity", "failed_or_contraindicated_therapies"}  # what the bar is: severity and prior therapy
bar_patients = st.fixed_dictionaries(
    {"condition": st.sampled_from(SKIN), "age": st.integers(18, 90)},
    optional={
        "severity": st.sampled_from(["mild", "moderate", "severe"]),
        "failed_therapies": st.lists(st.sampled_from(TREATMENTS), max_size=3),
        "contraindicated_therapies": st.lists(st.sampled_from(TREATMENTS), max_size=1),
    },
)


def _meets(test, patient: dict) -> bool | None:
    """Whether the patient meets one test of an on-label bar (None: the patient does not say)."""
    if test.fact == "severity":
        if patient.get("severity") is None:
            return None
        return patient["severity"] in (test.value if test.op == "in" else [test.value])
    tried = {ancestor for code in patient.get("failed_therapies", []) + patient.get("contraindicated_therapies", [])
             for ancestor in PACK.treatments.closures[code]}
    return (test.value in tried) == (test.op == "has")


def _on_label_bars(condition: str) -> list[list]:
    """The severity and prior-therapy tests of each on-label proposal for this condition."""
    closure = PACK.diagnoses.closures[condition]
    return [[t for t in r.when.tests() if t.fact in BAR_FACTS] for r in ON_LABEL
            if any(t.fact == "condition" and t.value in closure for t in r.when.tests())]


@settings(max_examples=400, deadline=None)
@given(bar_patients)
def test_the_off_label_bar_is_never_below_the_on_label_bar(patient):
    """An off-label candidate only where the patient meets the severity and prior-therapy bar of
    an on-label proposal for the same condition (where the pack has one); an unknown severity only
    as a conditional candidate that asks for it."""
    bars = _on_label_bars(patient["condition"])
    result = EVALUATOR.evaluate(patient)
    for candidate in (c for c in result.candidates if c.label_status == "off_label"):
        if not bars:
            continue
        verdicts = [[_meets(t, patient) for t in bar] for bar in bars]
        assert any(all(v is not False for v in bar) for bar in verdicts), (candidate.drug, patient)
        if not any(all(v for v in bar) for bar in verdicts):
            assert candidate.conditional and any("severity" in item.facts for item in candidate.confirm), (candidate.drug, patient)


dose_patients = st.fixed_dictionaries(
    {"condition": st.sampled_from(SKIN)},
    optional={
        "age": st.integers(18, 90),
        "severity": st.sampled_from(["mild", "moderate", "severe"]),
        "failed_therapies": st.lists(st.sampled_from(TREATMENTS), max_size=3),
        "comorbidities": st.lists(st.sampled_from(DIAGNOSES), max_size=4),
        "medications": st.lists(st.sampled_from(TREATMENTS), max_size=3),
        "labs": st.fixed_dictionaries({}, optional={"platelets": st.integers(20, 400), "egfr": st.integers(5, 120)}),
        "child_pugh": st.sampled_from(["A", "B", "C"]),
        "cyp2c19": st.sampled_from(["poor", "normal"]),
    },
)


@settings(max_examples=400, deadline=None)
@given(dose_patients)
def test_a_candidate_never_reads_two_starting_doses(patient):
    """At most one stated dose per candidate, and none beside a caution that changes or withholds
    the dose without stating one."""
    try:
        result = EVALUATOR.evaluate(patient)
    except jakcds.InputError:
        return
    for candidate in result.candidates:
        rules = [RULES_BY_ID[c.rule] for c in candidate.cautions if c.rule in RULES_BY_ID]
        doses = {r.dose for r in rules if r.dose}
        assert len(doses) <= 1, (candidate.drug, doses)
        assert not (doses and any(r.changes_dose for r in rules)), (candidate.drug, patient)


INTERACTING = sorted(
    code for code, closure in PACK.treatments.closures.items()
    if any(PACK.treatments.entries[c].interaction for c in closure - {code}) and "jak_inhibitor" not in closure
)
RANK = {"info": 0, "warning": 1, "critical": 2}


def _worst(result) -> dict[str, int]:
    return {c.drug: max((RANK[x.severity] for x in c.cautions), default=-1) for c in result.candidates}


@settings(max_examples=150, deadline=None)
@given(patients, st.sampled_from(INTERACTING))
def test_adding_a_medicine_of_an_interaction_class_never_removes_a_caution(patient, medicine):
    """Issue 22: a caution rule that fired still fires, and no candidate's worst caution softens."""
    before = EVALUATOR.evaluate(patient)
    after = EVALUATOR.evaluate({**patient, "medications": [*patient.get("medications", []), medicine]})
    fired = lambda result: {t.rule for t in result.trace if t.kind == "caution"}  # noqa: E731
    assert fired(before) <= fired(after)
    worst_after = _worst(after)
    assert all(worst_after.get(drug, 3) >= worst for drug, worst in _worst(before).items())


def test_the_interacting_medicines_include_those_the_labels_name():
    assert {"clarithromycin", "itraconazole", "carbamazepine", "probenecid", "fluconazole", "rifampin"} <= set(INTERACTING)
