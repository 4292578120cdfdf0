"""Controlled vocabularies kept as data in rules/vocabulary/: codes, synonyms, is_a, and the
standard codes that map onto them (ICD-10-CM, RxNorm, LOINC) where a source verifies them."""

from __future__ import annotations

import difflib
import re
from fractions import Fraction
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator

CODE = re.compile(r"[a-z][a-z0-9_]*")


class UnknownCode(ValueError):
    """A code that no vocabulary entry, synonym or ICD-10-CM code matches."""


class NotInPack(UnknownCode):
    """A well-formed term no near miss of a known one, or a valid ICD-10-CM code under no listed
    condition: a clinician's real entry the pack cannot judge, so it is taken and listed, not refused."""


# what a typed term may look like (letters first; then letters, digits, spaces and - / ( ) . , ' +)
TERM = re.compile(r"[^\W\d_][\w\s\-/().,'+]{0,79}")


def _key(text: str) -> str:
    """Lookup key: case, spaces, hyphens and typographic apostrophes do not matter."""
    text = text.strip().lower().replace("’", "'")
    return re.sub(r"[\s\-]+", "_", text)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    is_a: list[str] = []
    synonyms: list[str] = []
    icd10: list[str] = []
    snomed: list[str] = []  # SNOMED CT concepts (FHIR input only)
    rxcui: list[str] = []  # RxNorm product-level RxCUIs (FHIR input only)
    interaction: bool = False  # an FDA drug-interaction class (CYP3A4, CYP2C19, CYP2C9, OAT3)
    cites: str = ""  # the us-labels.md row and grade that put a medicine in its interaction classes


ICD10_SHAPE = re.compile(r"[A-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?")


def icd10_code(code: str, table: dict[str, str]) -> str | None:
    """An ICD-10-CM code -> the vocabulary code of itself or of its nearest listed ancestor, from
    the CMS code list (simple-icd-10-cm, imported only here: it takes ~1.6 s); None if no ancestor
    is listed, UnknownCode if it is not an ICD-10-CM code."""
    code = code.strip().upper()
    if code in table:
        return table[code]
    import simple_icd_10_cm as cm

    if not cm.is_valid_item(code):
        raise UnknownCode(f"{code} is not an ICD-10-CM code")
    return next((table[parent] for parent in cm.get_ancestors(code) if parent in table), None)


