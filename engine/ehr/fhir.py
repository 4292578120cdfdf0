"""FHIR R4 input: a Bundle, one resource or a CDS Hooks prefetch map -> the JSON input profile.

Resources are parsed with fhir.resources' R4B models (its default package is R5, which rejects R4
medication resources). Codes map through the pack's vocabularies (ICD-10-CM on diagnoses, RxNorm
on treatments, LOINC on labs), which hold only codes a source verifies. Whatever is not used goes
to `unmapped` with the reason, never silently dropped:
  - Condition (ICD-10-CM, else SNOMED CT): refuted or entered-in-error ignored; inactive,
    remission or resolved not active.
  - Observation: only final, amended or corrected; the most recent result per lab, or per fact
    read from a coded answer (smoking, pregnancy: vocabulary/fhir.yaml), wins.
  - MedicationStatement / MedicationRequest: active or on-hold -> medications; stopped with a
    status reason the pack reads as failure -> failed_therapies.
  - AllergyIntolerance to a therapy (active, not refuted) -> contraindicated_therapies.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..decision.result import Unmapped
from ..knowledge.vocabulary import UnknownCode, icd10_code

if TYPE_CHECKING:
    from ..knowledge.pack import Pack

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
READ = ("Patient", "Condition", "Observation", "MedicationStatement", "MedicationRequest", "AllergyIntolerance")
NOT_ACTIVE = {"inactive", "remission", "resolved"}
NOT_TRUE = {"refuted", "entered-in-error"}
FINAL = {"final", "amended", "corrected"}
CURRENT = {"active", "on-hold"}
EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)
STRENGTH = re.compile(r"\d[\d.,]*\s*(%|mg|mcg|g|ml|mL)(?=\W|$)")
TOPICAL = re.compile(r"\b(cream|ointment|gel|lotion|foam|shampoo|topical|cutaneous|solution for skin)\b", re.IGNORECASE)


MESSAGE_MAX = 300  # an error names the resource and element; it never echoes the input


class FhirError(ValueError):
    """FHIR input that cannot be read; str() is one line of bounded length."""

    def __init__(self, message: str):
        line = " ".join(message.split())
        super().__init__(line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 1] + "…")


def _clip(value: Any, size: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= size else text[: size - 1] + "…"


@functools.cache
def _fields(model: type) -> dict[str, str]:
    """A FHIR model's JSON names -> its attribute names ("class" -> "class_fhir")."""
    return {field.alias or name: name for name, field in model.model_fields.items()}


def _strict(raw: Any, parsed: Any, path: str) -> None:
    """FHIR JSON is not lax (fhir.resources is): a decimal or integer is a JSON number and a
    boolean a JSON true/false, never a string. Walks the document beside its parsed model."""
    if isinstance(raw, dict):
        for key, value in raw.items():
            if key.startswith("_") or key == "resourceType":
                continue
            if isinstance(parsed, dict):
                child = parsed.get(key)
            else:
                name = _fields(type(parsed)).get(key)
                child = getattr(parsed, name) if name else None
            _strict(value, child, f"{path}.{key}")
    elif isinstance(raw, list) and isinstance(parsed, list):
        for index, (item, child) in enumerate(zip(raw, parsed)):
            _strict(item, child, f"{path}[{index}]")
    elif isinstance(parsed, bool) and not isinstance(raw, bool):
        raise FhirError(f"{path}: a FHIR boolean is JSON true or false, got {_clip(raw)}")
    elif isinstance(parsed, (int, float, Decimal)) and not isinstance(parsed, bool) and (isinstance(raw, bool) or not isinstance(raw, (int, float))):
        raise FhirError(f"{path}: a FHIR number is a JSON number, got {_clip(raw)}")


def is_fhir(data: Any) -> bool:
    """A FHIR resource (the JSON profile has no resourceType)."""
    return isinstance(data, dict) and "resourceType" in data


def load_models() -> None:
    """Import the fhir.resources models of what is parsed (else the first chart pays ~150 ms)."""
    from fhir.resources.R4B import get_fhir_model_class

    for kind in (*READ, "Medication", "Bundle"):
        get_fhir_model_class(kind)


