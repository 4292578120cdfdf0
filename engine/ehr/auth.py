"""CDS Hooks 2.0 JWT checks (the spec's "Trusting CDS Clients"), with PyJWT doing the crypto.

A request is trusted when its bearer JWT (header typ JWT and a kid) is signed with an asymmetric algorithm (never `none` or
HMAC) by a key in the JWKS configured for its allow-listed `iss` (and `jku`, if it names one),
its `aud` is the URL of the endpoint called, it has not expired, and its `jti` has not been seen
before within the token's lifetime (in the service's store, so not after a restart either). Any failure is the same bare 401: no detail for the caller.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml

from .store import Store

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY = 30  # seconds of clock skew allowed on exp and iat
MAX_LIFETIME = 3600  # seconds: a token expiring later than this from now is refused (it would sit in the replay cache)
REQUIRED = ["iss", "aud", "exp", "iat", "jti"]
JTI_MAX = 256  # characters of a jti (a UUID is 36): it is stored in the replay table


class Unauthorized(Exception):
    """The request is not trusted; the reason is for the server's log only."""


@dataclass
class Issuer:
    jwks: jwt.PyJWKSet
    jku: str = ""  # if set, a token naming a jku must name this one
    fhir_servers: list[str] = field(default_factory=list)  # the fhirServer base URLs this EHR may name


@dataclass
class Verifier:
    issuers: dict[str, Issuer]
    store: Store = field(default_factory=lambda: Store(Path(":memory:")))  # the used jti, kept across restarts

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The claims of a trusted token, else Unauthorized."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("no bearer token")
        try:
            unverified = jwt.decode_complete(token, options={"verify_signature": False})  # header and claims, parsed once
            header, issuer_id = unverified["header"], unverified["payload"].get("iss")
            issuer = self.issuers.get(issuer_id) if isinstance(issuer_id, str) else None
            if issuer is None:
                raise Unauthorized(f"issuer not allowed: {issuer_id!r}")
            if header.get("alg") not in ALGORITHMS:
                raise Unauthorized(f"algorithm not allowed: {header.get('alg')!r}")
            if header.get("typ") != "JWT" or not header.get("kid"):
                raise Unauthorized("the spec's header fields typ: JWT and kid are required")
            if header.get("jku") and header["jku"] != issuer.jku:
                raise Unauthorized("jku not allowed for this issuer")
            key = issuer.jwks[header["kid"]]
            claims = jwt.decode(
                token, key, algorithms=ALGORITHMS, audience=audience, issuer=issuer_id,
                leeway=LEEWAY, options={"require": REQUIRED},
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
            raise Unauthorized(f"{type(error).__name__}: {error}") from None
        _check_types(claims)
        if float(claims["exp"]) > time.time() + MAX_LIFETIME:
            raise Unauthorized(f"exp more than {MAX_LIFETIME} s ahead")
        if not self.store.first_use(f"{issuer_id} {claims['jti']}", float(claims["exp"]) + LEEWAY):
            raise Unauthorized("jti replayed")
        return claims


def _check_types(claims: dict[str, Any]) -> None:
    """What PyJWT lets through: a NumericDate is a JSON number (RFC 7519), never a string or a
    boolean; the jti a non-empty string of bounded length."""
    for name in ("exp", "iat", "nbf"):
        if name in claims and (isinstance(claims[name], bool) or not isinstance(claims[name], (int, float))):
            raise Unauthorized(f"{name} is not a JSON number")
    if not isinstance(claims["jti"], str) or not 0 < len(claims["jti"]) <= JTI_MAX:
        raise Unauthorized(f"jti is not a string of 1 to {JTI_MAX} characters")


def load_issuers(path: Path) -> dict[str, Issuer]:
    """The allow-list file (YAML or JSON): {issuers: {<iss>: {jwks: {...} | jwks_file: path, jku: url,
    fhir_servers: [base URL, ...]}}}. A jwks_file is read relative to the allow-list file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    issuers = {}
    for iss, entry in (doc.get("issuers") or {}).items():
        jwks = entry.get("jwks") or json.loads((path.parent / entry["jwks_file"]).read_text(encoding="utf-8"))
        servers = entry.get("fhir_servers") or []
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise ValueError(f"{path}: {iss}: fhir_servers is a list of base URLs")
        issuers[iss] = Issuer(jwt.PyJWKSet.from_dict(jwks), entry.get("jku", ""), servers)
    if not issuers:
        raise ValueError(f"{path}: no issuers")
    return issuers
