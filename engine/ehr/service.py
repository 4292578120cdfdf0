"""The HL7 CDS Hooks 2.0 service (FastAPI): discovery, three services, feedback.

  GET  /cds-services                  discovery
  POST /cds-services/{id}             jak-options (patient-view), jak-order-select, jak-order-sign
  POST /cds-services/{id}/feedback    accepted / overridden cards, recorded with the ruleset sha256

Data come from `prefetch`; a prefetch key that is missing, or an OperationOutcome (the EHR could
not fetch it), is fetched from `fhirServer` (with the bearer token of `fhirAuthorization`) if the
caller's issuer allows that server, within a size cap and a total deadline; if it cannot be, the
answer is 412.

A card is given only where there is something to say. No card: a patient-view without an active
skin condition the pack maps (the spec's "no decision support"), an order for another medicine,
a draft order with no medicine chosen yet. A `JAKCDS-003` "not checked" info card: a drafted order
that may be for a JAK inhibitor and that the service could not check (its order or medicine
unreadable, its reason outside the skin, no skin condition to check it against), since silence
would read as "no objection".

The JWT is checked before the body is read; a large or fetched chart is read and its rules run in
a pool of worker processes, so it delays only itself. An engine failure is a 500 naming the
decision id, logged. Replay cache, issued cards and feedback (within a per-issuer quota) live in
one SQLite store shared by workers. Every request is logged as one JSON line on the
`jakcds.decisions` logger, without patient data.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..decision.evaluate import Evaluator, InputError
from ..decision.result import BUILT_IN
from ..decision.session import EngineError
from ..knowledge.pack import Pack
from ..knowledge.vocabulary import UnknownCode
from . import cards
from .auth import Unauthorized, Verifier
from .chart import evaluate_read, read_chart
from .fhir import LOINC, FhirError, Reader, about, load_models
from .limits import MAX_BODY
from .store import FeedbackQuota, QuotaExceeded, Store

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


NOT_CHECKED = "JAKCDS-003"  # built-in: an order the service could not check
MAX_PAGES = 20  # of one search fetched from fhirServer
# a request body up to this size is answered on the event loop (~3 ms of CPU); a larger one, whose
# FHIR parsing takes long, in a worker process (the hand-off costs about as much as a small request)
INLINE_MAX = 256 * 1024
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


FEEDBACK_MAX = 4096  # characters kept of a feedback record's free parts (override reason, suggestions) as JSON


class Feedback(BaseModel):
    card: str = Field(max_length=100)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[dict[str, Any]] | None = Field(None, max_length=20)
    overrideReason: dict[str, Any] | None = None
    outcomeTimestamp: AwareDatetime
    # The spec wants acceptedSuggestions with "accepted"; our cards carry no suggestions, so
    # accepting a card without them is recorded as it comes.


class FeedbackRequest(BaseModel):
    feedback: list[Feedback] = Field(min_length=1, max_length=100)


@dataclass
class Settings:
    base_url: str  # what the EHR calls; each JWT's aud is base_url + the path
    verifier: Verifier | None  # None: dev mode, no authentication (localhost only)
    store: Store | None = None  # replay cache, issued cards, feedback (default: the verifier's, else in memory)
    fetch_timeout: float = 5.0  # one fhirServer read
    fetch_deadline: float = 10.0  # all the fetches of one request
    fetch_max_bytes: int = 16 * 1024 * 1024  # one fhirServer reply
    cors_origins: list[str] = field(default_factory=list)  # browser-based CDS clients allowed to call
    as_of: date | None = None  # compute ages on this date instead of today (reproducible tests)
    processes: int = 0  # worker processes reading charts and running rules; 0: inline (tests)
    feedback_quota: FeedbackQuota = field(default_factory=FeedbackQuota)  # per issuer

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = self.verifier.store if self.verifier else Store(Path(":memory:"))


class PrefetchMissing(Exception):
    """Data the service needs was neither prefetched nor fetchable."""


@dataclass
class Service:
    evaluator: Evaluator
    settings: Settings

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
            # no active skin condition the pack maps: no decision support, so no card (the spec's empty
            # array), whatever else the chart holds; nobody asked about a JAK inhibitor
            found = [cards.patient_view(evaluate_read(self.evaluator, reader, c), self._name(c), self.titles) for c in reader.skin_conditions()]
        else:
            found = [self._draft_cards(reader, draft, request.context.get("patientId")) for draft in self._orders(request, reader)]
        issued = [card for group in found for card in group]
        self.settings.store.remember([(card["uuid"], service_id, card["source"]["topic"]["code"]) for card in issued])
        return issued

    def _name(self, condition: str) -> str:
        return self.evaluator.pack.diagnoses.entries[condition].name

    def _draft_cards(self, reader: Reader, draft: dict[str, Any], patient: Any) -> list[dict[str, Any]]:
        """The cards for one drafted MedicationRequest (JSON): none while no medicine is chosen yet
        (order-select before a pick); "not checked" for an order that cannot be read, since it may be
        for a JAK inhibitor; else the order check."""
        if "medicationCodeableConcept" not in draft and "medicationReference" not in draft:
            return []
        try:
            order = reader.draft(draft)  # lenient: what cannot be read is listed and left out
        except FhirError as error:
            return [self._not_checked(reader, f"Order {_named(draft)} not checked: it could not be read",
                                      f"The order could not be read, so jakcds did not check it: {error}")]
        if not about(order, {f"Patient/{patient}"}):
            raise InputError(f"context.draftOrders: {_named(draft)} is for {order.subject.reference}, not context.patientId")
        return self._order_cards(reader, order)

    def _order_cards(self, reader: Reader, order: Any) -> list[dict[str, Any]]:
        concept = reader.medicine_concept(order)
        if concept is None:
            return [self._not_checked(reader, f"Order MedicationRequest/{order.id} not checked: its medicine could not be read",
                                      "The order's medicine could not be read: no readable medicationCodeableConcept, nor a "
                                      "medicationReference to a Medication in the request.")]
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

    def _orders(self, request: HookRequest, reader: Reader) -> list[dict[str, Any]]:
        """The drafted MedicationRequests to check, as JSON (order-select: only the selected ones).
        Each entry is routed on its resourceType and read on its own: a draft order of another kind
        (a NutritionOrder, a ServiceRequest), well-formed or not, is listed, never read, and never
        blocks the check of a JAK inhibitor. Medication resources drafted with the orders join the
        reader's, for medicationReference."""
        bundle = request.context.get("draftOrders")
        entries = bundle.get("entry") if isinstance(bundle, dict) and bundle.get("resourceType") == "Bundle" else None
        if not isinstance(entries, list):
            raise InputError("context.draftOrders: a Bundle of draft orders is required")
        drafted = [(e.get("fullUrl"), e.get("resource")) if isinstance(e, dict) else (None, None) for e in entries]
        orders = [r for _, r in drafted if isinstance(r, dict) and r.get("resourceType") == "MedicationRequest"]
        for index, (url, resource) in enumerate(drafted):
            kind = resource.get("resourceType") if isinstance(resource, dict) else None
            if kind == "Medication":  # for medicationReference, by id or by the entry's fullUrl
                reader.medicines |= {key: resource for key in (resource.get("id"), url) if isinstance(key, str) and key}
            elif kind != "MedicationRequest":
                reader.skip(_named(resource) if kind else f"draftOrders entry {index}", "", "a draft order other than a MedicationRequest: not checked")
        if request.hook == "order-select":
            selections = request.context.get("selections")
            if not isinstance(selections, list):
                raise InputError("context.selections: order-select needs the list of selected orders")
            orders = [o for o in orders if f"MedicationRequest/{o.get('id')}" in selections]
        return orders

    def missing(self, request: HookRequest) -> list[str]:
        """The prefetch keys to fetch: absent, or an OperationOutcome, by which the EHR says it could
        not fetch the data (never "no data": that is an empty Bundle or null)."""
        given = request.prefetch or {}
        return [key for key in self.prefetch if key not in given or _outcome(given[key])]

    async def gather(self, request: HookRequest, allowed: list[str] | None = None) -> dict[str, Any]:
        """Prefetch, completed from fhirServer where a key is `missing`; PrefetchMissing if it cannot be.
        `allowed`: the fhirServer base URLs the caller's issuer may name (None: dev mode, loopback only)."""
        data = dict(request.prefetch or {})
        missing = self.missing(request)
        if not missing:
            return data
        if not request.fhirServer:
            raise PrefetchMissing(f"prefetch lacks {', '.join(missing)} (absent, or an OperationOutcome: the EHR could not "
                                  "fetch it) and no fhirServer was given")
        if not _allowed(request.fhirServer, allowed):
            raise PrefetchMissing("fhirServer is not one this EHR's issuer is allowed to name: nothing was fetched")
        patient = request.context.get("patientId")
        if not isinstance(patient, str) or not patient:
            raise PrefetchMissing("context.patientId is needed to fetch from fhirServer")
        headers = {"Accept": "application/fhir+json"}
        if request.fhirAuthorization:
            if not _safe_for_tokens(request.fhirServer):
                raise PrefetchMissing("fhirServer is not https (or loopback): its access token is not sent in clear")
            headers["Authorization"] = f"Bearer {request.fhirAuthorization.access_token}"
        async with httpx.AsyncClient(timeout=self.settings.fetch_timeout, headers=headers, follow_redirects=False) as client:
            try:
                fetched = await asyncio.wait_for(
                    asyncio.gather(*(self._fetch(client, request.fhirServer, key, patient) for key in missing)),
                    self.settings.fetch_deadline)
            except asyncio.TimeoutError:
                decisions.warning(json.dumps({"event": "fetch", "why": f"deadline of {self.settings.fetch_deadline} s"}))
                raise PrefetchMissing("data could not be fetched from fhirServer") from None
        return data | dict(zip(missing, fetched))

    async def _fetch(self, client: httpx.AsyncClient, server: str, key: str, patient: str) -> Any:
        """One prefetch query (the patient id URL-encoded); a searchset's next pages are followed
        (on the same server only). Why a fetch failed goes to the server's log, not to the caller."""
        base = server.rstrip("/")
        url = f"{base}/{self.prefetch[key].replace('{{context.patientId}}', quote(patient, safe=''))}"
        pages: list[dict[str, Any]] = []
        try:
            while url and len(pages) < MAX_PAGES:
                pages.append(await self._page(client, url))
                links = (pages[-1].get("link") or []) if pages[-1].get("resourceType") == "Bundle" else []
                url = next((link.get("url") for link in links if link.get("relation") == "next"), None)
                if url and not (isinstance(url, str) and _under(url, base)):
                    raise ValueError("the next page is outside fhirServer")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, AttributeError, RecursionError) as error:
            decisions.warning(json.dumps({"event": "fetch", "key": key, "why": type(error).__name__}))
            raise PrefetchMissing(f"{key}: data could not be fetched from fhirServer") from None
        if url:
            raise PrefetchMissing(f"{key}: more than {MAX_PAGES} pages")
        if len(pages) == 1:
            return pages[0]
        first = {name: value for name, value in pages[0].items() if name != "link"}
        return first | {"entry": [entry for page in pages for entry in page.get("entry") or []]}

    async def _page(self, client: httpx.AsyncClient, url: str) -> dict[str, Any]:
        """One reply, read up to the size cap (a larger one is refused, not buffered)."""
        async with client.stream("GET", url) as response:
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.settings.fetch_max_bytes:
                    raise ValueError(f"reply larger than {self.settings.fetch_max_bytes} bytes")
        page = json.loads(body)
        if not isinstance(page, dict) or _outcome(page):
            raise ValueError("not a FHIR resource with data")
        return page

    def feedback(self, service_id: str, items: FeedbackRequest, issuer: str) -> None:
        """Record feedback on cards this service issued (InputError for any other card), all in one
        transaction, within the issuer's quota (QuotaExceeded)."""
        records = []
        for item in items.feedback:
            issued = self.settings.store.issued(item.card)
            if issued is None or issued[0] != service_id:
                raise InputError(f"feedback: card {item.card[:64]!r} was not issued by {service_id}")
            records.append({
                "received": datetime.now(timezone.utc).isoformat(),
                "service": service_id,
                "card": item.card,
                "rule": issued[1],
                "outcome": item.outcome,
                **_bounded({"overrideReason": item.overrideReason, "acceptedSuggestions": item.acceptedSuggestions}),
                "outcomeTimestamp": item.outcomeTimestamp,
                "ruleset": self.evaluator.info.name,
                "ruleset_sha256": self.evaluator.info.sha256,
            })
        self.settings.store.add_feedback(records, issuer, self.settings.feedback_quota)
        for record in records:  # the log line leaves out the clinician's free text (userComment may name the patient)
            feedback_log.info(json.dumps({k: record[k] for k in ("service", "card", "rule", "outcome", "ruleset_sha256")}))


