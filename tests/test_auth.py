"""engine/auth.py on the CDS Hooks 2.0 spec's own test vector (§Trusting CDS Clients, Example):
its ES384 token verifies against its JWK Set, and is then refused only because it expired in 2015."""

import time
import uuid

import jwt
import pytest

from cds_keys import EC_KEY, ISSUER, JWKS

from jakcds.ehr.auth import Issuer, Unauthorized, Verifier

SPEC_JWKS = {"keys": [{
    "kty": "EC", "use": "sig", "crv": "P-384", "kid": "example-kid", "alg": "ES384",
    "x": "46SDH7Znh821wblCBglA61sNE9ZrHYKKt3qRtRTmSXyOI_FIGBLWrWa0GPUkDCEk",
    "y": "XMcRuuoGW7CXjQdy-F5i3FeBE0x9hPLdeFdSoDd3ELmx404tLX0VRRcqzAsPhXcI",
}]}
SPEC_TOKEN = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGlyLWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0"
    ".eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIsImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNhYzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0"
    ".d1WfLjGRKlcWB94l9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjooZdooCSDf2L8-i4awdoUwiEb"
)
AUDIENCE = "https://cds.example.org/cds-services/some-service"


def spec_verifier(jku: str = "https://fhir-ehr.example.com/jwk_uri") -> Verifier:
    return Verifier({"https://fhir-ehr.example.com/": Issuer(jwt.PyJWKSet.from_dict(SPEC_JWKS), jku)})


def refusal(verifier: Verifier, token: str, audience: str = AUDIENCE) -> str:
    with pytest.raises(Unauthorized) as refused:
        verifier.verify(f"Bearer {token}", audience)
    return str(refused.value)


def test_the_spec_token_has_a_good_signature_and_is_refused_as_expired():
    # PyJWT checks the signature before the claims: reaching the expiry means the ES384 signature held
    assert refusal(spec_verifier(), SPEC_TOKEN).startswith("ExpiredSignatureError")


def test_a_tampered_spec_token_fails_its_signature():
    header, claims, signature = SPEC_TOKEN.split(".")
    tampered = ".".join([header, claims, ("A" if signature[0] != "A" else "B") + signature[1:]])
    assert refusal(spec_verifier(), tampered).startswith("InvalidSignatureError")


def test_the_spec_token_is_refused_for_an_unlisted_jku_or_issuer():
    assert refusal(spec_verifier(jku="https://other.example.com/jwks"), SPEC_TOKEN) == "jku not allowed for this issuer"
    assert refusal(Verifier({}), SPEC_TOKEN).startswith("issuer not allowed")


def own_token(**claims: object) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())} | claims
    return jwt.encode(payload, EC_KEY, algorithm="ES384", headers={"typ": "JWT", "kid": "ec-1"})


@pytest.mark.parametrize("claims", [
    {"iat": str(int(time.time()))}, {"iat": True}, {"exp": str(int(time.time()) + 300)}, {"nbf": "0"},
    {"jti": ""}, {"jti": "j" * 65_536}, {"jti": 7},
], ids=["iat string", "iat true", "exp string", "nbf string", "jti empty", "jti 64 KiB", "jti number"])
def test_claims_of_the_wrong_type_are_refused(claims: dict[str, object]) -> None:
    verifier = Verifier({ISSUER: Issuer(jwt.PyJWKSet.from_dict(JWKS))})
    assert verifier.verify(f"Bearer {own_token()}", AUDIENCE)["iss"] == ISSUER  # the same token, well typed, passes
    refusal(verifier, own_token(**claims))
