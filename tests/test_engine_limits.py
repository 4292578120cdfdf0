"""durable-rules' alpha walk has a fixed stack of 64 nodes (error 303): the compiler's bound
(decision/alpha.py) is exact on a ruleset built to reach it, and the compiler splits rulesets so
that no patient meets it, on hand-made and on generated varied packs."""

import sys

import pytest

import jakcds
from conftest import REPO
from jakcds.decision.alpha import MAX_STACK
from jakcds.decision.compiler import PATIENT, _network, build_ruleset, chunked
from jakcds.decision.session import RuleEngine

sys.path.insert(0, str(REPO / "scripts"))
from generate import random_profiles, varied_pack  # noqa: E402


def absent(count: int) -> dict[str, dict]:
    """Rules each testing that another property is absent: a fact lacking them all makes every
    one of these `$nex` nodes match at once."""
    return {f"R-{i:03d}": {"all": [{"m": {"$and": [PATIENT, {"$nex": {f"x{i}": 1}}]}}], "run": f"R-{i:03d}"} for i in range(count)}


@pytest.mark.parametrize("count", [MAX_STACK, MAX_STACK + 1])
def test_the_bound_is_durable_rules_own(count):
    rules = absent(count)
    assert _network(rules).depth() == count
    engine = RuleEngine([build_ruleset(rules)])
    if count <= MAX_STACK:
        assert engine.run({"t": "patient"}) == frozenset(rules)
    else:
        with pytest.raises(jakcds.EngineError, match="303"):
            engine.run({"t": "patient"})
        assert engine.run({"t": "patient", **{f"x{i}": 1 for i in range(count)}}) == frozenset()  # the session was reset


def test_the_compiler_splits_before_the_stack_overflows():
    rules = absent(3 * MAX_STACK + 1)
    rulesets = chunked([{name: body} for name, body in rules.items()])
    assert len(rulesets) == 4  # 64 per ruleset, the rest in a fourth: each within the bound
    assert all(_network({k: v for k, v in rs.items() if k != "$sentinel"}).depth() <= MAX_STACK for rs in rulesets)
    assert RuleEngine(rulesets).run({"t": "patient"}) == frozenset(rules)


def test_an_or_adds_a_forward_node_per_rule():
    """Forward nodes are never shared: 65 rules whose `$or` ends on one shared test overflow it."""
    rules = {f"R-{i:03d}": {"all": [{"m": {"$and": [PATIENT, {"$or": [{"$nex": {"age": 1}}, {"age": "unknown"}]}, {"r": i}]}}],
                            "run": f"R-{i:03d}"} for i in range(MAX_STACK + 1)}
    assert _network(rules).depth() > MAX_STACK
    with pytest.raises(jakcds.EngineError, match="303"):
        RuleEngine([build_ruleset(rules)]).run({"t": "patient"})
    split = chunked([{name: body} for name, body in rules.items()])
    assert len(split) == 2 and RuleEngine(split).run({"t": "patient", "r": 3}) == {"R-003"}


def test_a_varied_pack_has_no_engine_error(evaluator):
    """A generated pack of 1,000 varied rules (scripts/bench.py runs 3,000 on 10,000 profiles)."""
    big = jakcds.Evaluator(varied_pack(evaluator.pack, 1000))
    errors = []
    for profile in random_profiles(evaluator, 300):
        try:
            big.evaluate(profile)
        except jakcds.EngineError as error:
            errors.append(str(error))
    assert errors == []
