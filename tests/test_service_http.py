"""The CDS Hooks service over real HTTP: `jakcds serve` as a subprocess on loopback, called with
signed JWTs (tests/cds_keys.py); its stderr (the decision log) and feedback log are read back."""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import json
import re
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft202012Validator

import jakcds
from cds_keys import ISSUER, RSA_KEY, UNKNOWN_ISSUER, UNKNOWN_KEY, mint, write_issuers
from jakcds.ehr.service import prefetch_templates
from second_opinion import healthchain_errors

pytestmark = pytest.mark.slow  # each test starts jakcds serve
REPO = Path(__file__).resolve().parents[1]
HOOKS = REPO / "cases" / "hooks"
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "cds-hooks-2.0"
JAKCDS = Path(sys.executable).parent / "jakcds"
PATIENT_ID = "dm-52"
PREFETCH = prefetch_templates(jakcds.load_pack())  # what the served (shipped) pack asks for


def hook(name: str) -> dict[str, Any]:
    return json.loads((HOOKS / f"{name}.json").read_text())


def schema_errors(name: str, document: Any) -> list[str]:
    validator = Draft202012Validator(json.loads((SCHEMAS / f"{name}.schema.json").read_text()))
    return sorted(f"{e.json_path}: {e.message}" for e in validator.iter_errors(document))


