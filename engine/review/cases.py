"""Golden cases and rule examples, run the same way by `jakcds test`, `jakcds coverage` and pytest.

A golden case is cases/<name>/patient.json with cases/<name>/expected.yaml, which holds
`description` and either `error` (a text the one-line input error must contain) or the parts of
the result that matter: candidates in order (drug, label status, evidence, cautions by rule id ->
severity), excluded drugs -> reason rule ids, note rule ids. `todo: <why>` marks a known gap:
reported as TODO instead of FAIL while it does not pass (Semgrep's todoruleid).

A FHIR case has bundle.json instead of patient.json; its expected.yaml adds `as_of` (the date
ages are computed on), optionally `condition` (what to treat), `unmapped` ("Resource/id code: why"
lines), and `twin: <case>`: the JSON case whose candidates, exclusions and notes it must equal.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from ..decision.evaluate import Evaluator, InputError
from ..decision.result import Result
from ..ehr.chart import evaluate_chart


@dataclass
class Outcome:
    name: str
    status: str  # PASS | FAIL | TODO
    detail: str = ""
    fired: frozenset[str] = frozenset()

    @property
    def passed(self) -> bool:
        return self.status != "FAIL"


def project(result: Result) -> dict[str, Any]:
    """The parts of a result that a golden case pins down."""
    return {
        "candidates": [
            {
                "drug": c.drug,
                "label_status": c.label_status,
                "evidence": c.evidence,
                "cautions": {caution.rule: caution.severity for caution in c.cautions},
                **({"confirm": [f"{item.rule}: {item.needs}" for item in c.confirm]} if c.conditional else {}),
            }
            for c in result.candidates
        ],
        "before_starting": {p.fact: p.drugs for p in result.before_starting},
        "excluded": {x.drug: [r.rule for r in x.reasons] for x in result.excluded},
        "notes": [n.rule for n in result.notes],
        "unmapped": [f"{u.resource} {u.code}: {u.why}" for u in result.unmapped],
        "not_assessed": [f"{n.field}: {n.entry}" for n in result.not_assessed],
    }


def case_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).glob("*/expected.yaml"))


def _status(ok: bool, todo: str) -> str:
    return "PASS" if ok else ("TODO" if todo else "FAIL")


def _expected(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / "expected.yaml").read_text(encoding="utf-8"))


def evaluate_case(directory: Path, evaluator: Evaluator, expected: dict[str, Any] | None = None) -> Result:
    """The case's result: patient.json, or bundle.json read as FHIR with the case's as_of and condition."""
    if (directory / "bundle.json").is_file():
        expected = expected or _expected(directory)
        bundle = json.loads((directory / "bundle.json").read_text(encoding="utf-8"))
        return evaluate_chart(evaluator, bundle, expected.get("condition"), date.fromisoformat(str(expected["as_of"])))
    return evaluator.evaluate(json.loads((directory / "patient.json").read_text(encoding="utf-8")))


def run_case(directory: Path, evaluator: Evaluator) -> Outcome:
    expected = _expected(directory)
    name, todo = f"case {directory.name}", expected.get("todo", "")
    try:
        result = evaluate_case(directory, evaluator, expected)
    except InputError as error:
        if "error" in expected and expected["error"] in str(error):
            return Outcome(name, "PASS")
        return Outcome(name, _status(False, todo), f"unexpected input error: {error}")
    fired = frozenset(t.rule for t in result.trace if t.fired)
    if "error" in expected:
        return Outcome(name, _status(False, todo), f"expected an input error containing {expected['error']!r}", fired)
    source = _expected(directory.parent / expected["twin"]) if "twin" in expected else expected
    wanted = {key: source.get(key) for key in ("candidates", "excluded", "notes")} | {
        # a FHIR twin may lack what its JSON twin says (smoking is not read from FHIR): its own list, if it has one
        "before_starting": expected.get("before_starting", source.get("before_starting", {})),
        "unmapped": expected.get("unmapped", []),
        "not_assessed": expected.get("not_assessed", []),
    }
    actual = project(result)
    if actual == wanted:
        return Outcome(name, "PASS", fired=fired)
    dump = lambda doc: yaml.safe_dump(doc, sort_keys=False).splitlines()  # noqa: E731
    diff = "\n".join(difflib.unified_diff(dump(wanted), dump(actual), "expected", "actual", lineterm=""))
    return Outcome(name, _status(False, todo), diff, fired)


def update_case(directory: Path, evaluator: Evaluator) -> bool:
    """Rewrite a case's expected result from today's result (`jakcds test --update`: review the
    diff before committing it). Error cases are left alone; a FHIR twin keeps pointing at its
    JSON twin and updates only what it pins itself. Returns whether the file changed."""
    expected = _expected(directory)
    if "error" in expected:
        return False
    actual = project(evaluate_case(directory, evaluator, expected))
    own = ["unmapped"] if "twin" in expected else ["candidates", "before_starting", "excluded", "notes"]
    if "twin" in expected and "before_starting" in expected:
        own.append("before_starting")
    if actual["not_assessed"] or "not_assessed" in expected:
        own.append("not_assessed")
    updated = {**expected, **{key: actual[key] for key in own}}
    if updated == expected:
        return False
    text = yaml.safe_dump(updated, sort_keys=False, allow_unicode=True, width=100)
    (directory / "expected.yaml").write_text(text, encoding="utf-8")
    return True


def run_examples(evaluator: Evaluator) -> list[Outcome]:
    """The examples of every rule that runs: it fires on fires:true, not on fires:false."""
    outcomes = []
    for rule in evaluator.rules:
        for index, example in enumerate(rule.examples):
            name = f"example {rule.id}#{index}"
            try:
                result = evaluator.evaluate(example.patient)
            except InputError as error:
                outcomes.append(Outcome(name, "FAIL", f"the example patient is invalid: {error}"))
                continue
            fired = frozenset(t.rule for t in result.trace if t.fired)
            ok = (rule.id in fired) is example.fires
            detail = "" if ok else f"expected the rule {'to fire' if example.fires else 'not to fire'} on {example.patient}"
            outcomes.append(Outcome(name, _status(ok, example.todo), detail, fired))
    return outcomes


def run_all(cases: Path, evaluator: Evaluator) -> list[Outcome]:
    return [run_case(d, evaluator) for d in case_dirs(cases)] + run_examples(evaluator)


def coverage(outcomes: list[Outcome], evaluator: Evaluator) -> dict[str, int]:
    """How many cases and examples each active rule fired in (0 = never covered)."""
    counts = Counter(rule for outcome in outcomes for rule in outcome.fired)
    return {rule.id: counts[rule.id] for rule in evaluator.rules}
