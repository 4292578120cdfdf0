"""Why a drug is or is not suggested: every rule that concerns it, whether it fired, and each of
its tests with the patient's value and whether it held.

Whether a single test held is decided by durable-rules too: each test of each rule becomes a
rule of its own in a separate explain ruleset (built on first use), so no second matcher exists.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from ..decision.compiler import PATIENT, chunked, compile_test
from ..decision.evaluate import Evaluator
from ..decision.facts import build_fact, observed
from ..decision.result import Result
from ..decision.session import RuleEngine
from ..knowledge.describe import describe_test

_engines: weakref.WeakKeyDictionary[Evaluator, RuleEngine] = weakref.WeakKeyDictionary()


def _test_engine(ev: Evaluator) -> RuleEngine:
    """One durable rule per (rule, test): named RULE#index, in Group.tests() order."""
    if ev not in _engines:
        groups = [
            {f"{rule.id}#{i}": {"all": [{"m": {"$and": [PATIENT, compile_test(test)]}}], "run": f"{rule.id}#{i}"}
             for i, test in enumerate(rule.when.tests())}
            for rule in ev.rules
            if rule.when
        ]
        _engines[ev] = RuleEngine(chunked(groups))
    return _engines[ev]


def explain(ev: Evaluator, data: dict[str, Any], drug: str) -> dict[str, Any]:
    if drug not in ev.pack.drugs:
        raise ValueError(f"unknown drug {drug!r} (known: {', '.join(ev.pack.drugs)})")
    return _report(ev, _Evidence.of(ev, data), drug)


def explain_each(ev: Evaluator, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`explain` for every drug of the pack, the patient evaluated once."""
    evidence = _Evidence.of(ev, data)
    return {drug: _report(ev, evidence, drug) for drug in ev.pack.drugs}


@dataclass(frozen=True)
class _Evidence:
    """What explaining any drug reads: the result, the tests that held and the patient's values."""

    result: Result
    held: frozenset[str]
    values: dict[str, Any]

    @classmethod
    def of(cls, ev: Evaluator, data: dict[str, Any]) -> _Evidence:
        patient = ev.parse(data)
        return cls(ev.run(patient), _test_engine(ev).run(build_fact(patient, ev.pack)), observed(patient, ev.pack))


def _report(ev: Evaluator, evidence: _Evidence, drug: str) -> dict[str, Any]:
    result, held, values = evidence.result, evidence.held, evidence.values
    fired = {t.rule for t in result.trace if t.fired}
    candidate = next((c for c in result.candidates if c.drug == drug), None)
    excluded = next((x for x in result.excluded if x.drug == drug), None)
    rules = []
    for rule in ev.rules:
        if drug not in rule.drugs:
            continue
        tests = [
            {"test": describe_test(test, ev.pack), "fact": test.fact, "patient": values[test.fact], "holds": f"{rule.id}#{i}" in held}
            for i, test in enumerate(rule.when.tests() if rule.when else [])
        ]
        rules.append({"rule": rule.id, "kind": rule.kind, "title": rule.title, "fired": rule.id in fired, "tests": tests})
    return {
        "drug": drug,
        "status": "candidate" if candidate else "excluded",
        "rank": candidate.rank if candidate else None,
        "reasons": [r.model_dump() for r in excluded.reasons] if excluded else [],
        "rules": rules,
        "ruleset": result.ruleset.model_dump(),
    }