def nulls(document: Any, path: str = "$") -> list[str]:
    """JSON paths holding null (the spec's §Use of JSON forbids them)."""
    if document is None:
        return [path]
    if isinstance(document, dict):
        return [p for k, v in document.items() for p in nulls(v, f"{path}.{k}")]
    if isinstance(document, list):
        return [p for i, v in enumerate(document) for p in nulls(v, f"{path}[{i}]")]
    return []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    stderr_file: Path
    store: Path | None = None

    def stderr(self) -> str:
        return self.stderr_file.read_text(encoding="utf-8")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(directory: Path, *args: str, timeout: float = 30, files: int | None = None) -> Server:
    """`jakcds serve` on a free loopback port, once the port answers; `files`: its limit of open files."""
    port = free_port()
    stderr_file = directory / f"serve-{port}.stderr"
    if "--store" not in args:
        args = (*args, "--store", str(directory / f"store-{port}.sqlite3"))
    with stderr_file.open("wb") as err:
        process = subprocess.Popen(
            [str(JAKCDS), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=None if files is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (files, files)),
        )
    server = Server(f"http://127.0.0.1:{port}", process, stderr_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jakcds serve exited {process.returncode}:\n{server.stderr()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    pytest.fail(f"jakcds serve did not answer on port {port} within {timeout} s:\n{server.stderr()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, fake_fhir: "FakeFhir") -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("serve")
    store = directory / "store.sqlite3"
    running = start(directory, "--issuers", str(write_issuers(directory, [fake_fhir.url + base for base in ("/fhir", "/paged", "/broken", "/huge", "/drip", "/escape")] + ["http://fhir.example.org"])), "--store", str(store),
                    "--cors-origin", BROWSER_CLIENT)
    running.store = store
    yield running
    running.stop()


@pytest.fixture(scope="session")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


Call = Callable[..., httpx.Response]
BROWSER_CLIENT = "https://ehr-ui.example.org"


@pytest.fixture(scope="session")
def call(server: Server, http: httpx.Client) -> Call:
    """call(path, body=None, token=...): GET (no body) or POST, by default with a fresh valid token for the path."""

    def send(path: str, body: dict[str, Any] | None = None, token: str | None = "mint") -> httpx.Response:
        token = mint(server.base + path) if token == "mint" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is None:
            return http.get(server.base + path, headers=headers)
        return http.post(server.base + path, json=body, headers=headers)

    return send


def check_cards(response: httpx.Response) -> list[dict[str, Any]]:
    """The cards of a 200 response, after the spec's checks; the rule ids must exist in the shipped pack."""
    assert response.status_code == 200, response.text
    document = response.json()
    assert schema_errors("response", document) == []
    assert healthchain_errors("response", document) == []
    assert nulls(document) == []
    titles = {rule.id: rule.title for rule in jakcds.load_pack().rules}
    rules = set(titles) | {"JAKCDS-001", "JAKCDS-002", "JAKCDS-003"}
    cards = document["cards"]
    assert cards
    assert len({card["uuid"] for card in cards}) == len(cards)
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["topic"]["code"] in rules
        assert card["source"]["topic"]["display"] == titles.get(card["source"]["topic"]["code"], card["source"]["topic"]["display"])
    return cards


@pytest.fixture(scope="session")
def patient_view(call: Call) -> list[dict[str, Any]]:
    return check_cards(call("/cds-services/jak-options", hook("patient-view")))


def test_discovery(call: Call) -> None:
    response = call("/cds-services")
    assert response.status_code == 200
    document = response.json()
    assert schema_errors("discovery", document) == []
    assert healthchain_errors("discovery", document) == []
    assert nulls(document) == []
    services = {s["id"]: s for s in document["services"]}
    assert {sid: s["hook"] for sid, s in services.items()} == {
        "jak-options": "patient-view", "jak-order-select": "order-select", "jak-order-sign": "order-sign"}
    for s in services.values():
        assert s["prefetch"] == PREFETCH


def test_patient_view(patient_view: list[dict[str, Any]]) -> None:
    summaries = " ".join(card["summary"] for card in patient_view)
    assert "Tofacitinib" in summaries and "Upadacitinib" in summaries


def test_order_sign(call: Call) -> None:
    cards = check_cards(call("/cds-services/jak-order-sign", hook("order-sign")))
    assert "is option" in cards[0]["summary"] and cards[-1]["summary"].startswith("Before starting, find out")
    assert all(card["summary"].startswith("Tofacitinib") for card in cards[:-1])
    assert len(cards) <= 3  # one option card, its critical cautions (none here), one work-up card
    warnings = [card for card in cards if card["indicator"] != "info"]
    assert warnings and all(card["overrideReasons"] for card in warnings)


def alg_none(aud: str) -> str:
    def part(document: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def hs256(aud: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, "a-shared-secret-of-at-least-32-bytes!", algorithm="HS256", headers={"kid": "ec-1"})


BAD_TOKENS: dict[str, Callable[[str], str | None]] = {
    "no Authorization": lambda aud: None,
    "expired": lambda aud: mint(aud, exp_in=-120),
    "expiring in two hours": lambda aud: mint(aud, exp_in=7200),
    "wrong audience": lambda aud: mint(aud.removesuffix("/jak-options")),
    "alg none": alg_none,
    "HS256": hs256,
    "unknown issuer": lambda aud: mint(aud, iss=UNKNOWN_ISSUER, key=UNKNOWN_KEY),
    "bad signature": lambda aud: mint(aud, key=UNKNOWN_KEY),
    "no jti": lambda aud: mint(aud, jti=""),
    "typ not JWT": lambda aud: mint(aud, headers={"typ": "at+jwt"}),
    "no kid": lambda aud: mint(aud, headers={"kid": None}),
    "jku not allowed": lambda aud: mint(aud, headers={"jku": "https://elsewhere.example/jwks"}),
}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.content == b""


@pytest.mark.parametrize("why", BAD_TOKENS)
def test_untrusted_token_is_refused(why: str, server: Server, call: Call) -> None:
    path = "/cds-services/jak-options"
    assert_refused(call(path, hook("patient-view"), token=BAD_TOKENS[why](server.base + path)))


def test_replayed_token_is_refused(server: Server, call: Call) -> None:
    path = "/cds-services/jak-options"
    token = mint(server.base + path)
    assert call(path, hook("patient-view"), token=token).status_code == 200
    assert_refused(call(path, hook("patient-view"), token=token))


def test_rs384_token_is_accepted(server: Server, call: Call) -> None:
    path = "/cds-services/jak-options"
    token = mint(server.base + path, key=RSA_KEY, alg="RS384")
    assert call(path, hook("patient-view"), token=token).status_code == 200


def test_cors_for_the_configured_browser_client_only(server: Server, http: httpx.Client) -> None:
    def preflight(origin: str) -> httpx.Response:
        return http.options(server.base + "/cds-services/jak-options", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"})

    assert preflight(BROWSER_CLIENT).headers.get("access-control-allow-origin") == BROWSER_CLIENT
    assert "access-control-allow-origin" not in preflight("https://elsewhere.example").headers


def test_aud_as_an_array_is_accepted(server: Server, call: Call) -> None:
    path = "/cds-services/jak-options"
    assert call(path, hook("patient-view"), token=mint([server.base + path])).status_code == 200  # type: ignore[arg-type]


def test_missing_prefetch_without_fhir_server_is_412(call: Call) -> None:
    body = hook("patient-view")
    del body["prefetch"]["conditions"]
    assert call("/cds-services/jak-options", body).status_code == 412


@dataclass
class FakeFhir:
    url: str
    authorizations: list[str | None]
    paths: list[str] = field(default_factory=list)  # every path requested, as sent
    next_link: str = ""  # the next link of the conditions search under /escape/ (a path on this server)


@pytest.fixture(scope="session")
def fake_fhir() -> Iterator[FakeFhir]:
    """Serves the patient-view prefetch as searches under /fhir/ (the PREFETCH queries); 500 under /broken/."""
    prefetch = hook("patient-view")["prefetch"]
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    pages = {"/fhir/" + template.replace("{{context.patientId}}", PATIENT_ID): prefetch[key] or empty
             for key, template in PREFETCH.items()}
    authorizations: list[str | None] = []

    # /paged/: the same data, with the conditions search split over two pages (Bundle.link next)
    pages |= {path.replace("/fhir/", "/paged/"): page for path, page in pages.items()}
    conditions = "/paged/" + PREFETCH["conditions"].replace("{{context.patientId}}", PATIENT_ID)
    pages["/paged/page-2"], pages[conditions] = pages[conditions], {**empty, "link": [{"relation": "next", "url": "page-2"}]}

    paths: list[str] = []
    fake: FakeFhir

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorizations.append(self.headers.get("Authorization"))
            paths.append(self.path)
            if self.path.startswith("/drip/"):  # one byte every 2 s: a reply that never ends in time
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                for _ in range(60):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(2)
                return
            if self.path.startswith("/huge/"):  # 40 MB, more than the service reads of one reply
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "Bundle", "type": "searchset", "x": "' + b"x" * 40_000_000 + b'"}')
                return
            page = pages.get(unquote(self.path).replace("/escape/", "/fhir/"))
            if page and page.get("link"):  # next links are absolute URLs on this server
                page = {**page, "link": [{"relation": "next", "url": f"http://{self.headers['Host']}/paged/page-2"}]}
            if self.path.startswith("/escape/Condition"):  # a next link that tries to leave the base path
                page = {**empty, "link": [{"relation": "next", "url": f"http://{self.headers['Host']}{fake.next_link}"}]}
            status = 500 if self.path.startswith("/broken/") else 200 if page else 404
            body = json.dumps(page if status == 200 else {"resourceType": "OperationOutcome"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the service drops its other fetches when one fails: their resets are expected

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    fake = FakeFhir(f"http://127.0.0.1:{httpd.server_address[1]}", authorizations, paths)
    yield fake
    httpd.shutdown()
    httpd.server_close()


def from_fhir_server(fhir_server: str) -> dict[str, Any]:
    body = hook("patient-view")
    body["prefetch"] = {"patient": body["prefetch"]["patient"]}
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = {"access_token": "abc", "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds-service"}
    return body


def test_fetches_missing_prefetch_from_fhir_server(
    call: Call, fake_fhir: FakeFhir, patient_view: list[dict[str, Any]]
) -> None:
    fake_fhir.authorizations.clear()
    cards = check_cards(call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + "/fhir")))
    assert [card["summary"] for card in cards] == [card["summary"] for card in patient_view]
    assert fake_fhir.authorizations == ["Bearer abc"] * (len(PREFETCH) - 1)


def test_follows_next_pages_of_a_search(call: Call, fake_fhir: FakeFhir, patient_view: list[dict[str, Any]]) -> None:
    cards = check_cards(call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + "/paged")))
    assert [card["summary"] for card in cards] == [card["summary"] for card in patient_view]


def test_fhir_server_error_is_412(call: Call, fake_fhir: FakeFhir) -> None:
    assert call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + "/broken")).status_code == 412


