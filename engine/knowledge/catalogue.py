"""The fact catalogue: every patient fact a rule condition may test, with its type.

The profile (`decision/patient.py`) takes its enum fields' values from here, so the compiler's
check of a rule and the validation of a patient read one list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from .pack import Pack

# Patient fields tested as they are (labs come from the pack's labs.yaml), by type; number -> unit.
NUMBERS = {"age": "years", "weight_kg": "kg", "bsa_percent": "%", "cardiovascular_risk_factors": "count"}
PHENOTYPES = ("poor", "intermediate", "normal", "rapid", "ultrarapid")
INFECTION = ("negative", "resolved", "active", "unknown")
ENUMS: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male", "other"),
    "severity": ("mild", "moderate", "severe"),
    "smoking": ("never", "former", "current"),
    "child_pugh": ("A", "B", "C"),
    "tb_status": ("negative", "latent", "latent_treated", "active", "unknown"),
    "hepatitis_b": INFECTION,
    "hepatitis_c": INFECTION,
    "cyp2c9": PHENOTYPES,
    "cyp2c19": PHENOTYPES,
}
BOOLS = ("pregnant", "breastfeeding", "planned_live_vaccine", "reproductive_potential", "immunizations_up_to_date")
SCALARS = (*NUMBERS, *ENUMS, *BOOLS)
# Derived by the engine (decision/facts.py): a female, not pregnant, of reproductive potential
# as given, or, when not given, by the pack's site policy (age band).
DERIVED_BOOLS = ("may_conceive",)
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


def catalogue(pack: Pack) -> dict[str, FactSpec]:
    """Every fact a rule may test, with its type: the compiler checks rules against it."""
    specs = [
        *(FactSpec(name, "number", unit=unit) for name, unit in NUMBERS.items()),
        *(FactSpec(name, "enum", values=values) for name, values in ENUMS.items()),
        *(FactSpec(name, "bool") for name in (*BOOLS, *DERIVED_BOOLS)),
        *(FactSpec(name, "codes", vocabulary=vocab) for name, (_, vocab) in CODE_LISTS.items()),
        *(FactSpec(name, "number", unit=lab.unit) for name, lab in pack.labs.items()),
    ]
    return {spec.name: spec for spec in specs}


class FactName(BaseModel):
    """A fact as a clinician reads it (vocabulary/facts.yaml): its name in words and its unit."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    unit: str = ""

    @property
    def words(self) -> str:
        """The name with its unit: "eGFR (mL/min/1.73 m²)"."""
        return f"{self.name} ({self.unit})" if self.unit else self.name
