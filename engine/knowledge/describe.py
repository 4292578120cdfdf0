"""Rule conditions in plain words, generated from the rule data (never written twice)."""

from __future__ import annotations

from typing import Any

from .pack import Pack
from .rules import Group, Rule, Test

_COMPARE = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}
_OPPOSITE = {"has": "lacks", "lacks": "has", "lt": "gte", "gte": "lt", "lte": "gt", "gt": "lte"}


def _code_name(pack: Pack, vocabulary: str, code: str) -> str:
    """A code by its vocabulary name (a code the vocabulary lacks, as given)."""
    entry = getattr(pack, vocabulary).entries.get(code)
    return entry.name if entry else code


def describe_test(test: Test, pack: Pack, negate: bool = False) -> str:
    """A test in words, the fact by its name ("disease severity is severe"); negated ("must not
    hold"), its opposite in words."""
    spec = pack.catalogue[test.fact]
    fact = pack.fact_words(test.fact, unit=False)
    op, value = test.op, test.value
    if op in ("eq", "in"):
        shown = str(value).lower() if isinstance(value, bool) else " or ".join(value) if op == "in" else str(value)
        verb = ("neither" if negate else "") if op == "in" else ("not" if negate else "")
        shown = shown.replace(" or ", " nor ") if verb == "neither" else shown
        return f"{fact} is {verb} {shown}".replace("  ", " ")
    if negate:
        op, value = _OPPOSITE.get(op, op), (not value if op == "known" else value)
    if op in ("has", "lacks"):
        name = _code_name(pack, spec.vocabulary, value)
        if test.fact == "condition":
            return f"condition {'is' if op == 'has' else 'is not'} {name}"
        return f"{fact} {'include' if op == 'has' else 'do not include'} {name}"
    if op == "known":
        return f"{fact} is {'recorded' if value else 'not recorded'}"
    unit = pack.fact_names[test.fact].unit if test.fact in pack.fact_names else spec.unit
    return f"{fact} {_COMPARE[op]} {value:g} {unit}".rstrip()


def value_words(fact: str, value: Any, pack: Pack) -> str:
    """A patient's value of a fact as a reader says it: codes by their names, "not recorded"."""
    spec = pack.catalogue.get(fact)
    if value is None:
        return "not recorded"
    if spec is not None and spec.type == "codes":
        codes = value if isinstance(value, list) else [value]
        return ", ".join(_code_name(pack, spec.vocabulary, code) for code in codes) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:g}" if isinstance(value, float) else str(value)


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
