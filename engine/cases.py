"""Golden cases: cases/<name>/patient.json with cases/<name>/expected.yaml.

expected.yaml holds `description` and either `error` (a text the one-line input error must
contain) or the parts of the result that matter: candidates in order (drug, label status,
evidence, cautions by rule id -> severity), excluded drugs -> reason rule ids, note rule ids.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .evaluate import Evaluator, InputError
from .result import Result


@dataclass
class Outcome:
    name: str
    passed: bool
    diff: str = ""


def project(result: Result) -> dict[str, Any]:
    """The parts of a result that a golden case pins down."""
    return {
        "candidates": [
            {
                "drug": c.drug,
                "label_status": c.label_status,
                "evidence": c.evidence,
                "cautions": {caution.rule: caution.severity for caution in c.cautions},
            }
            for c in result.candidates
        ],
        "excluded": {x.drug: [r.rule for r in x.reasons] for x in result.excluded},
        "notes": [n.rule for n in result.notes],
    }


def case_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/expected.yaml"))


def run_case(directory: Path, evaluator: Evaluator) -> Outcome:
    expected = yaml.safe_load((directory / "expected.yaml").read_text(encoding="utf-8"))
    patient = json.loads((directory / "patient.json").read_text(encoding="utf-8"))
    try:
        actual: dict[str, Any] = project(evaluator.evaluate(patient))
    except InputError as error:
        actual = {"error": str(error)}
    if "error" in expected:
        ok = expected["error"] in actual.get("error", "")
        return Outcome(directory.name, ok, "" if ok else f"expected an input error containing {expected['error']!r}, got {actual}")
    wanted = {key: expected.get(key) for key in ("candidates", "excluded", "notes")}
    if actual == wanted:
        return Outcome(directory.name, True)
    dump = lambda doc: yaml.safe_dump(doc, sort_keys=False).splitlines()  # noqa: E731
    diff = "\n".join(difflib.unified_diff(dump(wanted), dump(actual), "expected", "actual", lineterm=""))
    return Outcome(directory.name, False, diff)