def _named(resource: dict[str, Any]) -> str:
    """Type/id of a resource given as JSON, bounded: it is the caller's text."""
    name = f"{resource.get('resourceType')}/{resource.get('id', '?')}"
    return name if len(name) <= 80 else name[:79] + "…"


def _bounded(free: dict[str, Any]) -> dict[str, Any]:
    """The free parts of a feedback record as given, or, over FEEDBACK_MAX characters of JSON,
    their first FEEDBACK_MAX characters, marked truncated: a record never grows without bound."""
    text = json.dumps(free, default=str)
    return free if len(text) <= FEEDBACK_MAX else {key: None for key in free} | {"truncated": text[:FEEDBACK_MAX]}


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
    pool = _pool(evaluator, settings) if settings.processes else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:  # start the workers (each builds its durable-rules host) before the first call
            await asyncio.gather(*(asyncio.get_running_loop().run_in_executor(pool, _ready) for _ in range(settings.processes)))
        yield
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    app = FastAPI(
        title="jakcds CDS Hooks service",
        version=evaluator.info.version,
        description="HL7 CDS Hooks 2.0: JAK inhibitor options and order checks from a cited rule pack.",
        max_body_size=MAX_BODY,
        lifespan=lifespan,
    )

    async def authenticate(request: Request) -> None:
        """The gate (below) checked the JWT before the body was read; this keeps every route of the router behind it."""
        if settings.verifier is not None and "issuer" not in request.scope.get("state", {}):
            raise _Refused()

    # dependencies given at creation protect every route (appending later would protect nothing)
    router = APIRouter(dependencies=[Depends(authenticate)], responses={401: {"description": "Not trusted (no detail)"}})

    @router.get("/cds-services", response_model_exclude_none=True)
    async def discovery() -> dict[str, Any]:
        return service.discovery()

    @router.post("/cds-services/{service_id}", responses={400: {}, 404: {}, 412: {}, 503: {}})
    async def call(service_id: str, body: HookRequest, request: Request) -> Response:
        started, decision = time.perf_counter(), str(uuid.uuid4())
        status, found, where = 500, [], "loop"
        try:
            if service_id not in SERVICES:
                status, payload = 404, {"error": f"no service {service_id!r}"}
            elif body.hook != SERVICES[service_id]["hook"]:
                status, payload = 400, {"error": f"service {service_id} answers hook {SERVICES[service_id]['hook']}, not {body.hook}"}
            else:
                issuer = request.scope.get("state", {}).get("issuer")
                allowed = settings.verifier.issuers[issuer].fhir_servers if settings.verifier else None
                data = await service.gather(body, allowed)
                raw = await request.body()
                fetched = {key: data[key] for key in service.missing(body)}
                if pool is None or (len(raw) < INLINE_MAX and not fetched):  # a few ms on the event loop: cheaper than a hand-off
                    status, payload = _answer(service, service_id, body, data)
                else:  # a large or fetched chart (of any size) is read and its rules run in a worker process: it delays only itself
                    where = "worker"
                    status, payload = await asyncio.get_running_loop().run_in_executor(pool, _work, service_id, raw, fetched)
                found = payload.get("cards", [])
        except PrefetchMissing as error:
            status, payload = 412, {"error": str(error)}
        except BrokenProcessPool:
            status, payload = 503, {"error": "the service's worker process failed: try again"}
        except Exception as error:  # an engine failure (or a defect): a 500 naming the decision, logged, no traceback
            # the message of an engine error is the engine's; any other may quote the request, so only its type is logged
            why = f"{type(error).__name__}: {error}"[:300] if isinstance(error, EngineError) else type(error).__name__
            decisions.error(json.dumps({"event": "failure", "decision": decision, "why": why}))
            payload = {"error": f"the service failed on this request (decision {decision}): it was logged; no cards"}
        finally:  # every request, a crash included, gets its line
            decisions.info(json.dumps({
                "decision": decision, "hookInstance": body.hookInstance, "service": service_id, "status": status,
                "ruleset_sha256": evaluator.info.sha256, "ms": round((time.perf_counter() - started) * 1000, 2),
                "cards": len(found), "read_in": where,
            }))
        return JSONResponse(payload, status_code=status, headers={"X-Decision-Id": decision})

    @router.post("/cds-services/{service_id}/feedback", responses={400: {}, 404: {}, 429: {}})
    async def feedback(service_id: str, body: FeedbackRequest, request: Request) -> Response:
        if service_id not in SERVICES:
            return JSONResponse({"error": f"no service {service_id!r}"}, status_code=404)
        try:
            service.feedback(service_id, body, request.scope.get("state", {}).get("issuer") or "(no authentication)")
        except InputError as error:  # a card this service never issued
            return JSONResponse({"error": str(error)}, status_code=404)
        except QuotaExceeded as error:
            return JSONResponse({"error": str(error)}, status_code=429, headers={"Retry-After": str(error.retry_after)})
        return JSONResponse({})

    app.include_router(router)
    app.add_middleware(_Gate, settings=settings)  # inside CORS (added next): a browser's preflight needs no token
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


