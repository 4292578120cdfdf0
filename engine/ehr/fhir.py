"""FHIR R4 input: a Bundle, one resource or a CDS Hooks prefetch map -> the JSON input profile.

Resources are parsed with fhir.resources' R4B models (its default package is R5, which rejects R4
medication resources). Codes map through the pack's vocabularies (ICD-10-CM on diagnoses, RxNorm
on treatments, LOINC on labs), which hold only codes a source verifies. Whatever is not used goes
to `unmapped` with the reason, never silently dropped:
  - Condition: refuted or entered-in-error ignored; inactive, remission or resolved not active.
  - Observation: only final, amended or corrected; the most recent result per lab wins.
  - MedicationStatement / MedicationRequest: active or on-hold -> medications; stopped with a
    status reason the pack reads as failure -> failed_therapies.
  - AllergyIntolerance to a therapy (active, not refuted) -> contraindicated_therapies.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..decision.result import Unmapped
from ..knowledge.vocabulary import UnknownCode

if TYPE_CHECKING:
    from ..knowledge.pack import Pack

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
READ = ("Patient", "Condition", "Observation", "MedicationStatement", "MedicationRequest", "AllergyIntolerance")
NOT_ACTIVE = {"inactive", "remission", "resolved"}
NOT_TRUE = {"refuted", "entered-in-error"}
FINAL = {"final", "amended", "corrected"}
CURRENT = {"active", "on-hold"}
EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


class FhirError(ValueError):
    """FHIR input that cannot be read; str() is one line."""


def is_fhir(data: Any) -> bool:
    """A FHIR resource (the JSON profile has no resourceType)."""
    return isinstance(data, dict) and "resourceType" in data


def resources(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(fullUrl or "", parsed resource) of a Bundle, one resource, or a prefetch map (its values; nulls skipped)."""
    from fhir.resources.R4B import get_fhir_model_class  # ~150 ms to import: only FHIR input pays it

    documents = [data] if is_fhir(data) else [value for _, value in sorted(data.items()) if value is not None]
    parsed = []
    for document in documents:
        if not is_fhir(document):
            raise FhirError(f"expected a FHIR resource (with resourceType), got {str(document)[:60]!r}")
        try:
            model = get_fhir_model_class(document["resourceType"]).model_validate(document)
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            raise FhirError(f"{document.get('resourceType')}/{document.get('id', '?')}: {_first(error)}") from None
        if model.get_resource_type() == "Bundle":
            parsed += [(entry.fullUrl or "", entry.resource) for entry in model.entry or [] if entry.resource is not None]
        else:
            parsed.append(("", model))
    return parsed


def _first(error: Exception) -> str:
    if isinstance(error, ValidationError):
        item = error.errors()[0]
        return f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
    return str(error).splitlines()[0]


def _codings(concept: Any) -> list[Any]:
    return list(concept.coding or []) if concept is not None else []


def _shown(concept: Any) -> str:
    """How a code is listed in unmapped: system|code of each coding, else its text."""
    codes = [f"{c.system or ''}|{c.code or ''}" for c in _codings(concept)]
    return ", ".join(codes) or (concept.text if concept is not None and concept.text else "(no code)")


def _status(concept: Any) -> str:
    return next((c.code for c in _codings(concept) if c.code), "")


def _when(value: Any) -> datetime:
    """A FHIR date/dateTime (str for partial dates, date, or aware datetime) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, str) and re.fullmatch(r"\d{4}(-\d{2})?", value):
        year, _, month = value.partition("-")
        return datetime(int(year), int(month or 1), 1, tzinfo=timezone.utc)
    return EPOCH


def about(resource: Any, patient_refs: set[str]) -> bool:
    """Whether a resource's subject (or patient) is one of these references, or it names none.
    A reference may be Patient/id, a full URL ending so, or the patient entry's fullUrl."""
    ref = getattr(resource, "subject", None) or getattr(resource, "patient", None)
    target = (ref.reference or "") if ref is not None else ""
    return not target or target in patient_refs or any(target.endswith("/" + p) for p in patient_refs)