def malformed(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = hook("patient-view")
    change(body)
    return body


MALFORMED: dict[str, dict[str, Any]] = {
    "fhirServer not a URL": malformed(lambda b: b.update(prefetch={}, fhirServer="http://[::1")),
    "resourceType a number": malformed(lambda b: b["prefetch"].update(patient={"resourceType": 5})),
    "resourceType a list": malformed(lambda b: b["prefetch"].update(patient={"resourceType": ["Patient"]})),
    "entry resourceType a number": malformed(lambda b: b["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": 5}})),
}


@pytest.mark.parametrize("why", MALFORMED)
def test_malformed_request_is_a_client_error(why: str, call: Call) -> None:
    assert call("/cds-services/jak-options", MALFORMED[why]).status_code in {400, 412}


def order(change: Callable[[dict[str, Any]], None], name: str = "order-sign") -> dict[str, Any]:
    body = hook(name)
    change(body)
    return body


def draft(body: dict[str, Any]) -> dict[str, Any]:
    return body["context"]["draftOrders"]["entry"][0]["resource"]


def as_order_select(body: dict[str, Any]) -> None:
    body.update(hook="order-select")
    body["context"]["selections"] = ["MedicationRequest/draft-tofa"]


REFUSED_AS_400: dict[str, tuple[str, dict[str, Any]]] = {
    "prefetch patient is not context.patientId": (
        "/cds-services/jak-options", malformed(lambda b: b["context"].update(patientId="someone-else"))),
    "draft order for another patient": ("/cds-services/jak-order-sign", order(lambda b: draft(b).update(subject={"reference": "Patient/x"}))),
    "order-select without selections": (
        "/cds-services/jak-order-select", order(lambda b: (as_order_select(b), b["context"].pop("selections")))),
}


@pytest.mark.parametrize("why", REFUSED_AS_400)
def test_inconsistent_requests_are_400_with_the_reason(why: str, call: Call) -> None:
    path, body = REFUSED_AS_400[why]
    response = call(path, body)
    assert response.status_code == 400 and response.json()["error"]


def test_order_select_checks_only_the_selected_orders(call: Call) -> None:
    assert check_cards(call("/cds-services/jak-order-select", order(as_order_select)))[0]["summary"].startswith("Tofacitinib")
    unselected = order(lambda b: (as_order_select(b), b["context"].update(selections=["MedicationRequest/other"])))
    response = call("/cds-services/jak-order-select", unselected)
    assert response.status_code == 200 and response.json() == {"cards": []}


def test_an_order_whose_medicine_cannot_be_read_says_it_was_not_checked(call: Call) -> None:
    body = order(lambda b: (draft(b).pop("medicationCodeableConcept"), draft(b).update(medicationReference={"reference": "#gone"})))
    cards = check_cards(call("/cds-services/jak-order-sign", body))
    assert [c["summary"] for c in cards] == ["Order MedicationRequest/draft-tofa not checked: its medicine could not be read"]


