"""The fact asserted into durable-rules for one patient (what it may hold: knowledge/catalogue.py).

Code lists become objects {code: true} holding every code and every broader code it is_a,
so "has X" is one equality test on the path "list.X" and "lacks X" is a `$nex` on it; this
works for empty lists, where durable-rules' `$iany`/`$iall` match nothing. An unknown value
is simply absent from the fact: numeric tests on it never match, `known: false` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..knowledge.catalogue import CODE_LISTS, SCALARS
from .patient import Patient

if TYPE_CHECKING:
    from ..knowledge.pack import Pack

GIVEN_CONDITION = "condition_given"  # the condition code exactly as given (relaxed probes read it)


def may_conceive(patient: Patient, pack: Pack) -> bool:
    """A non-pregnant female of reproductive potential: as recorded, else by the pack's site
    policy (its age band; an unknown age counts as inside it)."""
    if patient.sex != "female" or patient.pregnant:
        return False
    if patient.reproductive_potential is not None:
        return patient.reproductive_potential
    low, high = pack.meta.policy.reproductive_age
    return patient.age is None or low <= patient.age <= high


def observed(patient: Patient, pack: Pack) -> dict[str, Any]:
    """The patient's own value behind each fact (None when unknown), for traces."""
    values: dict[str, Any] = {name: getattr(patient, name) for name in SCALARS}
    values["may_conceive"] = may_conceive(patient, pack)
    for name, (fields, _) in CODE_LISTS.items():
        codes = sorted({code for field in fields for code in _as_list(getattr(patient, field))})
        values[name] = codes[0] if name == "condition" else codes
    values.update({name: patient.labs.get(name) for name in pack.labs})
    return values


def build_fact(patient: Patient, pack: Pack) -> dict[str, Any]:
    """The one fact asserted per evaluation: scalars, labs, and code lists as is_a closures."""
    fact: dict[str, Any] = {"t": "patient"}
    for name in SCALARS:
        value = getattr(patient, name)
        if value is not None:
            fact[name] = value
    for name, (fields, vocab) in CODE_LISTS.items():
        closures = getattr(pack, vocab).closures
        fact[name] = {
            code: True for field in fields for item in _as_list(getattr(patient, field)) for code in closures[item]
        }
    fact[GIVEN_CONDITION] = patient.condition
    fact["may_conceive"] = may_conceive(patient, pack)
    fact.update(patient.labs)
    return fact


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
