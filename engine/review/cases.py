"""Golden cases and rule examples, run the same way by `jakcds test`, `jakcds coverage` and pytest.

A golden case is cases/<name>/patient.json with cases/<name>/expected.yaml, which holds
`description` and either `error` (a text the one-line input error must contain) or the parts of
the result that matter, as a clinician reads them: candidates in order (drug, label status,
evidence, cautions by rule id -> severity, what a conditional candidate must confirm and the facts
it waits on), the before-starting prompts, excluded drugs -> reason rule ids, the why-not of each
proposal that did not fire (its sentence, with the patient's values), note rule ids (a built-in
note with its words). `todo: <why>` marks a known gap: reported as TODO instead of FAIL while it
does not pass (Semgrep's todoruleid). `jakcds test --update` writes a changed case's result to
expected.yaml.new for review; `--accept` moves it in.

A FHIR case has bundle.json instead of patient.json; its expected.yaml adds `as_of` (the date
ages are computed on), optionally `condition` (what to treat), `unmapped` ("Resource/id code: why"
lines), and `twin: <case>`: the JSON case whose candidates, exclusions and notes it must equal
(its before-starting prompts and why-nots too, unless it pins its own: FHIR carries fewer facts).
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
from ..decision.result import BUILT_IN, Excluded, Result
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


def _why_not(excluded: Excluded) -> list[str]:
    """The sentences of a drug's proposals that did not fire: what was not met, with the patient's values."""
    return [f"{reason.rule}: {reason.message}" for reason in excluded.reasons if reason.unmet]


def project(result: Result) -> dict[str, Any]:
    """The parts of a result that a golden case pins down."""
    return {
        "candidates": [
            {
                "drug": c.drug,
                "label_status": c.label_status,
                "evidence": c.evidence,
                "cautions": {caution.rule: caution.severity for caution in c.cautions},
                **({"confirm": [f"{i.rule}: {i.needs} (waits on: {', '.join(i.facts)})" for i in c.confirm]} if c.conditional else {}),
                **({"beside_on_label": True} if c.beside_on_label else {}),  # one line, no card
            }
            for c in result.candidates
        ],
        "before_starting": {p.fact: p.drugs for p in result.before_starting},
        "excluded": {x.drug: [r.rule for r in x.reasons] for x in result.excluded},
        "why_not": {x.drug: said for x in result.excluded if (said := _why_not(x))},
        "notes": [f"{n.rule}: {n.message}" if n.rule in BUILT_IN else n.rule for n in result.notes],
        "unmapped": [f"{u.resource} {u.code}: {u.why}" for u in result.unmapped],
        "not_assessed": [f"{n.field}: {n.entry}" for n in result.not_assessed],
    }


PINNED = ("candidates", "before_starting", "excluded", "why_not", "notes")
TWIN_OWN = ("before_starting", "why_not")  # a FHIR twin may pin its own: FHIR does not carry every fact


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


def _twin(directory: Path, expected: dict[str, Any]) -> dict[str, Any]:
    return _expected(directory.parent / expected["twin"]) if "twin" in expected else expected


def _wanted(directory: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """The projection a case pins: its own, or its JSON twin's with what the FHIR twin pins itself."""
    source = _twin(directory, expected)
    return {key: expected.get(key, source.get(key, {})) if key in TWIN_OWN else source.get(key) for key in PINNED} | {
        "unmapped": expected.get("unmapped", []),
        "not_assessed": expected.get("not_assessed", []),
    }


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
    wanted = _wanted(directory, expected)
    actual = project(result)
    if actual == wanted:
        return Outcome(name, "PASS", fired=fired)
    dump = lambda doc: yaml.safe_dump(doc, sort_keys=False).splitlines()  # noqa: E731
    diff = "\n".join(difflib.unified_diff(dump(wanted), dump(actual), "expected", "actual", lineterm=""))
    return Outcome(name, _status(False, todo), diff, fired)


PENDING = "expected.yaml.new"


def update_case(directory: Path, evaluator: Evaluator) -> bool:
    """Write a case's expected result from today's result as a pending file (expected.yaml.new)
    beside expected.yaml, for review (`jakcds test` shows its diff, `--accept` moves it in); a
    pending file that today's result no longer needs is removed. Error cases are left alone; a
    FHIR twin keeps pointing at its JSON twin and updates only what it pins itself. Returns whether
    the case now has a pending file."""
    expected = _expected(directory)
    pending = directory / PENDING
    pending.unlink(missing_ok=True)
    if "error" in expected:
        return False
    actual = project(evaluate_case(directory, evaluator, expected))
    if "twin" in expected:  # its own where its result differs from its JSON twin's today
        twin = project(evaluate_case(directory.parent / expected["twin"], evaluator))
        own = ["unmapped", *(key for key in TWIN_OWN if key in expected or actual[key] != twin[key])]
    else:
        own = [*PINNED]
    if actual["not_assessed"] or "not_assessed" in expected:
        own.append("not_assessed")
    updated = {**expected, **{key: actual[key] for key in own}}
    if updated == expected:
        return False
    pending.write_text(yaml.safe_dump(updated, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")
    return True


def pending_cases(root: Path) -> list[Path]:
    """The cases with a pending expected.yaml.new, by name."""
    return sorted(p.parent for p in Path(root).glob(f"*/{PENDING}"))


def pending_diff(directory: Path) -> str:
    """The unified diff from a case's expected.yaml to its pending file."""
    old, new = (directory / name for name in ("expected.yaml", PENDING))
    lines = difflib.unified_diff(
        old.read_text(encoding="utf-8").splitlines(), new.read_text(encoding="utf-8").splitlines(),
        f"{directory.name}/expected.yaml", f"{directory.name}/{PENDING}", lineterm="",
    )
    return "\n".join(lines)


def accept(directory: Path) -> None:
    """The pending file becomes the case's expected.yaml (`jakcds test --accept NAME`)."""
    (directory / PENDING).replace(directory / "expected.yaml")


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