def test_an_order_whose_medication_is_drafted_with_it_is_checked(call: Call) -> None:
    medication = {"resourceType": "Medication", "id": "tofa", "code": draft(hook("order-sign"))["medicationCodeableConcept"]}

    def refer(body: dict[str, Any]) -> None:
        draft(body).pop("medicationCodeableConcept")
        draft(body)["medicationReference"] = {"reference": "Medication/tofa"}
        body["context"]["draftOrders"]["entry"].append({"resource": medication})

    cards = check_cards(call("/cds-services/jak-order-sign", order(refer)))
    assert cards[0]["summary"].startswith("Tofacitinib is option 1")


def test_an_order_for_a_condition_outside_the_skin_is_not_checked(call: Call) -> None:
    ra = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M06.9"}]}
    cards = check_cards(call("/cds-services/jak-order-sign", order(lambda b: draft(b).update(reasonCode=[ra]))))
    assert [(c["summary"], c["source"]["topic"]["code"]) for c in cards] == [
        ("Tofacitinib order not checked: it is for Rheumatoid arthritis, not a skin condition", "JAKCDS-003")]


def condition(code: dict[str, Any], status: str = "active") -> dict[str, Any]:
    return {"resource": {"resourceType": "Condition", "id": f"c-{uuid.uuid4().hex[:8]}", "code": code, "subject": {"reference": f"Patient/{PATIENT_ID}"},
                         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]}}}


def test_patient_view_without_a_mapped_active_skin_condition_is_quiet(call: Call) -> None:
    """Issue 21.3: no decision support is an empty array of cards (the spec), whatever unmapped or
    resolved conditions the chart holds; nobody asked about a JAK inhibitor."""
    dermatomyositis = hook("patient-view")["prefetch"]["conditions"]["entry"][0]["resource"]["code"]
    charts = {
        "text only": [condition({"text": "Dermatomyositis"})],  # as a chart coding it in SNOMED CT only would be read: not at all
        "resolved and unmapped": [condition(dermatomyositis, "resolved"), condition({"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]})],
        "none": None,
    }
    for why, entries in charts.items():
        body = malformed(lambda b: b["prefetch"].update(conditions=entries and {"resourceType": "Bundle", "type": "searchset", "entry": entries}))
        response = call("/cds-services/jak-options", body)
        assert (response.status_code, response.json()) == (200, {"cards": []}), why


def test_a_spec_extension_on_the_request_is_accepted(call: Call) -> None:
    body = malformed(lambda b: b.update(extension={"com.example.trace": "x"}))
    assert call("/cds-services/jak-options", body).status_code == 200


def test_the_access_token_is_not_sent_to_a_plain_http_fhir_server(call: Call) -> None:
    body = malformed(lambda b: b.update(prefetch={}, fhirServer="http://fhir.example.org/r4", fhirAuthorization={
        "access_token": "abc", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "cds"}))
    response = call("/cds-services/jak-options", body)
    assert response.status_code == 412 and "not https" in response.json()["error"]


def test_a_body_over_the_limit_is_413(server: Server, http: httpx.Client) -> None:
    path = "/cds-services/jak-options"
    body = b'{"padding": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    response = http.post(server.base + path, content=body, headers={
        "Authorization": f"Bearer {mint(server.base + path)}", "Content-Type": "application/json"})
    assert response.status_code == 413


def test_unknown_service_is_404(call: Call) -> None:
    assert call("/cds-services/jak-nothing", hook("patient-view")).status_code == 404


def test_hook_not_of_the_service_is_400(call: Call) -> None:
    assert call("/cds-services/jak-order-sign", hook("patient-view")).status_code == 400


def test_feedback_is_logged_with_rule_and_ruleset(
    server: Server, call: Call, patient_view: list[dict[str, Any]]
) -> None:
    card = next(card for card in patient_view if "overrideReasons" in card)
    reason = card["overrideReasons"][0]
    body = {"feedback": [{
        "card": card["uuid"], "outcome": "overridden",
        "overrideReason": {"reason": {k: reason[k] for k in ("code", "system", "display")}, "userComment": "Discussed"},
        "outcomeTimestamp": "2026-11-23T10:00:00Z",
    }]}
    assert schema_errors("feedback", body) == []
    assert call("/cds-services/jak-options/feedback", body).status_code == 200
    assert server.store is not None
    done = subprocess.run([str(JAKCDS), "feedback", "--store", str(server.store)], capture_output=True, text=True, timeout=60)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    mine = [r for r in records if r["card"] == card["uuid"]]
    assert len(mine) == 1
    assert mine[0]["rule"] == card["source"]["topic"]["code"]
    assert mine[0]["outcome"] == "overridden"
    assert mine[0]["ruleset_sha256"] == jakcds.evaluator().info.sha256


def decision_lines(stderr: str) -> list[dict[str, Any]]:
    """The decision log: stderr's JSON lines that carry a decision id."""
    documents = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return [d for d in documents if "decision" in d]


def test_decision_log_has_one_line_per_call_and_no_patient_data(server: Server, call: Call, fake_fhir: FakeFhir) -> None:
    bodies = [hook("patient-view"), from_fhir_server(fake_fhir.url + "/fhir")]
    for body in bodies:
        body["hookInstance"] = str(uuid.uuid4())
        assert call("/cds-services/jak-options", body).status_code == 200
    stderr = server.stderr()
    for body in bodies:
        mine = [d for d in decision_lines(stderr) if d.get("hookInstance") == body["hookInstance"]]
        assert len(mine) == 1
        assert {"decision", "hookInstance", "service", "ruleset_sha256", "ms", "cards"} <= mine[0].keys()
        assert mine[0]["service"] == "jak-options" and mine[0]["cards"] >= 2
    for secret in (PATIENT_ID, bodies[0]["prefetch"]["patient"]["birthDate"], "Prednisone"):
        assert secret not in stderr


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(JAKCDS), "serve", *args], capture_output=True, text=True, timeout=60)


