"""The HL7 CDS Hooks 2.0 service (FastAPI): discovery, three services, feedback.

  GET  /cds-services                  discovery
  POST /cds-services/{id}             jak-options (patient-view), jak-order-select, jak-order-sign
  POST /cds-services/{id}/feedback    accepted / overridden cards, recorded with the ruleset sha256

Data come from `prefetch`; a missing prefetch key is fetched from `fhirServer` (with the bearer
token of `fhirAuthorization`), and if it cannot be, the answer is 412. Every request is
logged as one JSON line on the `jakcds.decisions` logger, without patient data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..decision.evaluate import Evaluator, InputError
from ..decision.result import BUILT_IN
from ..knowledge.pack import Pack
from ..knowledge.vocabulary import UnknownCode
from . import cards
from .auth import Unauthorized, Verifier
from .chart import evaluate_read, read_chart
from .fhir import LOINC, FhirError, Reader, about, resources

decisions = logging.getLogger("jakcds.decisions")
feedback_log = logging.getLogger("jakcds.feedback")



def prefetch_templates(pack: Pack) -> dict[str, str]:
    """What the rules read, as prefetch templates; the Observation search asks for the pack's LOINC
    codes (labs, and the Observations read into facts: smoking, pregnancy)."""
    codes = [code for lab in pack.labs.values() for code in lab.loinc]
    codes += [code for mapping in pack.fhir.observations.values() for code in mapping.loinc]
    labs = ",".join(f"{LOINC}|{code}" for code in codes)
    return {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}",
        "observations": f"Observation?patient={{{{context.patientId}}}}&code={labs}",
        "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
        "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
        "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    }


NOT_CHECKED = "JAKCDS-003"  # built-in: an order, or a chart, the service could not check
MAX_PAGES = 20  # of one search fetched from fhirServer
MAX_BODY = 32 * 1024 * 1024  # bytes of one request (a prefetch of a long chart fits); larger is a 413
USAGE = ("Reads the chart's conditions (ICD-10-CM, SNOMED CT), labs (LOINC), smoking and pregnancy status (US Core), "
         "medicines (RxNorm or name) and allergies.")
SERVICES = {
    "jak-options": {
        "hook": "patient-view",
        "title": "JAK inhibitor options",
        "description": "The JAK inhibitors that could be considered for the patient's skin condition, ranked, "
        "with cautions, evidence level and citations.",
    },
    "jak-order-select": {
        "hook": "order-select",
        "title": "JAK inhibitor order check (select)",
        "description": "Checks a selected JAK inhibitor order against the rules and returns its cautions.",
    },
    "jak-order-sign": {
        "hook": "order-sign",
        "title": "JAK inhibitor order check (sign)",
        "description": "Checks a JAK inhibitor order about to be signed against the rules and returns its cautions.",
    },
}


class FhirAuthorization(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class HookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hook: str
    hookInstance: str = Field(min_length=1, max_length=200)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, dict[str, Any] | None] | None = None
    extension: dict[str, Any] | None = None


class Feedback(BaseModel):
    card: str
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] | None = None
    overrideReason: dict[str, Any] | None = None
    outcomeTimestamp: AwareDatetime
    # The spec wants acceptedSuggestions with "accepted"; our cards carry no suggestions, so
    # accepting a card without them is recorded as it comes.


class FeedbackRequest(BaseModel):
    feedback: list[Feedback] = Field(min_length=1)


@dataclass
class Settings:
    base_url: str  # what the EHR calls; each JWT's aud is base_url + the path
    verifier: Verifier | None  # None: dev mode, no authentication (localhost only)
    feedback_file: Path | None = None
    fetch_timeout: float = 5.0
    cors_origins: list[str] = field(default_factory=list)  # browser-based CDS clients allowed to call
    as_of: date | None = None  # compute ages on this date instead of today (reproducible tests)


class PrefetchMissing(Exception):
    """Data the service needs was neither prefetched nor fetchable."""


@dataclass
class Service:
    evaluator: Evaluator
    settings: Settings
    issued: OrderedDict[str, tuple[str, str]] = field(default_factory=OrderedDict)  # card uuid -> (service, rule)

    def __post_init__(self) -> None:
        self.prefetch = prefetch_templates(self.evaluator.pack)
        self.titles = BUILT_IN | {NOT_CHECKED: "Not checked by the service"} | {r.id: r.title for r in self.evaluator.rules}

    def discovery(self) -> dict[str, Any]:
        return {
            "services": [
                {"hook": s["hook"], "title": s["title"], "description": s["description"], "id": sid, "prefetch": self.prefetch, "usageRequirements": USAGE}
                for sid, s in SERVICES.items()
            ]
        }

    def call(self, service_id: str, request: HookRequest, data: dict[str, Any]) -> list[dict[str, Any]]:
        """The cards for a request, given its data (`gather`)."""
        patient = data.get("patient")
        if isinstance(patient, dict) and patient.get("id") != request.context.get("patientId"):
            raise InputError(f"prefetch patient is Patient/{patient.get('id')}, not context.patientId")
        reader = read_chart(self.evaluator, data, self.settings.as_of)
        if SERVICES[service_id]["hook"] == "patient-view":
            found = [cards.patient_view(evaluate_read(self.evaluator, reader, c), self._name(c), self.titles) for c in reader.skin_conditions()]
            unread = sorted({u.resource for u in reader.sorted_unmapped() if u.resource.startswith("Condition")})
            if not found and unread:  # say so, rather than stay silent on a chart it could not read
                found = [[self._not_checked(
                    reader, f"JAK inhibitor options not checked: {len(unread)} condition(s) in the chart could not be read",
                    "jakcds found no active skin condition it can read in this chart; the conditions listed below "
                    "were not used (it reads the ICD-10-CM and SNOMED CT codes its pack lists).")]]
        else:
            found = [self._order_cards(reader, order) for order in self._orders(request, reader)]
        issued = [card for group in found for card in group]
        for card in issued:
            self._remember(card["uuid"], service_id, card["source"]["topic"]["code"])
        return issued

    def _name(self, condition: str) -> str:
        return self.evaluator.pack.diagnoses.entries[condition].name

    def _order_cards(self, reader: Reader, order: Any) -> list[dict[str, Any]]:
        concept = reader.medicine_concept(order)
        if concept is None:
            return [self._not_checked(reader, f"Order MedicationRequest/{order.id} not checked: its medicine could not be read",
                                      "The order's medicationReference does not resolve to a Medication in the request.")]
        drug = reader.medicine(order, concept)
        if drug not in self.evaluator.pack.drugs:
            return []  # not a JAK inhibitor: nothing to say
        name = self.evaluator.pack.drugs[drug].name
        reason = next((c for c in map(_reason(reader, order), order.reasonCode or []) if c), None)
        if reason and not reader.is_skin(reason):
            return [self._not_checked(
                reader, f"{name} order not checked: it is for {self._name(reason)}, not a skin condition",
                "jakcds checks JAK inhibitors for skin conditions; the order's reason is outside its rules.")]
        conditions = [reason] if reason else reader.skin_conditions()
        if not conditions:
            return [self._not_checked(
                reader, f"{name} order not checked: no skin condition in the chart or the order",
                "jakcds checks JAK inhibitors for skin conditions; it found no active one it knows in the chart, "
                "and the order names no reason it maps (ICD-10-CM).")]
        return [card for c in conditions for card in cards.order_review(evaluate_read(self.evaluator, reader, c), drug, self._name(c), self.titles)]

    def _not_checked(self, reader: Reader, summary: str, detail: str) -> dict[str, Any]:
        basis = cards.Basis(self.evaluator.info, {}, reader.sorted_unmapped(), self.titles)
        return cards.card(summary, "info", [detail], NOT_CHECKED, [], basis)

    def _orders(self, request: HookRequest, reader: Reader) -> list[Any]:
        """The draft MedicationRequests to check (order-select: only the selected ones); Medication
        resources drafted with them join the reader's, for medicationReference."""
        bundle = request.context.get("draftOrders")
        if not isinstance(bundle, dict):
            raise InputError("context.draftOrders: a Bundle of draft orders is required")
        try:
            drafted = [r for _, r in resources(bundle)]
        except FhirError as error:
            raise InputError(f"context.draftOrders: {error}") from None
        reader.medicines |= {r.id: r for r in drafted if r.get_resource_type() == "Medication"}
        orders = [r for r in drafted if r.get_resource_type() == "MedicationRequest"]
        for order in orders:
            if not about(order, {f"Patient/{request.context.get('patientId')}"}):
                raise InputError(f"context.draftOrders: MedicationRequest/{order.id} is for {order.subject.reference}, not context.patientId")
        if request.hook == "order-select":
            selections = request.context.get("selections")
            if not isinstance(selections, list):
                raise InputError("context.selections: order-select needs the list of selected orders")
            orders = [o for o in orders if f"MedicationRequest/{o.id}" in selections]
        return orders

    async def gather(self, request: HookRequest) -> dict[str, Any]:
        """Prefetch, completed from fhirServer where a key is absent; PrefetchMissing if it cannot be."""
        data = dict(request.prefetch or {})
        missing = [key for key in self.prefetch if key not in data]
        if not missing:
            return data
        if not request.fhirServer:
            raise PrefetchMissing(f"prefetch lacks {', '.join(missing)} and no fhirServer was given")
        patient = request.context.get("patientId")
        if not isinstance(patient, str):
            raise PrefetchMissing("context.patientId is needed to fetch from fhirServer")
        headers = {"Accept": "application/fhir+json"}
        if request.fhirAuthorization:
            if not _safe_for_tokens(request.fhirServer):
                raise PrefetchMissing("fhirServer is not https (or loopback): its access token is not sent in clear")
            headers["Authorization"] = f"Bearer {request.fhirAuthorization.access_token}"
        async with httpx.AsyncClient(timeout=self.settings.fetch_timeout, headers=headers) as client:
            fetched = await asyncio.gather(*(self._fetch(client, request.fhirServer, key, patient) for key in missing))
        return data | dict(zip(missing, fetched))

    async def _fetch(self, client: httpx.AsyncClient, server: str, key: str, patient: str) -> Any:
        """One prefetch query; a searchset's next pages are followed (on the same server only)."""
        url = f"{server.rstrip('/')}/{self.prefetch[key].replace('{{context.patientId}}', patient)}"
        pages: list[dict[str, Any]] = []
        try:
            while url and len(pages) < MAX_PAGES:
                response = await client.get(url)
                response.raise_for_status()
                page = response.json()
                pages.append(page)
                links = (page.get("link") or []) if page.get("resourceType") == "Bundle" else []
                url = next((link.get("url") for link in links if link.get("relation") == "next"), None)
                if url and not url.startswith(server.rstrip("/") + "/"):
                    raise PrefetchMissing(f"{key}: the next page is on another server")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, AttributeError) as error:
            raise PrefetchMissing(f"{key}: could not be fetched ({type(error).__name__})") from None
        if url:
            raise PrefetchMissing(f"{key}: more than {MAX_PAGES} pages")
        if len(pages) == 1:
            return pages[0]
        first = {name: value for name, value in pages[0].items() if name != "link"}
        return first | {"entry": [entry for page in pages for entry in page.get("entry") or []]}

    def _remember(self, card: str, service_id: str, rule: str) -> None:
        self.issued[card] = (service_id, rule)
        while len(self.issued) > 100_000:
            self.issued.popitem(last=False)

    def feedback(self, service_id: str, items: FeedbackRequest) -> None:
        for item in items.feedback:
            issued_by, rule = self.issued.get(item.card, (None, None))
            record = {
                "received": datetime.now(timezone.utc).isoformat(),
                "service": service_id,
                "card": item.card,
                "rule": rule if issued_by == service_id else None,
                "outcome": item.outcome,
                "overrideReason": item.overrideReason,
                "acceptedSuggestions": item.acceptedSuggestions,
                "outcomeTimestamp": item.outcomeTimestamp,
                "ruleset": self.evaluator.info.name,
                "ruleset_sha256": self.evaluator.info.sha256,
            }
            line = json.dumps(record, sort_keys=True, default=str)
            # the log line leaves out the clinician's free text (userComment may name the patient)
            feedback_log.info(json.dumps({k: record[k] for k in ("service", "card", "rule", "outcome", "ruleset_sha256")}))
            if self.settings.feedback_file:
                with self.settings.feedback_file.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")


