"""The patient profile (input contract): strict validation, then normalisation to canonical codes.

Validation needs the rule pack's vocabularies, passed as pydantic validation context
(`Patient.model_validate(data, context={"pack": pack})`); `parse_patient` does that.
"""

from __future__ import annotations

import math
import reprlib
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..knowledge.catalogue import ENUMS
from ..knowledge.vocabulary import NotInPack, UnknownCode, Vocabulary, canonical_number

if TYPE_CHECKING:
    from ..knowledge.pack import Pack

Number = int | float
_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother, _BRIEF.maxlong = 2, 60, 60, 40


def brief(value: Any) -> str:
    """A short repr of an input value for an error message: bounded in depth and size, so a value
    nested a thousand deep or an integer of thousands of digits is never echoed (nor fails)."""
    try:
        return _BRIEF.repr(value)
    except (ValueError, RecursionError):  # e.g. an int past Python's digit limit
        return f"<{type(value).__name__}>"

# the lists a clinician types entries into, with the vocabulary each is read against
TYPED_LISTS = {"comorbidities": "diagnoses", "failed_therapies": "treatments",
               "contraindicated_therapies": "treatments", "medications": "treatments"}


def _pack(info: ValidationInfo) -> Pack:
    if not info.context or "pack" not in info.context:
        raise RuntimeError("Patient needs the rule pack as validation context; use parse_patient()")
    return info.context["pack"]


def _codes(values: list[str], vocabulary: Vocabulary) -> list[str]:
    """Canonical, de-duplicated and sorted: list order never matters downstream."""
    try:
        return sorted({vocabulary.normalise(value) for value in values})
    except UnknownCode as error:
        raise ValueError(str(error)) from None


def _not_in_pack(value: str, vocabulary: Vocabulary) -> bool:
    try:
        vocabulary.normalise(value)
    except NotInPack:
        return True
    except UnknownCode:
        return False
    return False