def test_insecure_dev_is_refused_off_loopback() -> None:
    done = run_serve("--insecure-dev", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert "loopback" in done.stderr


def test_serve_needs_issuers_or_insecure_dev() -> None:
    done = run_serve("--port", str(free_port()))
    assert done.returncode == 2
    assert "--issuers" in done.stderr


def test_insecure_dev_warns_and_answers_without_token(tmp_path: Path, http: httpx.Client) -> None:
    dev = start(tmp_path, "--insecure-dev")
    try:
        response = http.get(dev.base + "/cds-services")
    finally:
        dev.stop()
    assert response.status_code == 200
    assert len(response.json()["services"]) == 3
    assert "WARNING" in dev.stderr() and "AUTHENTICATION IS OFF" in dev.stderr()


def test_a_malformed_request_is_400_in_one_line_without_echoing_the_chart(call: Call) -> None:
    """Issue 13: FastAPI's 422 echoed the request (a patient's name and birth date); a bad chart was a 500."""
    body = hook("patient-view")
    body["hookInstance"] = 42  # not a string: FastAPI's own validation
    body["prefetch"]["patient"]["name"] = [{"family": "Secretname"}]
    response = call("/cds-services/jak-options", body)
    assert response.status_code == 400 and "Secretname" not in response.text
    assert "\n" not in response.json()["error"] and len(response.json()["error"]) <= 300
    bad_chart = hook("patient-view")
    stopped = {"resourceType": "MedicationStatement", "id": "m", "status": "stopped", "subject": {"reference": "Patient/" + bad_chart["context"]["patientId"]},
               "medicationCodeableConcept": {"text": "methotrexate"}}
    bad_chart["prefetch"]["medicationStatements"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": stopped}]}
    assert call("/cds-services/jak-options", bad_chart).status_code == 200  # a stopped medicine without statusReason: no 500
    statement = bad_chart["prefetch"]["medicationStatements"]["entry"][0]["resource"]
    statement["dosage"] = [{"doseAndRate": [{"doseQuantity": {"value": "85"}}]}]  # not read: never refuses (issue 25)
    assert call("/cds-services/jak-options", bad_chart).status_code == 200
    statement["statusReason"] = [{"text": 85}]  # read: a stopped medicine's reason
    response = call("/cds-services/jak-options", bad_chart)
    assert response.status_code == 400 and "MedicationStatement/m: statusReason.0.text: Input should be a valid string" in response.json()["error"]


# --- issue 14: the service under attack ------------------------------------------------------

def test_a_fhir_server_the_issuer_does_not_allow_is_never_fetched(call: Call, fake_fhir: FakeFhir) -> None:
    fake_fhir.paths.clear()
    for server in ("http://169.254.169.254/latest", fake_fhir.url.replace("127.0.0.1", "localhost") + "/fhir",
                   fake_fhir.url + "/fhir/../../admin"):
        response = call("/cds-services/jak-options", from_fhir_server(server))
        assert response.status_code == 412 and "nothing was fetched" in response.json()["error"], server
    assert fake_fhir.paths == []


def test_the_patient_id_is_url_encoded_in_every_fetch(call: Call, fake_fhir: FakeFhir) -> None:
    fake_fhir.paths.clear()
    body = from_fhir_server(fake_fhir.url + "/fhir")
    body["context"]["patientId"] = "../../admin?x=1"
    body["prefetch"] = {}
    call("/cds-services/jak-options", body)
    assert fake_fhir.paths and all(p.startswith("/fhir/") and "/admin" not in p for p in fake_fhir.paths), fake_fhir.paths
    assert any("..%2F..%2Fadmin%3Fx%3D1" in p for p in fake_fhir.paths)


def test_a_failed_fetch_says_only_that_data_could_not_be_fetched(call: Call, fake_fhir: FakeFhir) -> None:
    for server in (fake_fhir.url + "/broken", fake_fhir.url + "/huge"):
        response = call("/cds-services/jak-options", from_fhir_server(server))
        assert response.status_code == 412
        error = response.json()["error"]
        assert "data could not be fetched" in error and "Error" not in error and "500" not in error, error


def test_a_dripping_fhir_server_is_cut_at_the_deadline(call: Call, fake_fhir: FakeFhir) -> None:
    started = time.monotonic()
    response = call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + "/drip"))
    assert response.status_code == 412 and time.monotonic() - started < 15