def resources(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(fullUrl or "", parsed resource) of a Bundle, one resource, or a prefetch map (its values; nulls skipped)."""
    from fhir.resources.R4B import get_fhir_model_class  # ~150 ms to import: only FHIR input pays it

    documents = [data] if is_fhir(data) else [value for _, value in sorted(data.items()) if value is not None]
    parsed = []
    for document in documents:
        if not is_fhir(document):
            raise FhirError(f"expected a FHIR resource (with resourceType), got {_clip(document, 60)}")
        name = f"{_clip(document.get('resourceType'), 30)}/{_clip(document.get('id', '?'), 30)}".replace("'", "")
        try:
            model = get_fhir_model_class(document["resourceType"]).model_validate(document)
            _strict(document, model, name)
        except RecursionError:
            raise FhirError(f"{name}: nested too deeply to be a FHIR resource") from None
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            raise FhirError(str(error) if isinstance(error, FhirError) else f"{name}: {_first(error)}") from None
        if model.get_resource_type() == "Bundle":
            parsed += [(entry.fullUrl or "", entry.resource) for entry in model.entry or [] if entry.resource is not None]
        else:
            parsed.append(("", model))
    return parsed


def _first(error: Exception) -> str:
    """The first problem, naming the element; never the value given (it may be a whole document)."""
    if isinstance(error, ValidationError):
        item = error.errors(include_input=False, include_url=False)[0]
        return f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
    return (str(error).splitlines() or [type(error).__name__])[0]


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

    def __init__(self, pack: Pack, as_of: date, drafts: bool = False):
        self.pack = pack
        self.as_of = as_of
        self.drafts = drafts  # also read by the draft (VERIFIED-S) mappings, listing each read
        self.observed = pack.fhir.observations | (pack.fhir.draft.observations if drafts else {})
        self.profile: dict[str, Any] = {}
        self.conditions: set[str] = set()
        self.lists: dict[str, set[str]] = {"failed_therapies": set(), "contraindicated_therapies": set(), "medications": set()}
        self.labs: dict[str, list[tuple[datetime, str, Any, str]]] = {}  # lab -> [(when, resource, value, code)]
        self.answers: dict[str, list[tuple[datetime, str, Any, str]]] = {}  # fact -> the same, from coded answers
        self.severities: dict[str, set[str]] = {}
        self.medicines: dict[str, Any] = {}  # Medication resources by id, for medicationReference
        self.patient_refs: set[str] = set()
        self.urls: dict[int, str] = {}  # id(resource) -> its entry's fullUrl
        self.unmapped: list[dict[str, str]] = []
        self.drafted: list[dict[str, str]] = []  # what a draft mapping read

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
        self.profile.update({fact: self._latest(results) for fact, results in sorted(self.answers.items())})
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
        try:
            code = self.diagnosis(resource, resource.code)
        except UnknownCode as error:
            return self.skip(resource, _shown(resource.code), str(error))
        drafted = [self.pack.fhir.draft.snomed[c.code] for c in _codings(resource.code) if c.system == SNOMED and c.code in self.pack.fhir.draft.snomed]
        if code is None and drafted:
            return self.draft_only(resource, resource.code, drafted[0])
        if code is None:
            return self.skip(resource, _shown(resource.code), "no ICD-10-CM or SNOMED CT code the pack maps")
        self.conditions.add(code)
        severity = resource.severity
        words = [severity.text or ""] + [c.display or "" for c in _codings(severity)] if severity is not None else []
        for word in words:
            if word.strip().lower() in ("mild", "moderate", "severe"):
                self.severities.setdefault(code, set()).add(word.strip().lower())

    def diagnosis(self, resource: Any, concept: Any) -> str | None:
        """ICD-10-CM (the code, else its nearest listed parent in the CMS code list: L63.2 -> L63;
        M33.03 -> none), else SNOMED CT (the pack's verified concepts; draft ones if asked).
        UnknownCode when nothing maps and an ICD-10-CM code given is not one."""
        table, invalid = self.pack.diagnoses.standard_codes["icd10"], None
        for coding in _codings(concept):
            if coding.system == ICD10CM and coding.code:
                try:
                    if code := icd10_code(coding.code, table):
                        return code
                except UnknownCode as error:
                    invalid = error
        found = self.coded(resource, concept, SNOMED, self.pack.diagnoses.standard_codes["snomed"], "snomed")
        if found is None and invalid is not None:
            raise invalid
        return found

    def draft_only(self, resource: Any, concept: Any, read_as: str) -> None:
        """Not read: only a draft mapping (codes.md VERIFIED-S) knows the code, and drafts are off."""
        self.skip(resource, _shown(concept), f"{read_as}: mapped only as a draft (codes.md VERIFIED-S), read with drafts included")

    def coded(self, resource: Any, concept: Any, system: str, table: dict[str, str], draft: str) -> str | None:
        """A coding of `system` in the pack's verified `table`; else, with drafts, in the draft
        mapping `draft` of fhir.yaml (the read is listed in read_by_draft)."""
        codes = [c.code for c in _codings(concept) if c.system == system and c.code]
        if found := next((table[code] for code in codes if code in table), None):
            return found
        drafted: dict[str, str] = getattr(self.pack.fhir.draft, draft) if self.drafts else {}
        code = next((code for code in codes if code in drafted), None)
        if code is not None:
            self.drafted.append({"resource": self.name(resource), "code": f"{system}|{code}", "why": f"read as {drafted[code]} by the draft {draft} mapping (codes.md VERIFIED-S)"})
            return drafted[code]
        return None

    def observation(self, resource: Any) -> None:
        if resource.status not in FINAL:
            return self.skip(resource, _shown(resource.code), f"status {resource.status}: only final results are used")
        when = _when(resource.effectiveDateTime or resource.effectiveInstant or resource.issued)
        if resource.effectivePeriod is not None and when == EPOCH:
            when = _when(resource.effectivePeriod.end or resource.effectivePeriod.start)
        loinc = {c.code for c in _codings(resource.code) if c.system == LOINC}
        fact = next((name for name, mapping in sorted(self.observed.items()) if loinc & set(mapping.loinc)), None)
        if fact is not None:
            return self._answer(resource, fact, when)
        drafted = next((name for name, mapping in sorted(self.pack.fhir.draft.observations.items()) if loinc & set(mapping.loinc)), None)
        if drafted is not None:
            return self.draft_only(resource, resource.code, drafted)
        parts = [(resource.code, resource.valueQuantity)] + [(c.code, c.valueQuantity) for c in resource.component or []]
        parts = [(concept, quantity) for concept, quantity in parts if quantity is not None]
        used = [self._lab(resource, concept, quantity, when) for concept, quantity in parts]
        if not any(used):
            return self.skip(resource, _shown(resource.code), "no LOINC code the pack maps, with a quantity")
        for (concept, _), lab in zip(parts, used):
            if not lab:
                self.skip(resource, _shown(concept), "component: no LOINC code the pack maps")

    def _answer(self, resource: Any, fact: str, when: datetime) -> None:
        """A coded answer (valueCodeableConcept) read into `fact`, as the pack's mapping says."""
        answers = self.observed[fact].answers
        key = next((f"{c.system}|{c.code}" for c in _codings(resource.valueCodeableConcept) if f"{c.system}|{c.code}" in answers), None)
        if key is None:
            return self.skip(resource, _shown(resource.valueCodeableConcept), f"{fact}: no answer code the pack maps")
        if answers[key] is None:
            return self.skip(resource, key, f"{fact}: this answer leaves it unknown")
        if fact not in self.pack.fhir.observations:
            self.drafted.append({"resource": self.name(resource), "code": key, "why": f"read as {fact} {answers[key]} by the draft mapping (codes.md VERIFIED-S)"})
        self.answers.setdefault(fact, []).append((when, self.name(resource), answers[key], key))

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
        self._medication(resource, resource.statusReason or [])

    def medicationrequest(self, resource: Any) -> None:
        self._medication(resource, [resource.statusReason] if resource.statusReason else [])

    def medicine(self, resource: Any, concept: Any) -> str | None:
        """`treatment`, listing the resource with why when it gives none."""
        try:
            code = self.treatment(concept)
        except UnknownCode as error:
            return self.skip(resource, _shown(concept), str(error))
        if code is None:
            self.skip(resource, _shown(concept), "no RxNorm code or ingredient name the pack maps")
        return code

    def _medication(self, resource: Any, reasons: list[Any]) -> None:
        concept = self.medicine_concept(resource)
        code = self.medicine(resource, concept)
        status = resource.status
        if code is None:
            return
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
        """RxNorm product RxCUI, else the ingredient named by the text or a display (before any
        strength) unless it names a topical form: "ketoconazole 2% cream" is not the systemic
        interacting medicine, nor "ruxolitinib 1.5% cream" oral ruxolitinib."""
        table = self.pack.treatments.standard_codes["rxcui"]
        codings = _codings(concept)
        for coding in codings:
            if coding.system == RXNORM and coding.code in table:
                return table[coding.code]
            if coding.system == RXNORM and coding.code in self.pack.fhir.not_systemic:
                raise UnknownCode(self.pack.fhir.not_systemic[coding.code])
        texts = [concept.text] if concept is not None and concept.text else []
        for text in texts + [c.display for c in codings if c.display]:
            unstrengthed = " ".join(STRENGTH.sub(" ", text).split())  # "ruxolitinib 1.5% cream" -> "ruxolitinib cream"
            if code := self.pack.treatments.lookup(text) or self.pack.treatments.lookup(unstrengthed):
                return code
            if TOPICAL.search(text):
                raise UnknownCode(f"{text!r} is a topical form: not mapped by its ingredient's name")
            if code := self.pack.treatments.lookup(re.split(r"[\d\[(]", text)[0]):
                return code
        return None

    def allergyintolerance(self, resource: Any) -> None:
        verification, clinical = _status(resource.verificationStatus), _status(resource.clinicalStatus)
        if verification in NOT_TRUE or clinical in NOT_ACTIVE:
            return self.skip(resource, _shown(resource.code), f"{verification or clinical}: ignored")
        if code := self.medicine(resource, resource.code):
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