class Reader:
    """Reads one patient's resources into a profile; `unmapped` collects what was not used."""

    def __init__(self, pack: Pack, as_of: date):
        self.pack = pack
        self.as_of = as_of
        self.profile: dict[str, Any] = {}
        self.conditions: set[str] = set()
        self.lists: dict[str, set[str]] = {"failed_therapies": set(), "contraindicated_therapies": set(), "medications": set()}
        self.labs: dict[str, list[tuple[datetime, str, Any, str]]] = {}  # lab -> [(when, resource, value, code)]
        self.severities: dict[str, set[str]] = {}
        self.medicines: dict[str, Any] = {}  # Medication resources by id, for medicationReference
        self.patient_refs: set[str] = set()
        self.urls: dict[int, str] = {}  # id(resource) -> its entry's fullUrl
        self.unmapped: list[dict[str, str]] = []

    def name(self, resource: Any) -> str:
        """Type/id, or the entry's fullUrl for a resource without an id (transaction bundles)."""
        kind = resource.get_resource_type()
        return f"{kind}/{resource.id}" if resource.id else f"{kind} {self.urls.get(id(resource), '(no id)')}"

    def skip(self, resource: Any, code: str, why: str) -> None:
        """List a resource (or its name) as not used, and why."""
        name = resource if isinstance(resource, str) else self.name(resource)
        self.unmapped.append({"resource": name, "code": code, "why": why})

    def read(self, items: list[tuple[str, Any]]) -> None:
        """Read (fullUrl, resource) pairs, as `resources` gives them."""
        patients = {r.id for _, r in items if r.get_resource_type() == "Patient"}
        if len(patients) > 1:
            raise FhirError(f"the input holds more than one patient ({', '.join(sorted(map(str, patients)))})")
        # how resources may refer to the patient: Patient/id, a full URL ending so, or its entry's fullUrl (urn:uuid:...)
        self.patient_refs = {f"Patient/{r.id}" for _, r in items if r.get_resource_type() == "Patient"}
        self.patient_refs |= {url for url, r in items if url and r.get_resource_type() == "Patient"}
        self.medicines = {r.id: r for _, r in items if r.get_resource_type() == "Medication"}
        self.urls = {id(r): url for url, r in items if url}
        for _, resource in items:
            kind = resource.get_resource_type()
            if kind == "Medication":
                continue
            if kind not in READ:
                self.skip(resource, "", f"{kind} resources are not read")
            elif kind != "Patient" and self.patient_refs and not about(resource, self.patient_refs):
                self.skip(resource, "", "about another patient")
            else:
                getattr(self, kind.lower())(resource)
        self.profile["labs"] = {lab: self._latest(results) for lab, results in sorted(self.labs.items())}
        for condition, severities in sorted(self.severities.items()):
            if len(severities) > 1:
                self.skip("Condition", condition, f"conflicting severities ({', '.join(sorted(severities))}): severity left unknown")

    def _latest(self, results: list[tuple[datetime, str, Any, str]]) -> Any:
        """The most recent result (ties: by resource id); the others are listed as superseded."""
        latest = max(results)
        for when, name, _, code in sorted(results):
            if (when, name) != latest[:2]:
                self.skip(name, code, f"superseded by the more recent {latest[1]}")
        return latest[2]

    def patient(self, resource: Any) -> None:
        if resource.gender in ("female", "male", "other"):
            self.profile["sex"] = resource.gender
        born = resource.birthDate
        if isinstance(born, date):
            before_birthday = (self.as_of.month, self.as_of.day) < (born.month, born.day)
            self.profile["age"] = self.as_of.year - born.year - before_birthday
        elif born is not None:
            self.skip(resource, "birthDate", f"birthDate {born} is not a full date: age left unknown")

    def condition(self, resource: Any) -> None:
        verification, clinical = _status(resource.verificationStatus), _status(resource.clinicalStatus)
        if verification in NOT_TRUE:
            return self.skip(resource, _shown(resource.code), f"verificationStatus {verification}: ignored")
        if clinical in NOT_ACTIVE:
            return self.skip(resource, _shown(resource.code), f"clinicalStatus {clinical}: not active")
        code = self.diagnosis(resource.code)
        if code is None:
            return self.skip(resource, _shown(resource.code), "no ICD-10-CM code the pack maps (SNOMED CT is not mapped)")
        self.conditions.add(code)
        severity = resource.severity
        words = [severity.text or ""] + [c.display or "" for c in _codings(severity)] if severity is not None else []
        for word in words:
            if word.strip().lower() in ("mild", "moderate", "severe"):
                self.severities.setdefault(code, set()).add(word.strip().lower())

    def diagnosis(self, concept: Any) -> str | None:
        """ICD-10-CM: the code itself, else its nearest listed parent (L63.2 -> L63; M33.03 -> none)."""
        table = self.pack.diagnoses.standard_codes["icd10"]
        for coding in _codings(concept):
            if coding.system == ICD10CM and coding.code:
                code = coding.code.strip().upper()
                while code:
                    if code in table:
                        return table[code]
                    code = code[:-1].rstrip(".") if "." in code else ""
        return None

    def observation(self, resource: Any) -> None:
        if resource.status not in FINAL:
            return self.skip(resource, _shown(resource.code), f"status {resource.status}: only final results are used")
        when = _when(resource.effectiveDateTime or resource.effectiveInstant or resource.issued)
        if resource.effectivePeriod is not None and when == EPOCH:
            when = _when(resource.effectivePeriod.end or resource.effectivePeriod.start)
        parts = [(resource.code, resource.valueQuantity)] + [(c.code, c.valueQuantity) for c in resource.component or []]
        parts = [(concept, quantity) for concept, quantity in parts if quantity is not None]
        used = [self._lab(resource, concept, quantity, when) for concept, quantity in parts]
        if not any(used):
            return self.skip(resource, _shown(resource.code), "no LOINC code the pack maps, with a quantity")
        for (concept, _), lab in zip(parts, used):
            if not lab:
                self.skip(resource, _shown(concept), "component: no LOINC code the pack maps")

    def _lab(self, resource: Any, concept: Any, quantity: Any, when: datetime) -> bool:
        codes = {c.code for c in _codings(concept) if c.system == LOINC}
        lab = next((name for name, lab in sorted(self.pack.labs.items()) if codes & set(lab.loinc)), None)
        if lab is None:
            return False
        unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit or ""
        try:
            if quantity.value is None:
                raise UnknownCode("no value")
            if quantity.comparator:
                raise UnknownCode(f"value {quantity.comparator}{quantity.value} is not an exact number")
            value = self.pack.labs[lab].convert(quantity.value, unit)  # Decimal -> exact Fraction
        except UnknownCode as error:
            self.skip(resource, _shown(concept), f"{lab}: {error}")
            return True
        self.labs.setdefault(lab, []).append((when, self.name(resource), value, _shown(concept)))
        return True

    def medicationstatement(self, resource: Any) -> None:
        self._medication(resource, resource.statusReason)

    def medicationrequest(self, resource: Any) -> None:
        self._medication(resource, [resource.statusReason] if resource.statusReason else [])

    def _medication(self, resource: Any, reasons: list[Any]) -> None:
        concept = self.medicine_concept(resource)
        code = self.treatment(concept)
        status = resource.status
        if code is None:
            return self.skip(resource, _shown(concept), "no RxNorm code or ingredient name the pack maps")
        if status in CURRENT:
            self.lists["medications"].add(code)
        elif status == "stopped" and self._failed(reasons):
            self.lists["failed_therapies"].add(code)
        elif status == "stopped":
            self.skip(resource, _shown(concept), "stopped without a status reason that says it failed")
        else:
            self.skip(resource, _shown(concept), f"status {status}: neither current nor failed")

    def medicine_concept(self, resource: Any) -> Any:
        """medicationCodeableConcept, or the code of the Medication it references (contained or in the input)."""
        if resource.medicationCodeableConcept is not None:
            return resource.medicationCodeableConcept
        ref = (resource.medicationReference.reference or "") if resource.medicationReference else ""
        if ref.startswith("#"):  # a contained Medication
            found = next((m for m in resource.contained or [] if m.id == ref[1:] and m.get_resource_type() == "Medication"), None)
        else:
            found = self.medicines.get(ref.rpartition("Medication/")[2])
        return found.code if found is not None else None

    def _failed(self, reasons: list[Any]) -> bool:
        texts = [r.text or "" for r in reasons] + [c.display or "" for r in reasons for c in _codings(r)]
        return any(phrase in text.lower() for text in texts for phrase in self.pack.fhir.failure_reasons)

    def treatment(self, concept: Any) -> str | None:
        """RxNorm product RxCUI, else the ingredient named by the text or a display (before any strength)."""
        table = self.pack.treatments.standard_codes["rxcui"]
        codings = _codings(concept)
        for coding in codings:
            if coding.system == RXNORM and coding.code in table:
                return table[coding.code]
        texts = [concept.text] if concept is not None and concept.text else []
        for text in texts + [c.display for c in codings if c.display]:
            for candidate in (text, re.split(r"[\d\[(]", text)[0]):
                if code := self.pack.treatments.lookup(candidate):
                    return code
        return None

    def allergyintolerance(self, resource: Any) -> None:
        verification, clinical = _status(resource.verificationStatus), _status(resource.clinicalStatus)
        code = self.treatment(resource.code)
        if verification in NOT_TRUE or clinical in NOT_ACTIVE:
            return self.skip(resource, _shown(resource.code), f"{verification or clinical}: ignored")
        if code is None:
            return self.skip(resource, _shown(resource.code), "no RxNorm code or ingredient name the pack maps")
        self.lists["contraindicated_therapies"].add(code)

    def is_skin(self, condition: str) -> bool:
        return "skin_disease" in self.pack.diagnoses.closures[condition]

    def skin_conditions(self) -> list[str]:
        """The active conditions that are skin diseases: what a JAK inhibitor could be for."""
        return sorted(c for c in self.conditions if self.is_skin(c))

    def profile_for(self, condition: str | None) -> dict[str, Any]:
        """The JSON input profile, treating `condition` (or the one active skin condition found)."""
        if condition is None:
            skin = self.skin_conditions()
            if len(skin) != 1:
                found = f"several ({', '.join(skin)})" if skin else "none"
                raise FhirError(f"one active skin condition is needed to know what to treat, found {found}: name it (--condition; condition= in Python)")
            condition = skin[0]
        condition = self.pack.diagnoses.normalise(condition)
        profile = {**self.profile, "condition": condition, "comorbidities": sorted(self.conditions - {condition})}
        severities = self.severities.get(condition, set())
        if len(severities) == 1:
            profile["severity"] = next(iter(severities))
        profile.update({name: sorted(codes) for name, codes in self.lists.items()})
        return profile

    def sorted_unmapped(self) -> list[Unmapped]:
        return [Unmapped(**item) for item in sorted(self.unmapped, key=lambda i: (i["resource"], i["code"], i["why"]))]
