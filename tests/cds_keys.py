"""Keys and JWTs for the CDS Hooks service tests: a trusted EHR issuer (ES384 and RS384 keys in
its JWKS) and an unknown issuer, generated at import; `mint` signs a token, `write_issuers`
writes the allow-list that `jakcds.ehr.auth.load_issuers` reads."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

ISSUER = "https://ehr.example.org/"
UNKNOWN_ISSUER = "https://intruder.example.net/"

EC_KEY = ec.generate_private_key(ec.SECP384R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
UNKNOWN_KEY = ec.generate_private_key(ec.SECP384R1())  # signs as the unknown issuer, or forges the trusted one


def _public_jwk(key: PrivateKeyTypes, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


JWKS: dict[str, Any] = {"keys": [_public_jwk(EC_KEY, "ec-1", "ES384"), _public_jwk(RSA_KEY, "rsa-1", "RS384")]}


def mint(
    aud: str,
    *,
    iss: str = ISSUER,
    key: PrivateKeyTypes = EC_KEY,
    alg: str = "ES384",
    exp_in: int = 300,
    jti: str | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """A signed JWT for `aud`, a fresh jti unless given (jti="" leaves it out), kid by algorithm family;
    a header given as None is left out."""
    now = int(time.time())
    payload: dict[str, Any] = {"iss": iss, "sub": "ehr-client", "aud": aud, "iat": now, "exp": now + exp_in}
    if jti != "":
        payload["jti"] = jti or str(uuid.uuid4())
    header = {"typ": "JWT", "kid": "rsa-1" if alg.startswith(("RS", "PS")) else "ec-1"} | (headers or {})
    return jwt.encode(payload, key, algorithm=alg, headers={k: v for k, v in header.items() if v is not None})


def write_issuers(directory: Path, fhir_servers: list[str] = ()) -> Path:
    """issuers.yaml (trusted issuer -> jwks_file, and the fhirServer base URLs it may name) and
    jwks.json in `directory`; the YAML's path."""
    (directory / "jwks.json").write_text(json.dumps(JWKS), encoding="utf-8")
    path = directory / "issuers.yaml"
    path.write_text(f'issuers:\n  "{ISSUER}":\n    jwks_file: jwks.json\n    fhir_servers: {json.dumps(list(fhir_servers))}\n', encoding="utf-8")
    return path
