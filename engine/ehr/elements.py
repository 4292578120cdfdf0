"""The FHIR R4 elements the reader reads, as small pydantic models: strict on these, blind to the rest.

Only what the rules read is modelled; every other element (a primitive extension such as
`_birthDate`, a `category`, an R4-only element) is ignored, never refused. Primitive types are
fhir_core's (the ones fhir.resources builds on), except that a FHIR decimal must be a JSON number:
fhir_core, like fhir.resources, would take "85".
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fhir_core.types import (
    CodeType,
    DateTimeType,
    DateType,
    DecimalType,
    IdType,
    InstantType,
    StringType,
    UriType,
)
from pydantic import BaseModel, BeforeValidator, ConfigDict


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ValueError(f"a FHIR number is a JSON number, got {value!r:.40}")  # noqa: TRY004 (pydantic reports ValueError)
    return value


Number = Annotated[DecimalType, BeforeValidator(_json_number)]


class Element(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Coding(Element):
    system: UriType | None = None
    code: CodeType | None = None
    display: StringType | None = None


class Concept(Element):
    coding: list[Coding] | None = None
    text: StringType | None = None


class Reference(Element):
    reference: StringType | None = None


class Quantity(Element):
    value: Number | None = None
    comparator: CodeType | None = None
    unit: StringType | None = None
    system: UriType | None = None
    code: CodeType | None = None


class Period(Element):
    start: DateTimeType | None = None
    end: DateTimeType | None = None


class Extension(Element):
    url: UriType
    valueCoding: Coding | None = None


class Resource(Element):
    resourceType: str
    id: IdType | None = None

    def get_resource_type(self) -> str:  # as fhir.resources names it
        return self.resourceType


class Patient(Resource):
    gender: CodeType | None = None
    birthDate: DateType | None = None


class Condition(Resource):
    clinicalStatus: Concept | None = None
    verificationStatus: Concept | None = None
    code: Concept | None = None
    severity: Concept | None = None
    subject: Reference


class Component(Element):
    code: Concept
    valueQuantity: Quantity | None = None


class Observation(Resource):
    status: CodeType
    code: Concept
    subject: Reference | None = None
    effectiveDateTime: DateTimeType | None = None
    effectiveInstant: InstantType | None = None
    effectivePeriod: Period | None = None
    issued: InstantType | None = None
    valueQuantity: Quantity | None = None
    valueCodeableConcept: Concept | None = None
    component: list[Component] | None = None


class Medication(Resource):
    code: Concept | None = None


class MedicationUse(Resource):
    """What MedicationStatement and MedicationRequest share: the medicine, its status, the patient."""

    status: CodeType
    subject: Reference
    medicationCodeableConcept: Concept | None = None
    medicationReference: Reference | None = None
    contained: list[dict[str, Any]] | None = None  # a contained Medication is read when referenced


class MedicationStatement(MedicationUse):
    statusReason: list[Concept] | None = None


class MedicationRequest(MedicationUse):
    intent: CodeType
    statusReason: Concept | None = None
    reasonCode: list[Concept] | None = None


class DraftOrder(MedicationRequest):
    """A draft order (CDS Hooks draftOrders): order-select data "may not yet be specified"."""

    status: CodeType | None = None  # type: ignore[assignment]
    intent: CodeType | None = None  # type: ignore[assignment]
    subject: Reference | None = None  # type: ignore[assignment]


class AllergyIntolerance(Resource):
    clinicalStatus: Concept | None = None
    verificationStatus: Concept | None = None
    code: Concept | None = None
    patient: Reference


MODELS: dict[str, type[Resource]] = {
    model.__name__: model for model in (Patient, Condition, Observation, Medication, MedicationStatement, MedicationRequest, AllergyIntolerance)
}
