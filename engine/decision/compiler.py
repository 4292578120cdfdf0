"""Rules -> a durable-rules ruleset (its JSON form). durable-rules does all the matching.

Each rule becomes one pattern over the single patient fact: {"t": "patient"} (a positive test:
a pattern of only negations would also match durable's session-state object and loop) and
the rule's `when`. `any` becomes `$or` inside that pattern, never durable's `any` (which
re-fires with combined bindings). The action name is the rule id.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ..knowledge.rules import Group, Rule, Test

SENTINEL = "$sentinel"  # asserted first in every session, so delete_state is always safe
PATIENT = {"t": "patient"}
# Measured limits of durable-rules 2.0.28 (shared/knowledge/durable-rules.md §1):
MAX_RULES = 512  # above ~512 distinct tests under one shared prefix create_ruleset hangs
MAX_SAME_LAST_TEST = 256  # above 256 rules ending in the same test: error 108

_COMPARE = {"lt": "$lt", "lte": "$lte", "gt": "$gt", "gte": "$gte"}


class CompileError(Exception):
    pass


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


def compile_condition(node: Test | Group) -> dict[str, Any]:
    if isinstance(node, Test):
        return compile_test(node)
    parts = [compile_condition(item) for item in node.items]
    return {"$and" if node.all_ is not None else "$or": parts}


def compile_rule(rule: Rule) -> dict[str, Any]:
    pattern = {"$and": [PATIENT, compile_condition(rule.when)]} if rule.when else PATIENT
    return {"all": [{"m": pattern}], "run": rule.id}


def compile_rules(rules: list[Rule]) -> dict[str, Any]:
    """The ruleset definition: one entry per rule plus the session sentinel."""
    return build_ruleset({rule.id: compile_rule(rule) for rule in rules})


def build_ruleset(rules: dict[str, Any]) -> dict[str, Any]:
    """Add the session sentinel and refuse what durable-rules would hang or fail on."""
    if len(rules) > MAX_RULES:
        raise CompileError(f"{len(rules)} rules: durable-rules hangs above {MAX_RULES} under one prefix")
    ruleset = {SENTINEL: {"all": [{"m": {"t": SENTINEL}}], "run": SENTINEL}, **rules}
    last_tests = Counter(json.dumps(_last_test(body["all"][0]["m"]), sort_keys=True) for body in ruleset.values())
    test, count = last_tests.most_common(1)[0]
    if count > MAX_SAME_LAST_TEST:
        raise CompileError(f"{count} rules end with the same test {test}: durable-rules allows {MAX_SAME_LAST_TEST}")
    return ruleset


def _last_test(pattern: dict[str, Any]) -> Any:
    while isinstance(pattern, dict) and len(pattern) == 1 and next(iter(pattern)) in ("$and", "$or"):
        pattern = next(iter(pattern.values()))[-1]
    return pattern