class Patient(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    age: int | None = Field(None, ge=0, le=130, description="years")
    sex: Literal[ENUMS["sex"]] | None = None
    condition: str = Field(description="the skin disease to treat: code, synonym or ICD-10-CM")
    severity: Literal[ENUMS["severity"]] | None = None
    failed_therapies: list[str] = []
    contraindicated_therapies: list[str] = []
    comorbidities: list[str] = []
    labs: dict[str, Any] = Field({}, description='number in the default unit, or {"value", "unit"}')
    medications: list[str] = []
    pregnant: bool | None = None
    breastfeeding: bool | None = None
    smoking: Literal[ENUMS["smoking"]] | None = None
    # Read by the US-label rules. Like every field but condition, optional: unknown is absent from the fact.
    weight_kg: float | None = Field(None, gt=0, le=500, allow_inf_nan=False, description="body weight, kg")
    bsa_percent: float | None = Field(
        None, ge=0, le=100, allow_inf_nan=False, description="body-surface area affected by the skin disease, %"
    )
    child_pugh: Literal[ENUMS["child_pugh"]] | None = Field(None, description="Child-Pugh class of hepatic impairment")
    cardiovascular_risk_factors: int | None = Field(
        None,
        ge=0,
        le=20,
        description="how many cardiovascular risk factors the clinician counts (the labels do not list them); "
        "smoking is also its own field",
    )
    tb_status: Literal[ENUMS["tb_status"]] | None = Field(
        None, description="latent: latent TB not yet treated; latent_treated: preventive therapy started or completed"
    )
    hepatitis_b: Literal[ENUMS["hepatitis_b"]] | None = Field(
        None, description="resolved: HBsAg negative with anti-HBc (+/- anti-HBs) positive"
    )
    hepatitis_c: Literal[ENUMS["hepatitis_c"]] | None = None
    cyp2c9: Literal[ENUMS["cyp2c9"]] | None = Field(
        None, description="CYP2C9 metaboliser phenotype"
    )
    cyp2c19: Literal[ENUMS["cyp2c19"]] | None = Field(
        None, description="CYP2C19 metaboliser phenotype"
    )
    reproductive_potential: bool | None = Field(
        None, description="unknown: for a female, the pack's site policy (an age band) decides, and the result says so"
    )
    immunizations_up_to_date: bool | None = Field(
        None, description="immunizations updated per current guidelines (incl. herpes zoster) before starting"
    )
    planned_live_vaccine: bool | None = Field(None, description="a live vaccine is planned before or during treatment")
    not_assessed: dict[Literal[tuple(TYPED_LISTS)], list[str]] = Field(
        {}, description="set on reading: entries of those lists this pack does not know (taken and listed, not judged)"
    )

    @model_validator(mode="before")
    @classmethod
    def _set_aside(cls, data: Any, info: ValidationInfo) -> Any:
        """Entries the pack does not know, but that are no near miss of a known term, leave their
        list for not_assessed (sorted, de-duplicated); near misses stay errors, in the field validators."""
        given = data.get("not_assessed", {}) if isinstance(data, dict) else None
        if not isinstance(given, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in given.values()):
            return data  # the field validation names what is wrong
        data, aside = dict(data), {field: set(values) for field, values in given.items()}
        for field, vocabulary in TYPED_LISTS.items():
            values = data.get(field)
            if isinstance(values, list):
                unknown = [v for v in values if isinstance(v, str) and _not_in_pack(v, getattr(_pack(info), vocabulary))]
                data[field] = [v for v in values if v not in unknown]
                aside.setdefault(field, set()).update(v.strip() for v in unknown)
        data["not_assessed"] = {field: sorted(values) for field, values in sorted(aside.items()) if values}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> Patient:
        for field in ("pregnant", "breastfeeding"):
            if getattr(self, field) and self.sex == "male":
                raise ValueError(f"{field}: true contradicts sex: male")
        return self

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str, info: ValidationInfo) -> str:
        return _codes([value], _pack(info).diagnoses)[0]

    @field_validator("comorbidities")
    @classmethod
    def _comorbidities(cls, values: list[str], info: ValidationInfo) -> list[str]:
        return _codes(values, _pack(info).diagnoses)

    @field_validator("failed_therapies", "contraindicated_therapies", "medications")
    @classmethod
    def _treatments(cls, values: list[str], info: ValidationInfo) -> list[str]:
        return _codes(values, _pack(info).treatments)

    @field_validator("weight_kg", "bsa_percent")
    @classmethod
    def _in_range(cls, value: float | None) -> Number | None:
        try:
            return None if value is None else canonical_number(value)
        except UnknownCode as error:
            raise ValueError(str(error)) from None

    @field_validator("labs")
    @classmethod
    def _labs(cls, labs: dict[str, Any], info: ValidationInfo) -> dict[str, Number]:
        known = _pack(info).labs
        normalised = {}
        for name, raw in sorted(labs.items()):
            lab = known.get(name)
            if lab is None:
                raise ValueError(f"unknown lab {name!r} (known: {', '.join(known)})")
            value, unit = (raw.get("value"), raw.get("unit")) if isinstance(raw, dict) else (raw, lab.unit)
            if isinstance(raw, dict) and set(raw) != {"value", "unit"}:
                raise ValueError(f"{name}: expected {{'value': number, 'unit': text}}, got {brief(raw)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: value must be a finite number, got {brief(value)}")
            if value < 0:
                raise ValueError(f"{name}: value must not be negative, got {value!r}")
            if not isinstance(unit, str):
                raise ValueError(f"{name}: unit must be text, got {brief(unit)}")
            try:
                normalised[name] = lab.plausible_value(name, value, unit if isinstance(raw, dict) else None)
            except UnknownCode as error:
                message = str(error)
                raise ValueError(message if message.startswith(f"{name} ") else f"{name}: {message}") from None
        return normalised


def parse_patient(data: dict[str, Any] | Patient, pack: Pack) -> Patient:
    """Validate and normalise a profile against this pack's vocabularies."""
    if isinstance(data, Patient):
        data = data.model_dump()
    return Patient.model_validate(data, context={"pack": pack})

