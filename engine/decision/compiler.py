"""Rules -> a durable-rules ruleset (its JSON form). durable-rules does all the matching.

Each rule becomes one pattern over the single patient fact: {"t": "patient"} (a positive test:
a pattern of only negations would also match durable's session-state object and loop) and
the rule's `when`. `any` becomes `$or` inside that pattern, never durable's `any` (which
re-fires with combined bindings). The action name is the rule id.

Probes are extra durable rules whose firing the result reads (so durable-rules decides them too):
- RULE#i, for each part (an item of its top-level `all`) of a proposal or a relaxed rule: which
  part failed, for the why-not ("needs age >= 12; patient is 11") and what to confirm;
- RULE~, the proposal or off-label exclusion with every test of a single value relaxed to "holds
  or the value is unknown", and "condition has X" to "or the condition given is X's direct parent"
  (vitiligo of unrecorded type for nonsegmental vitiligo): a proposal that fires only relaxed is
  a conditional candidate (confirm severity), an off-label exclusion that fires only relaxed must
  be confirmed not to hold (age).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..knowledge.pack import PackError
from ..knowledge.rules import Group, Rule, Test
from .alpha import MAX_STACK, AlphaNetwork
from .facts import GIVEN_CONDITION

SENTINEL = "$sentinel"  # asserted first in every session, so delete_state is always safe
SENTINEL_RULE = {"all": [{"m": {"t": SENTINEL}}], "run": SENTINEL}
PATIENT = {"t": "patient"}
# Measured limits of durable-rules 2.0.28 (shared/knowledge/durable-rules.md §1; the test counts
# re-measured for issue 24: 512 distinct thresholds in one rule's `any` or over 512 rules build in
# 0.04 s, 513 hang; 15 all/any in one pattern build, 16 fail with error 113):
MAX_RULES = 512  # above 512 rules (each a distinct test) create_ruleset hangs
MAX_TESTS = 512  # above 512 distinct tests in one ruleset (under its shared prefix) create_ruleset hangs
MAX_GROUPS = 15  # above 15 all/any in one pattern: error 113
MAX_SAME_LAST_TEST = 256  # above 256 rules ending in the same test: error 108
CHUNK = 400  # durable rules per ruleset: inside the first limit (the others are kept while packing)

_COMPARE = {"lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}
# tests of one value, which a profile may leave unknown (code lists are read as given; `known`
# tests are about unknown values already)
RELAXABLE = ("eq", "in", "lt", "lte", "gt", "gte")


def part_probe(rule_id: str, index: int) -> str:
    return f"{rule_id}#{index}"


def relaxed_probe(rule_id: str) -> str:
    return f"{rule_id}~"


def relaxable(rule: Rule) -> bool:
    """A rule that has a relaxed probe: a proposal or an off-label exclusion with a test to relax."""
    probed = rule.kind == "propose" or (rule.kind == "exclude" and rule.scope == "off_label")
    return probed and any(t.op in RELAXABLE or (t.fact, t.op) == ("condition", "has") for t in rule.when.tests()) if rule.when else False


class CompileError(PackError):
    """A pack durable-rules would hang or fail on: refused like any invalid pack (CLI exit 3)."""


def compile_test(test: Test) -> dict[str, Any]:
    op, value, fact = test.op, test.value, test.fact
    if op == "has":
        return {f"{fact}.{value}": True}
    if op == "lacks":
        return {"$nex": {f"{fact}.{value}": 1}}
    if op == "eq":
        return {fact: value}
    if op == "in":
        return {"$or": [{fact: item} for item in value]}
    if op == "known":
        return {"$ex" if value else "$nex": {fact: 1}}
    return {_COMPARE[op]: {fact: value}}


def _unknown(test: Test, broader: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """Patterns for "the patient's value could still make this test hold"."""
    if (test.fact, test.op) == ("condition", "has"):
        return [{GIVEN_CONDITION: parent} for parent in broader.get(test.value, [])]
    if test.op not in RELAXABLE:
        return []
    return [{"$nex": {test.fact: 1}}] + ([{test.fact: "unknown"}] if isinstance(test.value, (str, list)) else [])


def compile_condition(node: Test | Group, broader: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """A condition as a durable pattern; relaxed (see the module doc) when given `broader`:
    each diagnosis code -> its direct parents."""
    if isinstance(node, Test):
        unknown = _unknown(node, broader) if broader is not None else []
        return {"$or": [compile_test(node), *unknown]} if unknown else compile_test(node)
    parts = [compile_condition(item, broader) for item in node.items]
    return {"$and" if node.all_ is not None else "$or": parts}


def _durable_rule(name: str, condition: Test | Group | None, broader: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    pattern = {"$and": [PATIENT, compile_condition(condition, broader)]} if condition else PATIENT
    return {"all": [{"m": pattern}], "run": name}


def _compiled(rule: Rule, broader: Mapping[str, list[str]]) -> dict[str, Any]:
    """A rule and its probes, as durable rules; refused if they alone would fail or hang durable-rules."""
    compiled = {rule.id: _durable_rule(rule.id, rule.when)}
    if rule.kind == "propose" or relaxable(rule):
        compiled.update({part_probe(rule.id, i): _durable_rule(part_probe(rule.id, i), part) for i, part in enumerate(rule.parts)})
    if relaxable(rule):
        compiled[relaxed_probe(rule.id)] = _durable_rule(relaxed_probe(rule.id), rule.when, broader)
    groups = max(_groups(body["all"][0]["m"]) for body in compiled.values())
    if groups > MAX_GROUPS:
        raise CompileError(f"{rule.id}: its condition compiles to {groups} nested all/any (relaxed probes included); durable-rules fails above {MAX_GROUPS}")
    tests = len(_tests(compiled))
    if tests > MAX_TESTS:
        raise CompileError(f"{rule.id}: {tests} distinct tests (probes included); durable-rules hangs above {MAX_TESTS} in one ruleset")
    return compiled


def compile_rules(rules: list[Rule], broader: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """The ruleset definitions: every rule and its probes, in rulesets of at most CHUNK durable
    rules each, with the session sentinel (`broader`: each diagnosis code -> its direct parents,
    for the relaxed probes)."""
    return chunked([_compiled(rule, broader or {}) for rule in rules])


def chunked(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups of durable rules (a rule with its probes) packed in order into rulesets of at most
    CHUNK rules, fewer than MAX_SAME_LAST_TEST of them ending in one test, and whose alpha
    network no fact can walk deeper than durable-rules' stack (decision/alpha.py: error 303 on
    some patients otherwise): a pack of thousands of rules is several rulesets, each inside
    durable-rules' limits."""
    chunks: list[dict[str, Any]] = [{}]
    last: Counter[str] = Counter()
    tests: set[str] = set()
    network = AlphaNetwork()
    for group in groups:
        ends = Counter(_last_key(body) for body in group.values())
        more = _tests(group)
        full = (len(chunks[-1]) + len(group) > CHUNK or any(last[k] + n >= MAX_SAME_LAST_TEST for k, n in ends.items())
                or len(tests | more) > MAX_TESTS)
        if not chunks[-1] or full or _too_deep(network, group):
            if chunks[-1]:
                chunks.append({})
                last, tests = Counter(), set()
            network = _network(group)
            if network.depth() > MAX_STACK:
                raise CompileError(f"rule {next(iter(group))}: durable-rules' walk of its tests may need "
                                   f"{network.depth()} stack entries, more than its {MAX_STACK} (error 303)")
        chunks[-1].update(group)
        last.update(ends)
        tests |= more
    return [build_ruleset(chunk) for chunk in chunks]