def test_the_token_is_checked_before_a_large_body_is_read(server: Server, http: httpx.Client, call: Call) -> None:
    """A 27 MB body without a token is a bare 401 at once, and does not hold up a valid call."""
    big = json.dumps({**hook("patient-view"), "extension": {"x": "y" * 27_000_000}}).encode()
    started = time.monotonic()
    response = http.post(server.base + "/cds-services/jak-options", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 401 and time.monotonic() - started < 2
    assert call("/cds-services/jak-options", hook("patient-view")).status_code == 200


def test_a_large_valid_chart_delays_only_itself(server: Server, http: httpx.Client, call: Call) -> None:
    """The chart is read and the rules run in a worker process: the event loop stays free."""

    body = hook("patient-view")
    filler = [{"resource": {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "note"},
                            "subject": {"reference": f"Patient/{PATIENT_ID}"}, "valueString": "x" * 200}} for i in range(20_000)]
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset", "entry": filler}
    path = "/cds-services/jak-options"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        large = pool.submit(lambda: http.post(server.base + path, json=body, headers={"Authorization": f"Bearer {mint(server.base + path)}"}, timeout=120))
        time.sleep(0.5)
        assert call("/cds-services").status_code == 200  # discovery, while the large chart is being read
        # answered before the large chart (an order, not a time: it holds on a loaded machine)
        assert not large.done(), "discovery waited for the large chart"
        assert large.result().status_code == 200