def _reason(reader: Reader, order: Any) -> Any:
    """An order's reasonCode -> the diagnosis it maps to, or None (a code that is not ICD-10-CM too)."""
    def diagnosis(concept: Any) -> str | None:
        try:
            return reader.diagnosis(order, concept)
        except UnknownCode:
            return None
    return diagnosis


def create_app(evaluator: Evaluator, settings: Settings) -> FastAPI:
    service = Service(evaluator, settings)
    app = FastAPI(
        title="jakcds CDS Hooks service",
        version=evaluator.info.version,
        description="HL7 CDS Hooks 2.0: JAK inhibitor options and order checks from a cited rule pack.",
        max_body_size=MAX_BODY,
    )

    async def authenticate(request: Request) -> None:
        if settings.verifier is None:
            return
        # aud is the URL as called, percent-encoded: request.url.path is decoded
        path = request.scope.get("raw_path") or request.url.path.encode()
        audience = settings.base_url.rstrip("/") + path.decode("latin-1")
        try:
            settings.verifier.verify(request.headers.get("authorization"), audience)
        except Unauthorized as error:
            decisions.warning(json.dumps({"event": "unauthorized", "path": request.url.path, "why": str(error)}))
            raise _Refused() from None

    # dependencies given at creation protect every route (appending later would protect nothing)
    router = APIRouter(dependencies=[Depends(authenticate)], responses={401: {"description": "Not trusted (no detail)"}})

    @router.get("/cds-services", response_model_exclude_none=True)
    async def discovery() -> dict[str, Any]:
        return service.discovery()

    @router.post("/cds-services/{service_id}", responses={400: {}, 404: {}, 412: {}})
    async def call(service_id: str, body: HookRequest) -> Response:
        started, decision = time.perf_counter(), str(uuid.uuid4())
        status, found = 500, []
        try:
            if service_id not in SERVICES:
                status, payload = 404, {"error": f"no service {service_id!r}"}
            elif body.hook != SERVICES[service_id]["hook"]:
                status, payload = 400, {"error": f"service {service_id} answers hook {SERVICES[service_id]['hook']}, not {body.hook}"}
            else:
                # the rules run inline on the event loop (a few ms of CPU): threads would only add GIL handoffs
                found = service.call(service_id, body, await service.gather(body))
                status, payload = 200, {"cards": found}
        except PrefetchMissing as error:
            status, payload = 412, {"error": str(error)}
        except InputError as error:
            status, payload = 400, {"error": str(error)}
        finally:  # every request, a crash included, gets its line
            decisions.info(json.dumps({
                "decision": decision, "hookInstance": body.hookInstance, "service": service_id, "status": status,
                "ruleset_sha256": evaluator.info.sha256, "ms": round((time.perf_counter() - started) * 1000, 2),
                "cards": len(found),
            }))
        return JSONResponse(payload, status_code=status, headers={"X-Decision-Id": decision})

    @router.post("/cds-services/{service_id}/feedback", responses={400: {}, 404: {}})
    async def feedback(service_id: str, body: FeedbackRequest) -> Response:
        if service_id not in SERVICES:
            return JSONResponse({"error": f"no service {service_id!r}"}, status_code=404)
        service.feedback(service_id, body)
        return JSONResponse({})

    app.include_router(router)
    if settings.cors_origins:  # the spec: browser-based CDS clients need CORS
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(_Refused)
    def refused(request: Request, exc: _Refused) -> Response:
        return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})

    # a malformed request is a 400 with one line naming the element, never FastAPI's 422 that
    # echoes the input (a patient's name and birth date) back to the caller
    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, exc: RequestValidationError) -> Response:
        item = exc.errors()[0] if exc.errors() else {"loc": ["body"], "msg": "invalid request"}
        return JSONResponse({"error": str(FhirError(f"{'.'.join(map(str, item['loc']))}: {item['msg']}"))}, status_code=400)

    @app.exception_handler(RecursionError)
    def too_deep(request: Request, exc: RecursionError) -> Response:
        return JSONResponse({"error": "the request is nested too deeply"}, status_code=400)

    return app


def _safe_for_tokens(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme == "https" or (parsed.scheme == "http" and parsed.host in ("127.0.0.1", "localhost", "::1"))


class _Refused(Exception):
    """Raised by the auth dependency; answered with a bare 401."""