def _tests(rules: dict[str, Any]) -> set[str]:
    """The distinct tests (leaves of the patterns) of some durable rules."""
    found, stack = set(), [body["all"][0]["m"] for body in rules.values()]
    while stack:
        pattern = stack.pop()
        if isinstance(pattern, dict) and len(pattern) == 1 and next(iter(pattern)) in ("$and", "$or"):
            stack.extend(next(iter(pattern.values())))
        else:
            found.add(json.dumps(pattern, sort_keys=True))
    return found


def _groups(pattern: Any) -> int:
    """How many all/any (`$and`/`$or`) one pattern holds."""
    if isinstance(pattern, dict) and len(pattern) == 1 and next(iter(pattern)) in ("$and", "$or"):
        return 1 + sum(_groups(item) for item in next(iter(pattern.values())))
    return 0


def _network(rules: dict[str, Any]) -> AlphaNetwork:
    """The alpha network of a ruleset holding these rules (and the sentinel)."""
    network = AlphaNetwork()
    for body in (SENTINEL_RULE, *rules.values()):
        network.add(body)
    return network


def _too_deep(network: AlphaNetwork, group: dict[str, Any]) -> bool:
    """Adds the group to the network; whether the walk may now overflow durable-rules' stack
    (then the network is spent: the group starts a new one)."""
    for body in group.values():
        network.add(body)
    return network.depth() > MAX_STACK


def _last_key(body: dict[str, Any]) -> str:
    return json.dumps(_last_test(body["all"][0]["m"]), sort_keys=True)


def build_ruleset(rules: dict[str, Any]) -> dict[str, Any]:
    """Add the session sentinel and refuse what durable-rules would hang or fail on."""
    if len(rules) > MAX_RULES:
        raise CompileError(f"{len(rules)} rules: durable-rules hangs above {MAX_RULES} under one prefix")
    ruleset = {SENTINEL: SENTINEL_RULE, **rules}
    tests = len(_tests(ruleset))
    if tests > MAX_TESTS:
        raise CompileError(f"{tests} distinct tests in one ruleset: durable-rules hangs above {MAX_TESTS}")
    last_tests = Counter(_last_key(body) for body in ruleset.values())
    test, count = last_tests.most_common(1)[0]
    if count > MAX_SAME_LAST_TEST:
        raise CompileError(f"{count} rules end with the same test {test}: durable-rules allows {MAX_SAME_LAST_TEST}")
    return ruleset


def _last_test(pattern: dict[str, Any]) -> Any:
    while isinstance(pattern, dict) and len(pattern) == 1 and next(iter(pattern)) in ("$and", "$or"):
        pattern = next(iter(pattern.values()))[-1]
    return pattern