def _answer(service: Service, service_id: str, request: HookRequest, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        return 200, {"cards": service.call(service_id, request, data)}
    except InputError as error:
        return 400, {"error": str(error)}


class _Gate:
    """ASGI middleware in front of /cds-services: a body larger than the cap is refused by its
    Content-Length (413), and the JWT is checked before the body is read (a bare 401), so an
    untrusted caller costs no parsing. The trusted issuer goes to the request state."""

    def __init__(self, app: Any, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/cds-services"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > MAX_BODY:
            return await _bare(send, 413)
        if self.settings.verifier is not None:
            # aud is the URL as called, percent-encoded: scope["path"] is decoded
            audience = self.settings.base_url.rstrip("/") + (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            try:
                claims = self.settings.verifier.verify(headers.get(b"authorization", b"").decode("latin-1"), audience)
            except Unauthorized as error:  # the path and why are the caller's text (a 100 KB kid): cut
                decisions.warning(json.dumps({"event": "unauthorized", "path": scope["path"][:200], "why": str(error)[:300]}))
                return await _bare(send, 401, [(b"www-authenticate", b"Bearer")])
            scope.setdefault("state", {})["issuer"] = claims["iss"]
        await self.app(scope, receive, send)


async def _bare(send: Any, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *(headers or [])]})
    await send({"type": "http.response.body", "body": b""})


def _allowed(server: str, allowed: list[str] | None) -> bool:
    """fhirServer is one of the allowed base URLs, or under one (same scheme, host and port, path
    below it); with no issuers (dev mode) only a loopback server."""
    try:
        url = httpx.URL(server)
    except httpx.InvalidURL:
        return False
    if allowed is None:
        return url.scheme in ("http", "https") and url.host in ("127.0.0.1", "localhost", "::1")
    return any(_under(server, base) for base in allowed)


def _under(url: str, base: str) -> bool:
    """`url` is on `base`'s scheme, host and port, and its path, once normalised, at or below
    `base`'s; its path has no dot segment (even percent-encoded) and no ';' (path parameters, which
    servlet containers resolve: `..;/`) or backslash."""
    try:
        link, root = httpx.URL(url), httpx.URL(base)
    except httpx.InvalidURL:
        return False
    written = unquote(url.split("?", 1)[0].split("#", 1)[0].partition("://")[2].partition("/")[2])
    return ((link.scheme, link.host, link.port) == (root.scheme, root.host, root.port)
            and (link.path.rstrip("/") + "/").startswith(root.path.rstrip("/") + "/")
            and not {".", ".."} & set(written.split("/")) and not {";", "\\"} & set(written))


def _outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


ENVIRONMENT = "JAKCDS_SERVE"  # how `jakcds serve` passes its settings to each uvicorn worker process


def from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`jakcds serve`, `--workers N`), from JAKCDS_SERVE:
    {rules, include_draft, issuers, base_url, store, cors, processes}. All workers share the store."""
    from ..decision.evaluate import evaluator
    from .auth import load_issuers

    # each worker process logs for itself: JSON lines from jakcds' own loggers only (httpx's INFO
    # lines carry fhirServer URLs with patient ids)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("jakcds").setLevel(logging.INFO)
    config = json.loads(os.environ[ENVIRONMENT])
    store = Store(Path(config["store"]))
    verifier = Verifier(load_issuers(Path(config["issuers"])), store) if config["issuers"] else None
    settings = Settings(config["base_url"], verifier, store=store, cors_origins=config["cors"], processes=config["processes"])
    app = create_app(evaluator(config["rules"], config["include_draft"]), settings)
    _settle()
    return app


def _settle() -> None:
    """A server or worker process, built: load the FHIR models now and leave what start-up built
    (pack, models, schemas) out of garbage collection, whose full passes walked it all (a ~80 ms
    pause every ~2,000 requests, felt by every request in flight)."""
    load_models()
    gc.collect()
    gc.freeze()


# --- the worker processes: each builds one Service (and durable-rules host) when it starts ----

_service: Service | None = None


def _pool(evaluator: Evaluator, settings: Settings) -> ProcessPoolExecutor:
    if str(settings.store.path) == ":memory:":
        raise ValueError("worker processes share the service's store: give it a file (jakcds serve --store)")
    rules = None if evaluator.info.path == "(built-in)" else evaluator.info.path
    return ProcessPoolExecutor(settings.processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                               initargs=(rules, evaluator.info.drafts_included, settings.as_of, str(settings.store.path)))


def _start(rules: str | None, include_draft: bool, as_of: date | None, store: str) -> None:
    global _service
    from ..decision.evaluate import evaluator

    _service = Service(evaluator(rules, include_draft), Settings("", None, store=Store(Path(store)), as_of=as_of))
    _settle()


def _ready() -> bool:
    return _service is not None


def _work(service_id: str, body: bytes, fetched: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """In a worker: the request (validated in the server already) with the data fetched for it."""
    assert _service is not None
    request = HookRequest.model_validate_json(body)
    return _answer(_service, service_id, request, dict(request.prefetch or {}) | fetched)


def _safe_for_tokens(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme == "https" or (parsed.scheme == "http" and parsed.host in ("127.0.0.1", "localhost", "::1"))


class _Refused(Exception):
    """Raised by the auth dependency; answered with a bare 401."""
