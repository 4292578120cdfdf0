"""The evaluate path: patient -> facts -> durable-rules -> ranked, cited result."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..knowledge.pack import Pack, default_path, load_pack
from .compiler import compile_rules
from .facts import build_fact, observed
from .patient import Patient, parse_patient
from .result import Plan, Result, RulesetInfo, assemble
from .session import RuleEngine


class InputError(ValueError):
    """A patient profile that cannot be evaluated; str() is one line naming field and value."""


MESSAGE_MAX = 500  # an error never echoes a whole input document


def _bounded(text: str, size: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def one_line(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "patient"
        message = _bounded(item["msg"].removeprefix("Value error, "), 200)
        given = "" if item["type"] == "value_error" else f" (got {_bounded(repr(item['input']), 60)})"
        parts.append(f"{loc}: {message}{given}")
    return _bounded("; ".join(parts), MESSAGE_MAX)


class Evaluator:
    """A loaded, compiled pack ready to evaluate patients; build once, call many times."""

    def __init__(self, pack: Pack, include_draft: bool = False, builtin: bool = False):
        self.pack = pack
        self.rules = pack.active(include_draft)
        self.plan = Plan.of(self.rules, pack)
        self.engine = RuleEngine(compile_rules(self.rules, {code: e.is_a for code, e in pack.diagnoses.entries.items()}))
        # conditions some proposal rule is about: a patient outside them gets the JAKCDS-002 note
        self.covered = frozenset(
            test.value
            for rule in self.rules
            if rule.kind == "propose" and rule.when
            for test in rule.when.tests()
            if test.fact == "condition" and test.op == "has"
        )
        self.info = RulesetInfo(
            name=pack.meta.name,
            version=pack.meta.version,
            sha256=pack.sha256,
            path="(built-in)" if builtin else str(pack.path),
            drafts_included=include_draft,
            rules_run=len(self.rules),
        )

    def parse(self, data: dict[str, Any] | Patient) -> Patient:
        try:
            return parse_patient(data, self.pack)
        except ValidationError as error:
            raise InputError(one_line(error)) from None

    def evaluate(self, data: dict[str, Any] | Patient) -> Result:
        return self.run(self.parse(data))

    def run(self, patient: Patient) -> Result:
        """Evaluate a profile already parsed by `parse` (for this pack)."""
        fired = self.engine.run(build_fact(patient, self.pack))
        return assemble(
            self.pack,
            self.plan,
            fired,
            patient.model_dump(mode="json"),
            observed(patient, self.pack),
            self.covered,
            self.info,
        )


_evaluators: dict[tuple[Path, bool, bool], Evaluator] = {}
_lock = threading.Lock()


def evaluator(rules: Path | str | None = None, include_draft: bool = False) -> Evaluator:
    """The cached Evaluator for a pack directory (default: the shipped pack)."""
    path = Path(rules).resolve() if rules else default_path()
    with _lock:
        key = (path, include_draft, rules is None)  # in a checkout the shipped pack is rules/: reported as built-in only if asked so
        if key not in _evaluators:
            _evaluators[key] = Evaluator(load_pack(path), include_draft, builtin=rules is None)
        return _evaluators[key]


def evaluate(
    patient: dict[str, Any] | Patient, *, rules: Path | str | None = None, include_draft: bool = False
) -> Result:
    """Evaluate one patient profile (a dict in the input contract, or a Patient)."""
    return evaluator(rules, include_draft).evaluate(patient)

