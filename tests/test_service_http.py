"""The CDS Hooks service over real HTTP: `jakcds serve` as a subprocess on loopback, called with
signed JWTs (tests/cds_keys.py); its stderr (the decision log) and feedback log are read back."""

from __future__ import annotations

import base64
import copy
import json
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


def start(directory: Path, *args: str, timeout: float = 30) -> Server:
    """`jakcds serve` on a free loopback port, once the port answers."""
    port = free_port()
    stderr_file = directory / f"serve-{port}.stderr"
    if "--store" not in args:
        args = (*args, "--store", str(directory / f"store-{port}.sqlite3"))
    with stderr_file.open("wb") as err:
        process = subprocess.Popen(
            [str(JAKCDS), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=subprocess.DEVNULL, stderr=err,
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
    running = start(directory, "--issuers", str(write_issuers(directory, [fake_fhir.url + base for base in ("/fhir", "/paged", "/broken", "/huge", "/drip")] + ["http://fhir.example.org"])), "--store", str(store),
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
            page = pages.get(unquote(self.path))
            if page and page.get("link"):  # next links are absolute URLs on this server
                page = {**page, "link": [{"relation": "next", "url": f"http://{self.headers['Host']}/paged/page-2"}]}
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
    yield FakeFhir(f"http://127.0.0.1:{httpd.server_address[1]}", authorizations, paths)
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


def test_a_chart_whose_conditions_cannot_be_read_says_so(call: Call) -> None:
    text_only = {"text": "Dermatomyositis"}  # as a chart coding it in SNOMED CT only would be read: not at all
    body = malformed(lambda b: b["prefetch"]["conditions"]["entry"][0]["resource"].update(code=text_only))
    cards = check_cards(call("/cds-services/jak-options", body))
    assert [(c["source"]["topic"]["code"], c["indicator"]) for c in cards] == [("JAKCDS-003", "info")]
    assert "Condition/dm Dermatomyositis: no ICD-10-CM or SNOMED CT code the pack maps" in cards[0]["detail"]
    no_conditions = malformed(lambda b: b["prefetch"].update(conditions=None))
    assert call("/cds-services/jak-options", no_conditions).json() == {"cards": []}


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
    bad_chart["prefetch"]["medicationStatements"]["entry"][0]["resource"]["dosage"] = [{"doseAndRate": [{"doseQuantity": {"value": "85"}}]}]
    response = call("/cds-services/jak-options", bad_chart)
    assert response.status_code == 400 and "a FHIR number is a JSON number" in response.json()["error"]


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
    import concurrent.futures

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