def test_a_used_token_stays_used_after_a_restart(tmp_path: Path, http: httpx.Client) -> None:
    store = tmp_path / "store.sqlite3"
    args = ("--issuers", str(write_issuers(tmp_path)), "--store", str(store))
    first = start(tmp_path, *args)
    path = "/cds-services"
    token = mint(first.base + path)
    assert http.get(first.base + path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    first.stop()
    second = start(tmp_path, *args)
    try:
        replay = mint(second.base + path, jti=jwt.decode(token, options={"verify_signature": False})["jti"])
        assert http.get(second.base + path, headers={"Authorization": f"Bearer {replay}"}).status_code == 401
    finally:
        second.stop()


def test_two_workers_share_one_store(tmp_path: Path, http: httpx.Client) -> None:
    running = start(tmp_path, "--issuers", str(write_issuers(tmp_path)), "--workers", "2", timeout=60)
    try:
        path = "/cds-services"
        token = mint(running.base + path)
        answers = [http.get(running.base + path, headers={"Authorization": f"Bearer {token}"}).status_code for _ in range(6)]
        assert answers == [200] + [401] * 5  # whichever worker answers, the jti is used
        call = "/cds-services/jak-options"
        body = {**hook("patient-view"), "hookInstance": str(uuid.uuid4())}
        assert http.post(running.base + call, json=body, headers={"Authorization": f"Bearer {mint(running.base + call)}"}).status_code == 200
        time.sleep(0.5)
        assert [d for d in decision_lines(running.stderr()) if d.get("hookInstance") == body["hookInstance"]]  # each worker logs
    finally:
        running.stop()


def test_feedback_only_for_issued_cards_and_of_bounded_size(server: Server, call: Call, patient_view: list[dict[str, Any]]) -> None:
    def send(card: str, comment: str) -> int:
        return call("/cds-services/jak-options/feedback", {"feedback": [{
            "card": card, "outcome": "overridden", "overrideReason": {"userComment": comment},
            "outcomeTimestamp": "2026-11-23T10:00:00Z"}]}).status_code

    assert send(str(uuid.uuid4()), "never issued") == 404
    assert send(patient_view[0]["uuid"], "x" * 50_000) == 200
    assert send(patient_view[0]["uuid"], "fine") == 200
    done = subprocess.run([str(JAKCDS), "feedback", "--store", str(server.store)], capture_output=True, text=True, timeout=60)
    long = [json.loads(line) for line in done.stdout.splitlines() if "truncated" in line]
    assert long and len(long[-1]["truncated"]) == 4096 and long[-1]["overrideReason"] is None


# --- issue 21: the CDS Hooks sandbox's own requests, and real prefetch ---------------------------

SANDBOX = REPO.parent / "shared" / "interop" / "cds-hooks-sandbox"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_KID = json.loads((SANDBOX / "sandbox-jwks.json").read_text())["keys"][0]["kid"]
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KEY = ec.generate_private_key(ec.SECP384R1())  # ours: the sandbox's private key is not ours to use


def sandbox_token(aud: str) -> str:
    """A JWT shaped as the sandbox's (header alg/typ/kid/jku; claims iss/aud/exp/iat/jti, exp 300 s after iat)."""
    now = int(time.time())
    claims = {"iss": SANDBOX_ISSUER, "aud": aud, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, SANDBOX_KEY, algorithm="ES384", headers={"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU})


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`jakcds serve` trusting the sandbox's issuer, with our own ES384 key under the sandbox's kid and jku."""
    directory = tmp_path_factory.mktemp("sandbox")
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(SANDBOX_KEY.public_key())) | {"kid": SANDBOX_KID, "alg": "ES384", "use": "sig"}
    (directory / "sandbox-jwks.json").write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    issuers = directory / "issuers.yaml"
    issuers.write_text(f'issuers:\n  "{SANDBOX_ISSUER}":\n    jwks_file: sandbox-jwks.json\n    jku: "{SANDBOX_JKU}"\n', encoding="utf-8")
    running = start(directory, "--issuers", str(issuers))
    yield running
    running.stop()


def replay(server: Server, http: httpx.Client, name: str) -> httpx.Response:
    """One of the sandbox's requests, byte for byte, to the service its hook names."""
    body = (SANDBOX / f"{name}.json").read_bytes()
    path = "/cds-services/" + {"order-select": "jak-order-select", "order-sign": "jak-order-sign"}[json.loads(body)["hook"]]
    return http.post(server.base + path, content=body, headers={
        "Authorization": f"Bearer {sandbox_token(server.base + path)}", "Content-Type": "application/json"})




def test_the_sandbox_before_a_pick_gets_no_card(sandbox_server: Server, http: httpx.Client) -> None:
    """order-select on opening the Rx View: the draft order names no medicine yet, so there is nothing to check."""
    response = replay(sandbox_server, http, "order-select-before-pick")
    assert (response.status_code, response.json()) == (200, {"cards": []})


@pytest.mark.parametrize("name", [pytest.param("order-select-tofacitinib"),
                                  pytest.param("order-sign-tofacitinib")])
def test_the_sandbox_tofacitinib_order_gets_its_critical_card(name: str, sandbox_server: Server, http: httpx.Client) -> None:
    """The sandbox's patient (atopic dermatitis, no failed systemic therapy): the rules exclude tofacitinib."""
    cards = check_cards(replay(sandbox_server, http, name))
    critical = [card for card in cards if card["indicator"] == "critical"]
    assert critical and all(card["summary"].startswith("Tofacitinib is not suggested") for card in critical)
    assert all(card["overrideReasons"] for card in critical)


def test_a_malformed_order_of_another_kind_never_blocks_the_jak_check(call: Call) -> None:
    expected = check_cards(call("/cds-services/jak-order-sign", hook("order-sign")))

    def add_nutrition_order(body: dict[str, Any]) -> None:
        body["context"]["draftOrders"].pop("type")  # as the sandbox sends it
        body["context"]["draftOrders"]["entry"].insert(0, {"resource": {"resourceType": "NutritionOrder", "id": "n1", "status": 5, "oralDiet": "soft"}})

    cards = check_cards(call("/cds-services/jak-order-sign", order(add_nutrition_order)))
    assert [(c["indicator"], c["summary"]) for c in cards] == [(c["indicator"], c["summary"]) for c in expected]
    assert "NutritionOrder/n1: a draft order other than a MedicationRequest: not checked" in cards[0]["detail"]


def test_an_order_that_cannot_be_read_is_said_not_checked(call: Call) -> None:
    cards = check_cards(call("/cds-services/jak-order-sign", order(lambda b: draft(b).update(medicationCodeableConcept="tofacitinib"))))
    assert [(c["indicator"], c["source"]["topic"]["code"], c["summary"]) for c in cards] == [
        ("info", "JAKCDS-003", "Order MedicationRequest/draft-tofa not checked: its medicine could not be read")]
    assert "medicationCodeableConcept could not be read" in cards[0]["detail"]


OUTCOME = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}


def test_a_prefetch_operation_outcome_is_fetched_from_fhir_server(call: Call, fake_fhir: FakeFhir, patient_view: list[dict[str, Any]]) -> None:
    """Issue 21.6: the EHR could not prefetch the conditions; that is not "no conditions"."""
    body = from_fhir_server(fake_fhir.url + "/fhir")
    body["prefetch"] = hook("patient-view")["prefetch"] | {"conditions": OUTCOME}
    fake_fhir.paths.clear()
    cards = check_cards(call("/cds-services/jak-options", body))
    assert [card["summary"] for card in cards] == [card["summary"] for card in patient_view]
    assert [unquote(p) for p in fake_fhir.paths] == ["/fhir/" + PREFETCH["conditions"].replace("{{context.patientId}}", PATIENT_ID)]


def test_a_prefetch_operation_outcome_without_fhir_server_is_412(call: Call) -> None:
    response = call("/cds-services/jak-options", malformed(lambda b: b["prefetch"].update(conditions=OUTCOME)))
    assert response.status_code == 412 and "OperationOutcome" in response.json()["error"]


def test_a_fetched_chart_is_read_in_a_worker_process(server: Server, call: Call, fake_fhir: FakeFhir) -> None:
    """Issue 24 F2: a chart fetched from fhirServer (of any size) is read off the event loop, as a large prefetch is."""
    fetched, prefetched = from_fhir_server(fake_fhir.url + "/fhir"), hook("patient-view")
    for body in (fetched, prefetched):
        body["hookInstance"] = str(uuid.uuid4())
        assert call("/cds-services/jak-options", body).status_code == 200
    where = {d["hookInstance"]: d["read_in"] for d in decision_lines(server.stderr())}
    assert (where[fetched["hookInstance"]], where[prefetched["hookInstance"]]) == ("worker", "loop")


def test_codes_in_card_detail_are_code_spans(call: Call) -> None:
    """Issue 21.9: `system|code` in plain Markdown becomes a broken link in the sandbox's renderer."""
    body = malformed(lambda b: b["prefetch"]["conditions"]["entry"].append(condition({"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}, "resolved")))
    detail = check_cards(call("/cds-services/jak-options", body))[0]["detail"]
    assert "`http://snomed.info/sct|38341003`" in detail
    assert re.findall(r"(?<!`)http://snomed\.info/sct\|", detail) == []


# --- issue 24: the service under attack (F3, F10, F11, F13) -------------------------------------

@pytest.mark.parametrize("link", ["/escape/../../admin/secret", "/escape/%2e%2e/%2e%2e/admin/secret", "/escape/..;/admin/secret",
                                  "/escape/./../admin/secret", "/escape/Condition;jsessionid=1", "/escape/..%2F..%2Fadmin"])
def test_a_next_link_outside_fhir_server_is_never_fetched(link: str, call: Call, fake_fhir: FakeFhir) -> None:
    fake_fhir.next_link, fake_fhir.paths[:] = link, []
    response = call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + "/escape"))
    assert response.status_code == 412 and "data could not be fetched" in response.json()["error"]
    assert [p for p in fake_fhir.paths if "admin" in p or ".." in unquote(p) or ";" in p] == []


def test_a_fhir_server_with_path_parameters_or_dot_segments_is_refused(call: Call, fake_fhir: FakeFhir) -> None:
    fake_fhir.paths.clear()
    for suffix in ("/fhir/..;/admin", "/fhir/%2e%2e/admin", "/fhir;x=1"):
        response = call("/cds-services/jak-options", from_fhir_server(fake_fhir.url + suffix))
        assert response.status_code == 412 and "nothing was fetched" in response.json()["error"], suffix
    # (fetches of an earlier test's other keys may still arrive: only these servers' paths count)
    assert [p for p in fake_fhir.paths if p.startswith(("/fhir/..", "/fhir/%2e", "/fhir;", "/admin"))] == []


def test_an_attackers_long_kid_is_logged_cut(server: Server, call: Call) -> None:
    """A 40 KB kid (the request head's 64 KiB cap refuses a 100 KB one with a 400 before any log line)."""
    path = "/cds-services/jak-options"
    marker = uuid.uuid4().hex
    assert_refused(call(path, hook("patient-view"), token=mint(server.base + path, headers={"kid": marker + "k" * 40_000})))
    lines = [line for line in server.stderr().splitlines() if marker in line]
    assert lines and max(map(len, lines)) < 1000
    assert call(path, hook("patient-view"), token=mint(server.base + path, headers={"kid": "k" * 100_000})).status_code == 400


def test_feedback_past_the_issuers_quota_is_429_with_retry_after(tmp_path: Path, http: httpx.Client) -> None:
    """Issue 24 F11: one EHR wrote 860 MB of feedback in 60 s; now 2 MiB a minute (64 MiB a day) per issuer."""
    running = start(tmp_path, "--issuers", str(write_issuers(tmp_path)))
    try:
        def post(path: str, body: dict[str, Any]) -> httpx.Response:
            return http.post(running.base + path, json=body, headers={"Authorization": f"Bearer {mint(running.base + path)}"})

        card = post("/cds-services/jak-options", hook("patient-view")).json()["cards"][0]["uuid"]
        item = {"card": card, "outcome": "overridden", "overrideReason": {"userComment": "x" * 4000}, "outcomeTimestamp": "2026-11-23T10:00:00Z"}
        answers = [post("/cds-services/jak-options/feedback", {"feedback": [item] * 100}) for _ in range(6)]  # ~0.4 MB each
    finally:
        running.stop()
    assert [a.status_code for a in answers] == [200] * 4 + [429] * 2
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 61


def test_a_huge_header_and_idle_connections_do_not_stop_a_real_call(tmp_path: Path, http: httpx.Client) -> None:
    """Issue 24 F3: 1,100 idle connections to a server limited to 1,024 open files (systemd's default)
    and 48 MiB headers, no token needed. The service closes the longest-idle connections past its
    cap and refuses a head over 64 KiB."""
    server = start(tmp_path, "--issuers", str(write_issuers(tmp_path)), files=1024)
    host, port = "127.0.0.1", int(server.base.rsplit(":", 1)[1])
    idle = [socket.create_connection((host, port)) for _ in range(1_100)]
    path = "/cds-services/jak-options"

    def huge_header() -> bytes:
        with socket.create_connection((host, port)) as sock:
            try:
                sock.sendall(b"GET /cds-services HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (48 * 2**20) + b"\r\n\r\n")
            except OSError:  # the server answered and closed before the header ended
                pass
            return sock.recv(64)

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            huge = [pool.submit(huge_header) for _ in range(4)]
            real = http.post(server.base + path, json=hook("patient-view"), headers={"Authorization": f"Bearer {mint(server.base + path)}"})
            answers = [h.result() for h in huge]
        closed = 0
        for sock in idle:
            sock.setblocking(False)
            try:
                closed += sock.recv(1) == b""
            except BlockingIOError:
                pass
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert real.status_code == 200
    assert all(a == b"" or a.startswith(b"HTTP/1.1 400") for a in answers), answers
    assert closed >= 1_100 - 512


def test_a_request_head_sent_too_slowly_is_cut(server: Server) -> None:
    host, port = "127.0.0.1", int(server.base.rsplit(":", 1)[1])
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"GET /cds-services HTTP/1.1\r\nHost: x\r\n")  # and the rest never comes
        sock.settimeout(30)
        assert sock.recv(64) == b""


def test_serve_prints_its_limits(server: Server) -> None:
    assert "limits per server process: request head 64 KiB sent within 10 s" in server.stderr()
