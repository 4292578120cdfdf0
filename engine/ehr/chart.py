"""The FHIR entry point: a chart (Bundle, resource or CDS Hooks prefetch) read into a profile, then evaluated."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from ..decision.evaluate import Evaluator, InputError, evaluator
from ..decision.result import Result, Unmapped
from ..knowledge.vocabulary import UnknownCode
from .fhir import FhirError, Reader, resources


def read_chart(ev: Evaluator, data: dict[str, Any], as_of: date | None = None) -> Reader:
    """Read FHIR R4 input for this evaluator's pack; ages on `as_of` (default today)."""
    if not isinstance(data, dict):
        raise InputError(f"FHIR input is a JSON object (a Bundle, a resource or a prefetch map), not {type(data).__name__}")
    reader = Reader(ev.pack, as_of or date.today(), drafts=ev.info.drafts_included)
    try:
        reader.read(resources(data))
    except FhirError as error:
        raise InputError(str(error)) from None
    except (RecursionError, ValueError):  # echoing a value nested too deep, or an integer of thousands of digits
        raise InputError("FHIR input holds a value nested too deeply or a number too long to read") from None
    return reader


def evaluate_read(ev: Evaluator, reader: Reader, condition: str | None = None) -> Result:
    """Evaluate what a Reader read, treating `condition` (default: the one active skin condition)."""
    try:
        profile = reader.profile_for(condition)
    except (FhirError, UnknownCode) as error:
        raise InputError(str(error)) from None
    result = ev.evaluate(profile)
    drafted = [Unmapped(**item) for item in sorted(reader.drafted, key=lambda i: (i["resource"], i["code"]))]
    return result.model_copy(update={"unmapped": reader.sorted_unmapped(), "read_by_draft": drafted, "as_of": reader.as_of.isoformat()})


def evaluate_chart(ev: Evaluator, data: dict[str, Any], condition: str | None = None, as_of: date | None = None) -> Result:
    return evaluate_read(ev, read_chart(ev, data, as_of), condition)


def evaluate_fhir(
    data: dict[str, Any],
    *,
    condition: str | None = None,
    as_of: date | None = None,
    rules: Path | str | None = None,
    include_draft: bool = False,
) -> Result:
    """Evaluate FHIR R4 input: a Bundle, one resource, or a CDS Hooks prefetch map."""
    return evaluate_chart(evaluator(rules, include_draft), data, condition, as_of)
