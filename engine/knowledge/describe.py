"""Rule conditions in plain words, generated from the rule data (never written twice)."""

from __future__ import annotations

from typing import Any

from .pack import Pack
from .rules import Group, Rule, Test

_COMPARE = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}
_OPPOSITE = {"has": "lacks", "lacks": "has", "lt": "gte", "gte": "lt", "lte": "gt", "gt": "lte"}


def _code_name(pack: Pack, vocabulary: str, code: str) -> str:
    return getattr(pack, vocabulary).entries[code].name


def describe_test(test: Test, pack: Pack, negate: bool = False) -> str:
    """A test in words; negated ("must not hold"), its opposite in words."""
    spec = pack.catalogue[test.fact]
    fact = test.fact.replace("_", " ")
    op, value = test.op, test.value
    if op in ("eq", "in"):
        shown = str(value).lower() if isinstance(value, bool) else ", ".join(map(repr, value)) if op == "in" else repr(value)
        verb = ("none of" if negate else "one of") if op == "in" else ("not" if negate else "")
        return f"{fact} is {verb} {shown}".replace("  ", " ")
    if negate:
        op, value = _OPPOSITE.get(op, op), (not value if op == "known" else value)
    if op in ("has", "lacks"):
        name = _code_name(pack, spec.vocabulary, value)
        if test.fact == "condition":
            return f"condition {'is' if op == 'has' else 'is not'} {name} (or a narrower one)"
        if op == "has":
            return f"{fact} include {name} (or a narrower one)"
        return f"no {name} (nor a narrower one) among {fact}"
    if op == "known":
        return f"{fact} is {'recorded' if value else 'not recorded'}"
    return f"{fact} {_COMPARE[op]} {value:g} {spec.unit}".rstrip()


def describe_item(node: Test | Group, pack: Pack, negate: bool = False) -> str:
    """A test or a group on one line, 'any of (a; b)'; negated, by De Morgan's laws."""
    if isinstance(node, Test):
        return describe_test(node, pack, negate)
    every = (node.all_ is not None) != negate
    return f"{'all' if every else 'any'} of ({'; '.join(describe_item(i, pack, negate) for i in node.items)})"


def describe_condition(node: Group, pack: Pack, depth: int = 0) -> list[str]:
    """Indented lines: 'all of:' / 'any of:' followed by the tests, nested groups indented."""
    lines = [f"{'  ' * depth}{'all' if node.all_ is not None else 'any'} of:"]
    for item in node.items:
        if isinstance(item, Test):
            lines.append(f"{'  ' * (depth + 1)}- {describe_test(item, pack)}")
        else:
            lines.extend(describe_condition(item, pack, depth + 1))
    return lines


def rule_document(rule: Rule, pack: Pack) -> dict[str, Any]:
    """Everything a reviewer reads about a rule, including its conditions in words."""
    doc = rule.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["file"] = pack.rule_files[rule.id]
    doc["conditions_in_words"] = describe_condition(rule.when, pack) if rule.when else ["always (no condition)"]
    return doc
