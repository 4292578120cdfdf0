"""Patient facts: what rule conditions may test, and the fact asserted into durable-rules.

Code lists become objects {code: true} holding every code and every broader code it is_a,
so "has X" is one equality test on the path "list.X" and "lacks X" is a `$nex` on it; this
works for empty lists, where durable-rules' `$iany`/`$iall` match nothing. An unknown value
is simply absent from the fact: numeric tests on it never match, `known: false` does.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .patient import Patient

if TYPE_CHECKING:
    from .pack import Pack

# Patient fields tested as they are (labs come from the pack's labs.yaml), by type; number -> unit.
NUMBERS = {"age": "years", "weight_kg": "kg", "bsa_percent": "%", "cardiovascular_risk_factors": "count"}
ENUMS = ("sex", "severity", "smoking", "child_pugh", "tb_status", "hepatitis_b", "hepatitis_c", "cyp2c9", "cyp2c19")
BOOLS = ("pregnant", "breastfeeding", "planned_live_vaccine")
SCALARS = (*NUMBERS, *ENUMS, *BOOLS)
# fact name -> (patient field(s), vocabulary)
CODE_LISTS = {
    "condition": (("condition",), "diagnoses"),
    "comorbidities": (("comorbidities",), "diagnoses"),
    "failed_therapies": (("failed_therapies",), "treatments"),
    "contraindicated_therapies": (("contraindicated_therapies",), "treatments"),
    "failed_or_contraindicated_therapies": (("failed_therapies", "contraindicated_therapies"), "treatments"),
    "medications": (("medications",), "treatments"),
}


@dataclass(frozen=True)
class FactSpec:
    name: str
    type: Literal["number", "codes", "enum", "bool"]
    vocabulary: str = ""  # for codes: diagnoses | treatments
    values: tuple[str, ...] = ()  # for enum
    unit: str = ""  # for number


def _enum_values(field: str) -> tuple[str, ...]:
    literal = next(arg for arg in typing.get_args(Patient.model_fields[field].annotation) if arg is not type(None))
    return typing.get_args(literal)


def catalogue(pack: Pack) -> dict[str, FactSpec]:
    """Every fact a rule may test, with its type: the compiler checks rules against it."""
    specs = [
        *(FactSpec(name, "number", unit=unit) for name, unit in NUMBERS.items()),
        *(FactSpec(name, "enum", values=_enum_values(name)) for name in ENUMS),
        *(FactSpec(name, "bool") for name in BOOLS),
        *(FactSpec(name, "codes", vocabulary=vocab) for name, (_, vocab) in CODE_LISTS.items()),
        *(FactSpec(name, "number", unit=lab.unit) for name, lab in pack.labs.items()),
    ]
    return {spec.name: spec for spec in specs}


def observed(patient: Patient, pack: Pack) -> dict[str, Any]:
    """The patient's own value behind each fact (None when unknown), for traces."""
    values: dict[str, Any] = {name: getattr(patient, name) for name in SCALARS}
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
    fact.update(patient.labs)
    return fact


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value