class Vocabulary(BaseModel):
    """One code system (diagnoses or treatments) with its is_a hierarchy."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: str
    entries: dict[str, Entry]

    @field_validator("entries")
    @classmethod
    def _parents_exist(cls, entries: dict[str, Entry]) -> dict[str, Entry]:
        for code, entry in entries.items():
            if not CODE.fullmatch(code):  # codes become durable-rules field paths: no dots
                raise ValueError(f"{code!r}: codes are lower-case snake_case")
            for parent in entry.is_a:
                if parent not in entries:
                    raise ValueError(f"{code}: is_a names unknown code {parent!r}")
                if entries[parent].interaction and not entry.interaction and not entry.cites:
                    raise ValueError(f"{code}: in interaction class {parent!r} without cites (the us-labels.md row)")
        return entries

    @cached_property
    def _lookup(self) -> dict[str, str]:
        table: dict[str, str] = {}
        for code, entry in self.entries.items():
            for alias in [code, *entry.synonyms, *entry.icd10]:
                table.setdefault(_key(alias), code)
        return table

    @cached_property
    def closures(self) -> dict[str, frozenset[str]]:
        """Each code with every broader code it is_a (transitively), itself included."""

        def up(code: str, seen: set[str]) -> set[str]:
            if code not in seen:
                seen.add(code)
                for parent in self.entries[code].is_a:
                    up(parent, seen)
            return seen

        return {code: frozenset(up(code, set())) for code in self.entries}

    @cached_property
    def standard_codes(self) -> dict[str, dict[str, str]]:
        """For each of icd10, snomed and rxcui: {standard code: vocabulary code}."""
        fields = ("icd10", "snomed", "rxcui")
        return {f: {std: code for code, entry in self.entries.items() for std in getattr(entry, f)} for f in fields}

    def lookup(self, text: str) -> str | None:
        """The canonical code for a code, synonym or ICD-10-CM code, or None."""
        return self._lookup.get(_key(text))

    def normalise(self, text: str) -> str:
        """The canonical code for a code, synonym or ICD-10-CM code (a subcode maps to its nearest
        listed parent, as in FHIR input); UnknownCode otherwise."""
        code = self.lookup(text)
        if code is None and self.standard_codes["icd10"] and ICD10_SHAPE.fullmatch(text.strip().upper()):
            code = icd10_code(text, self.standard_codes["icd10"])
            if code is None:
                raise NotInPack(f"ICD-10-CM {text.strip().upper()} is under no condition this pack lists")
        if code is None:
            hint = difflib.get_close_matches(_key(text), list(self._lookup), n=1, cutoff=0.75)
            if hint:
                raise UnknownCode(f"unknown {self.kind} code {text!r}; did you mean {self._lookup[hint[0]]!r}?")
            if TERM.fullmatch(text.strip()):
                raise NotInPack(f"{self.kind} {text.strip()!r} is not in this pack")
            raise UnknownCode(f"unknown {self.kind} code {text!r}")
        return code

    def check(self, code: str) -> str:
        """A rule may only name canonical codes: anything else is an error."""
        if code not in self.entries:
            self.normalise(code)  # raises with a did-you-mean
            raise UnknownCode(f"{code!r} is a synonym; rules use canonical {self.kind} codes")
        return code


class Lab(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    unit: str
    units: dict[str, Fraction] = Field(min_length=1)
    loinc: list[str] = []  # LOINC codes of this test (FHIR input only)
    plausible: tuple[float, float]  # physiological bounds in `unit` (not clinical thresholds)
    counted: bool = False  # cells counted per `unit`: a whole number (1.2 /uL is 1.2 ×10^9/L mistyped)

    @field_validator("units", mode="before")
    @classmethod
    def _fractions(cls, units: dict[str, str]) -> dict[str, Fraction]:
        return {unit: Fraction(factor) for unit, factor in units.items()}

    def convert(self, value: float, unit: str) -> float | int:
        """value in `unit` -> number in this lab's canonical unit (exact, then rounded once)."""
        factor = self.units.get(unit.replace("µ", "u").replace("μ", "u"))
        if factor is None:
            raise UnknownCode(f"unknown unit {unit!r} (accepted: {', '.join(self.units)})")
        return canonical_number(Fraction(value) * factor)

    def plausible_value(self, name: str, value: float, unit: str | None) -> float | int:
        """value (in `unit`, or a bare number in this lab's unit) in the canonical unit; an
        implausible one is an error naming the unit it would be plausible in, if one."""
        number = self.convert(value, unit or self.unit)
        if self._plausible(Fraction(number)):
            return number
        given = unit or self.unit
        fits = [u for u, factor in self.units.items() if self._plausible(Fraction(str(value)) * factor)]
        hint = f"; give it as {{value: {value}, unit: {fits[0]}}}" if fits else ""
        low, high = self.plausible
        whole = ", a whole count" if self.counted else ""
        raise UnknownCode(f"{name} {value}: not a plausible {given} value (physiological bounds {low:.10g}-{high:.10g} {self.unit}{whole}){hint}")

    def _plausible(self, number: Fraction) -> bool:
        low, high = self.plausible
        return low <= number <= high and (not self.counted or number.denominator == 1)


# durable-rules parses its facts' JSON numbers itself and refuses exponent forms (1e-05 is error
# 204): every number asserted lies in this range, where Python writes none in exponent form
SMALLEST, LARGEST = 1e-4, 1e12


def canonical_number(value: Fraction | float | int) -> float | int:
    """One representation per number (120, never 120.0), so equal values give equal facts."""
    try:
        number = float(value)
    except OverflowError:  # an integer past the float range (its digits are not echoed: they can be thousands)
        raise UnknownCode(f"a number above {LARGEST:g} is outside the range the engine takes ({SMALLEST:g} to {LARGEST:g})") from None
    if number != 0 and not SMALLEST <= abs(number) < LARGEST:
        raise UnknownCode(f"{number} is outside the range the engine takes ({SMALLEST:g} to {LARGEST:g})")
    return int(number) if number.is_integer() else number


class Drug(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str
    brand: str
    route: str
    target: str
