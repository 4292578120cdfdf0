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


def _key(text: str) -> str:
    """Lookup key: case, spaces, hyphens and typographic apostrophes do not matter."""
    text = text.strip().lower().replace("’", "'")
    return re.sub(r"[\s\-]+", "_", text)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    is_a: list[str] = []
    synonyms: list[str] = []
    icd10: list[str] = []
    rxcui: list[str] = []  # RxNorm product-level RxCUIs (FHIR input only)


class Vocabulary(BaseModel):
    """One code system (diagnoses or treatments) with its is_a hierarchy."""

    model_config = ConfigDict(extra="forbid")
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
        """For each of icd10 and rxcui: {standard code: vocabulary code}."""
        fields = ("icd10", "rxcui")
        return {f: {std: code for code, entry in self.entries.items() for std in getattr(entry, f)} for f in fields}

    def lookup(self, text: str) -> str | None:
        """The canonical code for a code, synonym or ICD-10-CM code, or None."""
        return self._lookup.get(_key(text))

    def normalise(self, text: str) -> str:
        """The canonical code for a code, synonym or ICD-10-CM code; UnknownCode otherwise."""
        code = self.lookup(text)
        if code is None:
            hint = difflib.get_close_matches(_key(text), list(self.entries), n=1, cutoff=0.75)
            suffix = f"; did you mean {hint[0]!r}?" if hint else ""
            raise UnknownCode(f"unknown {self.kind} code {text!r}{suffix}")
        return code

    def check(self, code: str) -> str:
        """A rule may only name canonical codes: anything else is an error."""
        if code not in self.entries:
            self.normalise(code)  # raises with a did-you-mean
            raise UnknownCode(f"{code!r} is a synonym; rules use canonical {self.kind} codes")
        return code


class Lab(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    unit: str
    units: dict[str, Fraction] = Field(min_length=1)
    loinc: list[str] = []  # LOINC codes of this test (FHIR input only)

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


def canonical_number(value: Fraction | float | int) -> float | int:
    """One representation per number (120, never 120.0), so equal values give equal facts."""
    number = float(value)
    return int(number) if number.is_integer() else number


class Drug(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    brand: str
    route: str
    target: str
