"""The output contract, checked on every golden case and every rule example."""

import json
import re

import pytest

import jakcds
from conftest import CASES, WENZEL
from jakcds.review.cases import case_dirs, evaluate_case

EXAMPLES = [ex.patient for rule in jakcds.load_pack().rules for ex in rule.examples]


def results(evaluator):
    """Every golden case's result (JSON and FHIR) and every rule example's."""
    runs = [lambda d=d: evaluate_case(d, evaluator) for d in case_dirs(CASES)]
    runs += [lambda p=p: evaluator.evaluate(p) for p in EXAMPLES]
    for run in runs:
        try:
            yield run()
        except jakcds.InputError:
            continue


def test_every_drug_is_a_candidate_or_excluded_with_a_reason(evaluator, pack):
    for result in results(evaluator):
        drugs = [c.drug for c in result.candidates] + [x.drug for x in result.excluded]
        assert sorted(drugs) == sorted(pack.drugs)
        assert all(x.reasons for x in result.excluded)


def test_citations_everywhere_and_cautions_name_a_fired_rule(evaluator):
    for result in results(evaluator):
        fired = {t.rule for t in result.trace if t.fired}
        for c in result.candidates:
            assert c.citations and c.evidence and c.label_status
            assert [x.rank for x in result.candidates] == list(range(1, len(result.candidates) + 1))
            for caution in c.cautions:  # a rule's caution cites and fired; a built-in (JAKCDS-005) does not cite
                assert bool(caution.citations) is not caution.rule.startswith("JAKCDS-")
                assert caution.rule in fired or caution.rule == "JAKCDS-005"
        for citation in [x for c in result.candidates for x in c.citations]:
            assert citation.source in result.sources
        for reason in [r for x in result.excluded for r in x.reasons]:  # a rule's exclusion cites; a built-in does not
            assert bool(reason.citations) is not reason.rule.startswith("JAKCDS-")
            assert all(c.source in result.sources for c in reason.citations)


def test_ruleset_block_and_model_dump_is_the_document(evaluator):
    result = evaluator.evaluate(WENZEL)
    assert re.fullmatch(r"[0-9a-f]{64}", result.ruleset.sha256) and result.ruleset.version == "0.2.0"
    assert json.loads(result.model_dump_json()) == result.model_dump(mode="json")
    assert result.ruleset.rules_run == len(evaluator.rules) and all(t.fired for t in result.trace)
    entry = next(t for t in result.trace if t.rule == "SEED-RUX-001")
    assert entry.fired and entry.matched == {"comorbidities": ["myelofibrosis", "thrombocytopenia"], "condition": "chilblain_lupus_erythematosus"}


def test_the_installed_pack_is_this_repository_pack(evaluator):
    assert jakcds.evaluator().pack.sha256 == evaluator.pack.sha256, "stale install: run pip install . again"


def test_the_library_accepts_a_patient_model(evaluator):
    patient = evaluator.parse(WENZEL)
    assert isinstance(patient, jakcds.Patient)
    assert evaluator.evaluate(patient).model_dump_json() == evaluator.evaluate(WENZEL).model_dump_json()


@pytest.mark.parametrize("field", ["failed_therapies", "comorbidities"])
def test_empty_and_absent_lists_are_the_same(evaluator, field):
    without = {k: v for k, v in WENZEL.items() if k != field}
    assert evaluator.evaluate({**without, field: []}).model_dump_json() == evaluator.evaluate(without).model_dump_json()


def test_a_shared_rule_cites_the_candidates_own_label(evaluator, pack):
    result = evaluator.evaluate({"condition": "nonsegmental_vitiligo", "age": 38, "failed_therapies": ["phototherapy"]})
    prompt = next(p for p in result.before_starting if p.fact == "lymphocytes")
    assert prompt.drugs == ["tofacitinib"]
    lymphocytes = next(r for r in prompt.rules if r.rule == "LABEL-CLASS-010")
    assert {pack.sources[c.source].product for c in lymphocytes.citations} == {"tofacitinib"}
    rule = next(r for r in pack.rules if r.id == "LABEL-CLASS-010")
    assert len({c.source for c in rule.citations}) > 1


def test_the_json_is_written_from_plain_data_and_is_the_contract(evaluator):
    """evaluate_json writes the assembled data with orjson, no Result built: byte for byte the
    Result's own JSON (compact and indented), and it validates as a Result."""
    golden = [json.loads(p.read_text()) for p in sorted(CASES.glob("*/patient.json"))]
    checked = 0
    for profile in golden + EXAMPLES:
        try:
            result = evaluator.evaluate(profile)
        except jakcds.InputError:
            continue
        assert evaluator.evaluate_json(profile) == result.model_dump_json().encode()
        indented = evaluator.evaluate_json(profile, indent=True)
        assert indented == result.model_dump_json(indent=2).encode()
        assert jakcds.Result.model_validate_json(indented) == result
        checked += 1
    assert checked > 400
