"""FHIR R4 input: a Bundle, one resource or a CDS Hooks prefetch map -> the JSON input profile.

Each resource is routed on its raw JSON (resourceType, the codes the pack maps, the patient
reference) before any model is built; only what the rules read is then validated, strictly, with
the small models of `elements`. A resource type the reader never uses, or an Observation whose
codes the pack does not map, is listed in `unmapped`, never parsed: it can never refuse a chart.
Codes map through the pack's vocabularies (ICD-10-CM on diagnoses, RxNorm on treatments, LOINC on
labs), which hold only codes a source verifies. Whatever is not used goes to `unmapped` with the
reason, never silently dropped:
  - Condition (ICD-10-CM, else SNOMED CT): refuted or entered-in-error ignored; inactive,
    remission or resolved not active.
  - Observation: only final, amended or corrected. The newest result per lab, or per fact read
    from a coded answer (smoking, pregnancy: vocabulary/fhir.yaml), decides: when it cannot be
    used (a unit the pack cannot convert, a comparator, no value, an answer the pack does not
    map) or results at that time conflict, the fact is unknown, never taken from an older result.
  - MedicationStatement / MedicationRequest: active or on-hold -> medications; stopped with a
    status reason the pack reads as failure -> failed_therapies.
  - AllergyIntolerance to a therapy (active, not refuted) -> contraindicated_therapies.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..decision.result import Unmapped
from ..knowledge.vocabulary import UnknownCode, icd10_code

if TYPE_CHECKING:
    from ..knowledge.pack import Pack

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
# US Core 9 (STU9) USCoreIndividualSexExtension: valueCoding bound (extensible) to VSAC Federal
# Administrative Sex 2.16.840.1.113762.1.4.1021.121 (HL7/US-Core input/resources-yaml/
# StructureDefinition-us-core-individual-sex.yml; its patient examples use SNOMED CT 248152002 / 248153007)
INDIVIDUAL_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-individual-sex"
READ = ("Patient", "Condition", "Observation", "MedicationStatement", "MedicationRequest", "AllergyIntolerance")
NOT_ACTIVE = {"inactive", "remission", "resolved"}
NOT_TRUE = {"refuted", "entered-in-error"}
FINAL = {"final", "amended", "corrected"}
CURRENT = {"active", "on-hold"}
EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)
STRENGTH = re.compile(r"\d[\d.,]*\s*(%|mg|mcg|g|ml|mL)(?=\W|$)")
TOPICAL = re.compile(r"\b(cream|ointment|gel|lotion|foam|shampoo|topical|cutaneous|solution for skin)\b", re.IGNORECASE)
KIND = re.compile(r"[A-Z][A-Za-z]{0,63}")


MESSAGE_MAX = 300  # an error names the resource and element; it never echoes the input


class FhirError(ValueError):
    """FHIR input that cannot be read; str() is one line of bounded length."""

    def __init__(self, message: str):
        line = " ".join(message.split())
        super().__init__(line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 1] + "…")


def _clip(value: Any, size: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= size else text[: size - 1] + "…"


def is_fhir(data: Any) -> bool:
    """A FHIR resource (the JSON profile has no resourceType)."""
    return isinstance(data, dict) and "resourceType" in data


def load_models() -> None:
    """Import the models of what is read (else the first chart pays the import of fhir_core's types)."""
    from . import elements  # noqa: F401


def resources(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(fullUrl or "", resource JSON) of a Bundle (whatever its type, or none), one resource, or a
    prefetch map (its values; nulls skipped). Only the envelope is checked here: each resource
    must be a JSON object with a resourceType; what is in it is read (and checked) by the Reader."""
    documents = [data] if is_fhir(data) else [value for _, value in sorted(data.items()) if value is not None]
    found = []
    for document in documents:
        _kind(document, "")
        if document["resourceType"] != "Bundle":
            found.append(("", document))
            continue
        entries = document.get("entry") or []
        if not isinstance(entries, list):
            raise FhirError(f"{_name(document)}: entry: a Bundle's entry is a JSON array")
        for index, entry in enumerate(entries):
            where = f"{_name(document)}: entry.{index}"
            if not isinstance(entry, dict):
                raise FhirError(f"{where}: an entry is a JSON object")
            url, resource = entry.get("fullUrl"), entry.get("resource")
            if url is not None and not isinstance(url, str):
                raise FhirError(f"{where}.fullUrl: a URI is a JSON string, got {_clip(url)}")
            if resource is not None:
                found.append((url or "", _kind(resource, f"{where}.resource")))
    return found


def _kind(document: Any, where: str) -> dict[str, Any]:
    """A resource's JSON, refused unless it is an object with a resourceType name."""
    if not is_fhir(document):
        raise FhirError(f"{where + ': ' if where else ''}expected a FHIR resource (with resourceType), got {_clip(document, 60)}")
    if not isinstance(document["resourceType"], str) or not KIND.fullmatch(document["resourceType"]):
        raise FhirError(f"{where + ': ' if where else ''}resourceType {_clip(document['resourceType'])} is not a FHIR resource type name")
    return document


def _name(raw: dict[str, Any], url: str = "") -> str:
    """Type/id of a resource's JSON, else its entry's fullUrl (transaction bundles); never the input at length."""
    kind, rid = raw["resourceType"], raw.get("id")
    if rid is None:
        return f"{kind} {url or '(no id)'}"
    return f"{kind}/{rid if isinstance(rid, str) and len(rid) <= 64 else _clip(rid, 30)}"


def parse(model: type[BaseModel], raw: Any, name: str, element: str = "") -> Any:
    """`raw` validated by one of the `elements` models; a FhirError naming the resource and element."""
    try:
        return model.model_validate(raw)
    except RecursionError:
        raise FhirError(f"{name}: nested too deeply to be a FHIR resource") from None
    except ValidationError as error:
        raise FhirError(f"{name}: {_first(error, element)}") from None


def _first(error: ValidationError, element: str = "") -> str:
    """The first problem, naming the element; never the value given (it may be a whole document)."""
    item = error.errors(include_input=False, include_url=False)[0]
    path = ".".join([element] * bool(element) + [str(p) for p in item["loc"]])
    return f"{path or '(resource)'}: {item['msg']}"


def _codings(concept: Any) -> list[Any]:
    return list(concept.coding or []) if concept is not None else []


def _shown(concept: Any) -> str:
    """How a code is listed in unmapped: system|code of each coding, else its text."""
    codes = [f"{c.system or ''}|{c.code or ''}" for c in _codings(concept)]
    return ", ".join(codes) or (concept.text if concept is not None and concept.text else "(no code)")


def _raw_codes(concept: Any, system: str) -> set[str]:
    """The codes of one system in a CodeableConcept's JSON, for routing (nothing validated)."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return {c["code"] for c in codings or [] if isinstance(c, dict) and c.get("system") == system and isinstance(c.get("code"), str)} if isinstance(codings, list) else set()


def _routable(concept: Any) -> bool:
    """A CodeableConcept's JSON whose codings can be told apart without validating it."""
    if concept is None:
        return True
    codings = concept.get("coding", []) if isinstance(concept, dict) else None
    return isinstance(codings, list) and all(isinstance(c, dict) for c in codings)


def _items(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The objects of a JSON array element, for routing (nothing validated)."""
    items = raw.get(key)
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


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
    """Whether a resource (model or JSON) names one of these references as its subject (or
    patient), or names none. A reference may be Patient/id, a full URL ending so, or the patient
    entry's fullUrl."""
    if isinstance(resource, dict):
        ref = resource.get("subject") or resource.get("patient")
        target = ref.get("reference") if isinstance(ref, dict) else None
    else:
        ref = getattr(resource, "subject", None) or getattr(resource, "patient", None)
        target = ref.reference if ref is not None else None
    target = target if isinstance(target, str) else ""
    return not target or target in patient_refs or any(target.endswith("/" + p) for p in patient_refs)


def _listed(concept: Any) -> str:
    """How a code not validated (an Observation routed out) is listed: as `_shown`, or a mark."""
    from .elements import Concept

    try:
        return _shown(Concept.model_validate(concept)) if concept is not None else "(no code)"
    except (ValidationError, RecursionError):
        return "(code not readable)"


Result = tuple[datetime, str, Any, str, str]  # (when, resource, value or None when it cannot be used, code, why not)


class Reader:
    """Reads one patient's resources into a profile; `unmapped` collects what was not used."""

    def __init__(self, pack: Pack, as_of: date, drafts: bool = False):
        from . import elements

        self.models = elements
        self.pack = pack
        self.as_of = as_of
        self.drafts = drafts  # also read by the draft (VERIFIED-S) mappings, listing each read
        self.observed = pack.fhir.observations | (pack.fhir.draft.observations if drafts else {})
        self.loinc = {code for lab in pack.labs.values() for code in lab.loinc}
        self.loinc |= {code for mapping in (pack.fhir.observations | pack.fhir.draft.observations).values() for code in mapping.loinc}
        self.profile: dict[str, Any] = {}
        self.conditions: set[str] = set()
        self.lists: dict[str, set[str]] = {"failed_therapies": set(), "contraindicated_therapies": set(), "medications": set()}
        self.labs: dict[str, list[Result]] = {}  # lab -> its results
        self.answers: dict[str, list[Result]] = {}  # fact -> the same, from coded answers
        self.severities: dict[str, set[str]] = {}
        self.medicines: dict[str, dict[str, Any]] = {}  # Medication JSON by id and by fullUrl, for medicationReference
        self.patient_refs: set[str] = set()
        self.urls: dict[int, str] = {}  # id(resource) -> its entry's fullUrl
        self.unmapped: list[dict[str, str]] = []
        self.drafted: list[dict[str, str]] = []  # what a draft mapping read

    def name(self, resource: Any) -> str:
        """Type/id, or the entry's fullUrl for a resource without an id (transaction bundles)."""
        if isinstance(resource, dict):
            return _name(resource, self.urls.get(id(resource), ""))
        kind = resource.get_resource_type()
        return f"{kind}/{resource.id}" if resource.id else f"{kind} {self.urls.get(id(resource), '(no id)')}"

    def skip(self, resource: Any, code: str, why: str) -> None:
        """List a resource (or its name) as not used, and why."""
        name = resource if isinstance(resource, str) else self.name(resource)
        self.unmapped.append({"resource": name, "code": code, "why": why})

    def read(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Read (fullUrl, resource JSON) pairs, as `resources` gives them."""
        self.urls = {id(r): url for url, r in items if url}
        raws = [(url, r) for url, r in items if r["resourceType"] == "Patient"]
        patients = [(url, self.parse(r)) for url, r in raws]
        if len({p.id for _, p in patients}) > 1 or len(patients) > 1 and patients[0][1].id is None:
            raise FhirError(f"the input holds more than one patient ({', '.join(sorted(str(p.id) for _, p in patients))})")
        # how resources may refer to the patient: Patient/id, a full URL ending so, or its entry's fullUrl (urn:uuid:...)
        self.patient_refs = {f"Patient/{p.id}" for _, p in patients if p.id} | {url for url, _ in patients if url}
        self.medicines = {key: r for url, r in items if r["resourceType"] == "Medication" for key in (r.get("id"), url) if isinstance(key, str) and key}
        for (_, raw), (_, patient) in zip(raws[:1], patients):
            self.patient(raw, patient)
        for _, raw in items:
            kind = raw["resourceType"]
            if kind in ("Patient", "Medication"):
                continue
            if kind not in READ:
                self.skip(raw, "", f"{kind} resources are not read")
            elif self.patient_refs and not about(raw, self.patient_refs):
                self.skip(raw, "", "about another patient")
            else:
                getattr(self, kind.lower())(raw)
        self.profile["labs"] = {lab: value for lab, results in sorted(self.labs.items()) if (value := self._newest(lab, results)) is not None}
        self.profile.update({fact: value for fact, results in sorted(self.answers.items()) if (value := self._newest(fact, results)) is not None})
        for condition, severities in sorted(self.severities.items()):
            if len(severities) > 1:
                self.skip("Condition", condition, f"conflicting severities ({', '.join(sorted(severities))}): severity left unknown")

    def parse(self, raw: dict[str, Any]) -> Any:
        """A resource's JSON as its `elements` model (what the rules read, strictly)."""
        return parse(self.models.MODELS[raw["resourceType"]], raw, self.name(raw))

    def _newest(self, fact: str, results: list[Result]) -> Any:
        """The newest result decides, never an older one. A resource listed twice with different
        values cannot be used; results at the newest time that disagree leave the fact unknown,
        as does a newest result that cannot be used. The rest are listed with why."""
        versions: dict[tuple[str, str], set[tuple[datetime, Any]]] = {}  # (resource, code) -> its versions
        for when, name, value, code, _ in results:
            versions.setdefault((name, code), set()).add((when, value))
        twice = {key for key, found in versions.items() if len(found) > 1}
        results = sorted({(when, name, None if (name, code) in twice else value, code,
                           f"{fact}: {name} is given more than once with different values" if (name, code) in twice else why)
                          for when, name, value, code, why in results}, key=lambda r: (r[0], r[1], r[3], r[4]))
        newest = results[-1][0]
        latest = [r for r in results if r[0] == newest]
        usable = [r for r in latest if r[2] is not None]
        values = sorted({str(r[2]) for r in usable})
        older = [r for r in results if r[0] != newest]
        kept = usable[-1] if len(values) == 1 else None
        for when, name, value, code, why in latest:
            if kept is not None and value is None:
                self.skip(name, code, why)
            elif kept is not None and name != kept[1]:
                self.skip(name, code, f"superseded by the more recent {kept[1]}")
            elif kept is None and len(values) > 1:
                self.skip(name, code, f"{fact}: conflicting results at the newest time ({', '.join(values)}): {fact} left unknown")
            elif kept is None:
                usable_older = sorted({r[1] for r in older if r[2] is not None})
                unused = f"; {fact} left unknown, the older {', '.join(usable_older)} not used in its place" if usable_older else ""
                self.skip(name, code, why + unused)
        for when, name, _, code, _ in older:
            self.skip(name, code, f"superseded by the more recent {kept[1] if kept else max(r[1] for r in latest)}")
        return kept[2] if kept else None

    def patient(self, raw: dict[str, Any], resource: Any) -> None:
        gender = resource.gender if resource.gender in ("female", "male", "other") else None
        sex = self.individual_sex(raw, resource)
        if gender and sex and gender != sex:
            self.skip(resource, "gender", f"gender {gender} and the US Core individual sex {sex} differ: sex left unknown")
        elif gender or sex:
            self.profile["sex"] = sex or gender
        born = resource.birthDate
        if isinstance(born, date):
            before_birthday = (self.as_of.month, self.as_of.day) < (born.month, born.day)
            self.profile["age"] = self.as_of.year - born.year - before_birthday
        elif born is not None:
            self.skip(resource, "birthDate", f"birthDate {born} is not a full date: age left unknown")

    def individual_sex(self, raw: dict[str, Any], resource: Any) -> str | None:
        """The US Core individual-sex extension's value, read by the draft mapping of fhir.yaml
        (its codes are not yet graded in codes.md); listed when not read."""
        found = [e for e in _items(raw, "extension") if e.get("url") == INDIVIDUAL_SEX]
        codings = [parse(self.models.Extension, e, self.name(resource), "extension").valueCoding for e in found]
        keys = sorted({f"{c.system}|{c.code}" for c in codings if c is not None})
        mapped = self.pack.fhir.draft.sex
        for key in keys:
            if key not in mapped:
                self.skip(resource, key, "individual sex: no code the pack maps")
            elif not self.drafts:
                self.skip(resource, key, f"individual sex {mapped[key]}: mapped only as a draft (US Core 9 codes not yet in codes.md), read with drafts included")
        values = sorted({mapped[key] for key in keys if key in mapped})
        if not self.drafts or not values:
            return None
        if len(values) > 1:
            self.skip(resource, ", ".join(keys), "individual sex: conflicting values: sex left unknown")
            return None
        self.drafted += [{"resource": self.name(resource), "code": key, "why": f"read as sex {mapped[key]} by the draft individual sex mapping"} for key in keys if key in mapped]
        return values[0]

    def condition(self, raw: dict[str, Any]) -> None:
        resource = self.parse(raw)
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

    def observation(self, raw: dict[str, Any]) -> None:
        """Routed on its JSON: only an Observation whose code (or a component's) the pack maps is
        validated and read; the others are listed. A final status is needed before anything."""
        name, status = self.name(raw), raw.get("status")
        if isinstance(status, str) and status not in FINAL:
            return self.skip(name, _listed(raw.get("code")), f"status {status}: only final results are used")
        concepts = [raw.get("code"), *(part.get("code") for part in _items(raw, "component"))]
        if not all(map(_routable, concepts)):  # a code the router cannot read may be a mapped lab's: read strictly
            self.parse(raw)
        loinc = {c for concept in concepts for c in _raw_codes(concept, LOINC)}
        if not loinc & self.loinc:
            return self.skip(name, _listed(raw.get("code")), "no LOINC code the pack maps, with a quantity")
        resource = self.parse(raw)
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
        # a panel's own code without a value is not a result: its components are
        whole = [(resource.code, resource.valueQuantity)] if resource.valueQuantity is not None or not resource.component else []
        parts = whole + [(c.code, c.valueQuantity) for c in resource.component or []]
        used = [self._lab(resource, concept, quantity, when) for concept, quantity in parts]
        if not any(used):
            return self.skip(resource, _shown(resource.code), "no LOINC code the pack maps, with a quantity")
        for (concept, quantity), lab in zip(parts, used):
            if not lab and quantity is not None:
                self.skip(resource, _shown(concept), "component: no LOINC code the pack maps")

    def _answer(self, resource: Any, fact: str, when: datetime) -> None:
        """A coded answer (valueCodeableConcept) read into `fact`, as the pack's mapping says; an
        answer that cannot be used is kept as such, for the newest decides."""
        answers, name = self.observed[fact].answers, self.name(resource)
        key = next((f"{c.system}|{c.code}" for c in _codings(resource.valueCodeableConcept) if f"{c.system}|{c.code}" in answers), None)
        if key is None:
            why = f"{fact}: no answer code the pack maps"
            return self.answers.setdefault(fact, []).append((when, name, None, _shown(resource.valueCodeableConcept), why))
        if answers[key] is None:
            return self.answers.setdefault(fact, []).append((when, name, None, key, f"{fact}: this answer leaves it unknown"))
        if fact not in self.pack.fhir.observations:
            self.drafted.append({"resource": name, "code": key, "why": f"read as {fact} {answers[key]} by the draft mapping (codes.md VERIFIED-S)"})
        self.answers.setdefault(fact, []).append((when, name, answers[key], key, ""))

    def _lab(self, resource: Any, concept: Any, quantity: Any, when: datetime) -> bool:
        """A lab result (part), kept even when it cannot be used: the newest decides."""
        codes = {c.code for c in _codings(concept) if c.system == LOINC}
        lab = next((name for name, lab in sorted(self.pack.labs.items()) if codes & set(lab.loinc)), None)
        if lab is None:
            return False
        try:
            if quantity is None or quantity.value is None:
                raise UnknownCode("no value")
            if quantity.comparator:
                raise UnknownCode(f"value {quantity.comparator}{quantity.value} is not an exact number")
            unit = quantity.code if quantity.system == UCUM and quantity.code else quantity.unit or ""
            value, why = self.pack.labs[lab].convert(quantity.value, unit), ""  # Decimal -> exact Fraction
        except UnknownCode as error:
            value, why = None, f"{lab}: {error}"
        self.labs.setdefault(lab, []).append((when, self.name(resource), value, _shown(concept), why))
        return True

    def medicationstatement(self, raw: dict[str, Any]) -> None:
        resource = self.parse(raw)
        self._medication(resource, resource.statusReason or [])

    def medicationrequest(self, raw: dict[str, Any]) -> None:
        resource = self.parse(raw)
        self._medication(resource, [resource.statusReason] if resource.statusReason else [])

    def draft_orders(self, bundle: dict[str, Any]) -> list[Any]:
        """The MedicationRequests of a CDS Hooks draftOrders Bundle, read leniently (order-select
        data "may not yet be specified"); Medication resources drafted with them join the
        chart's, for medicationReference; any other resource is listed, never parsed."""
        items = resources(bundle)
        self.urls |= {id(r): url for url, r in items if url}
        self.medicines |= {key: r for url, r in items if r["resourceType"] == "Medication" for key in (r.get("id"), url) if isinstance(key, str) and key}
        orders = []
        for _, raw in items:
            if raw["resourceType"] == "MedicationRequest":
                orders.append(self.draft(raw))
            elif raw["resourceType"] != "Medication":
                self.skip(raw, "", f"{raw['resourceType']} resources are not read")
        return orders

    def draft(self, raw: dict[str, Any]) -> Any:
        """A draft order: each element read that cannot be read is listed and left out, so that
        what can be read (the medicine, the reason) is still checked. A reasonCode sent as one
        object, as the CDS Hooks sandbox does, is read as a list of one."""
        fields = dict(raw)
        if isinstance(fields.get("reasonCode"), dict):
            fields["reasonCode"] = [fields["reasonCode"]]
        while True:
            try:
                return self.models.DraftOrder.model_validate(fields)
            except RecursionError:
                raise FhirError(f"{self.name(raw)}: nested too deeply to be a FHIR resource") from None
            except ValidationError as error:
                item = error.errors(include_input=False, include_url=False)[0]
                element = str(item["loc"][0]) if item["loc"] else ""
                if element not in fields or element in ("resourceType", "id"):
                    raise FhirError(f"{self.name(raw)}: {_first(error)}") from None
                self.skip(raw, element, f"draft order: {element} could not be read ({_first(error)}): left out")
                del fields[element]

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
        """medicationCodeableConcept, or the code of the Medication it references: contained
        (#id), or in the input by id, full URL or entry fullUrl (urn:uuid:...)."""
        if resource.medicationCodeableConcept is not None:
            return resource.medicationCodeableConcept
        ref = (resource.medicationReference.reference or "") if resource.medicationReference else ""
        if ref.startswith("#"):  # a contained Medication
            found = next((m for m in resource.contained or [] if m.get("id") == ref[1:] and m.get("resourceType") == "Medication"), None)
        else:
            found = self.medicines.get(ref) or self.medicines.get(ref.rpartition("Medication/")[2])
        return parse(self.models.Medication, found, self.name(resource), f"medicationReference {ref}").code if found is not None else None

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

    def allergyintolerance(self, raw: dict[str, Any]) -> None:
        resource = self.parse(raw)
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
