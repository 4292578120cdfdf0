"""durable-rules pitfalls (shared/knowledge/durable-rules.md), each guarded and tested."""

import shutil
import threading

import pytest
import yaml

import jakcds
from jakcds.knowledge.pack import write_manifest
from conftest import RULES, WENZEL, fired
from jakcds.decision.compiler import CHUNK, MAX_RULES, CompileError, build_ruleset, compile_rules
from jakcds.decision.facts import build_fact
from jakcds.decision.patient import parse_patient
from jakcds.decision.session import RuleEngine


def test_no_background_threads(evaluator):
    before = threading.active_count()
    for _ in range(20):
        evaluator.evaluate(WENZEL)
    assert threading.active_count() == before


@pytest.mark.slow  # 1,500 evaluations
def test_every_session_is_deleted(evaluator):
    """durable-rules allows 1024 live sessions per ruleset; 1500 evaluations must all work."""
    first = evaluator.evaluate(WENZEL).model_dump_json()
    for _ in range(1500):
        assert evaluator.evaluate(WENZEL).model_dump_json() == first


def test_engine_errors_are_surfaced_as_engine_errors(pack):
    """durable-rules refuses a number in exponent form (error 204): an EngineError, and the
    session is still deleted (the next evaluation works)."""
    engine = RuleEngine(compile_rules(pack.active()))
    fact = build_fact(parse_patient(WENZEL, pack), pack)
    with pytest.raises(jakcds.EngineError, match="durable-rules"):
        engine.run({**fact, "platelets": 1e-05})
    assert engine.run(fact) == RuleEngine(compile_rules(pack.active())).run(fact)


def test_unknown_operators_are_rejected_on_load(tmp_path):
    """durable-rules takes `$ne`, `$contains` or a typo as a field name and never matches."""
    for op in ("ne", "contains", "not"):
        pack = _copy_pack(tmp_path / op)
        _edit_rule(pack / "seed" / "ruxolitinib.yaml", "SEED-RUX-002", {"when": {"all": [{"fact": "platelets", op: 50}]}})
        with pytest.raises(jakcds.PackError, match=rf"seed/ruxolitinib.yaml: SEED-RUX-002: when.all.0.{op}: Extra inputs"):
            jakcds.load_pack(pack)


def test_types_are_normalised_before_assertion(evaluator):
    """120 and 120.0 (and 120000 /uL) are the same fact: identical results, no duplicate-fact error."""
    as_int = evaluator.evaluate({**WENZEL, "labs": {"platelets": 120}})
    as_float = evaluator.evaluate({**WENZEL, "labs": {"platelets": 120.0}})
    assert as_int.model_dump_json() == as_float.model_dump_json()
    assert as_int.patient["labs"]["platelets"] == 120 and isinstance(as_int.patient["labs"]["platelets"], int)


def test_any_group_fires_once(evaluator):
    """A `$or` whose branches both hold fires its action twice in durable-rules; the trace has it once."""
    result = evaluator.evaluate({**WENZEL, "comorbidities": ["myelofibrosis", "polycythemia_vera"]})
    assert [t.rule for t in result.trace].count("LABEL-RUX-024") == 1
    ruxolitinib = result.candidates[0]
    assert [c.rule for c in ruxolitinib.cautions].count("LABEL-RUX-024") == 1


def test_a_large_pack_is_split_into_rulesets_inside_durables_limits(pack):
    """One ruleset above 512 rules hangs durable-rules and 256 rules ending in the same test fail
    (error 108): 3,000 rules that all end in the same test compile into rulesets of fewer than 256
    each, and run."""
    rule = next(r for r in pack.rules if r.when is None)
    many = [rule.model_copy(update={"id": f"X{chr(65 + i // 1000)}-{i % 1000:03d}"}) for i in range(3000)]
    rulesets = compile_rules(many)
    assert len(rulesets) == 12 and all(len(r) <= CHUNK + 1 for r in rulesets)
    fact = build_fact(parse_patient(WENZEL, pack), pack)
    assert len(RuleEngine(rulesets).run(fact)) == 3000


def test_one_ruleset_over_the_limits_is_refused(pack):
    rule = next(r for r in pack.rules if r.when is None)
    with pytest.raises(CompileError, match="hangs"):
        build_ruleset({f"X-{i:03d}": {"all": [{"m": {"t": "patient"}}], "run": "x"} for i in range(MAX_RULES + 1)})
    with pytest.raises(CompileError, match="end with the same test"):
        build_ruleset({f"X-{i:03d}": {"all": [{"m": {"t": "patient"}}], "run": "x"} for i in range(300)})
    assert rule  # the shipped pack has a rule without conditions (a standing caution)


def test_draft_rules_run_only_when_asked(tmp_path):
    pack = _copy_pack(tmp_path / "p")
    _edit_rule(pack / "seed" / "ruxolitinib.yaml", "SEED-RUX-004", {"status": "draft"})
    default = jakcds.evaluator(pack).evaluate(WENZEL)
    drafts = jakcds.evaluator(pack, include_draft=True).evaluate(WENZEL)
    assert "SEED-RUX-004" not in fired(default) and "SEED-RUX-004" in fired(drafts)
    assert not default.ruleset.drafts_included and drafts.ruleset.drafts_included
    assert default.ruleset.sha256 != jakcds.evaluate(WENZEL).ruleset.sha256


def _copy_pack(path):
    shutil.copytree(RULES, path)
    return path


def _edit_rule(file, rule_id, changes):
    doc = yaml.safe_load(file.read_text())
    for rule in doc["rules"]:
        if rule["id"] == rule_id:
            rule.update(changes)
    file.write_text(yaml.safe_dump(doc, sort_keys=False))
    write_manifest(file.parent.parent)  # as a reviewer would after approving the change


def test_a_combination_caution_names_the_patients_medicine():
    """Review E-C3: which of the patient's medicines the combination caution is about."""
    result = jakcds.evaluate({"age": 30, "sex": "male", "condition": "alopecia_areata", "severity": "severe",
                              "medications": ["dupilumab", "aspirin"]}, rules=RULES)
    caution = next(c for c in result.candidates[0].cautions if c.rule == "LABEL-BAR-008")
    assert caution.patient == ["Dupilumab"]
