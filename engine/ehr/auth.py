"""CDS Hooks 2.0 JWT checks (the spec's "Trusting CDS Clients"), with PyJWT doing the crypto.

A request is trusted when its bearer JWT (header typ JWT and a kid) is signed with an asymmetric algorithm (never `none` or
HMAC) by a key in the JWKS configured for its allow-listed `iss` (and `jku`, if it names one),
its `aud` is the URL of the endpoint called, it has not expired, and its `jti` has not been seen
before within the token's lifetime. Any failure is the same bare 401: no detail for the caller.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import yaml

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY = 30  # seconds of clock skew allowed on exp and iat
MAX_LIFETIME = 3600  # seconds: a token expiring later than this from now is refused (it would sit in the replay cache)
REQUIRED = ["iss", "aud", "exp", "iat", "jti"]


class Unauthorized(Exception):
    """The request is not trusted; the reason is for the server's log only."""


@dataclass
class Issuer:
    jwks: jwt.PyJWKSet
    jku: str = ""  # if set, a token naming a jku must name this one


@dataclass
class Verifier:
    issuers: dict[str, Issuer]
    seen: dict[str, float] = field(default_factory=dict)  # jti -> when it may be forgotten
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_sweep: float = 0.0

    def verify(self, authorization: str | None, audience: str) -> dict[str, Any]:
        """The claims of a trusted token, else Unauthorized."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("no bearer token")
        try:
            header = jwt.get_unverified_header(token)
            issuer_id = jwt.decode(token, options={"verify_signature": False}).get("iss")
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
        if float(claims["exp"]) > time.time() + MAX_LIFETIME:
            raise Unauthorized(f"exp more than {MAX_LIFETIME} s ahead")
        self._first_use(str(claims["jti"]), float(claims["exp"]) + LEEWAY)
        return claims

    def _first_use(self, jti: str, forget_after: float) -> None:
        now = time.time()
        with self.lock:
            if now >= self.next_sweep:  # drop expired entries once a minute
                self.seen = {k: t for k, t in self.seen.items() if t > now}
                self.next_sweep = now + 60
            if self.seen.get(jti, 0) > now:
                raise Unauthorized("jti replayed")
            self.seen[jti] = forget_after


def load_issuers(path: Path) -> dict[str, Issuer]:
    """The allow-list file (YAML or JSON): {issuers: {<iss>: {jwks: {...} | jwks_file: path, jku: url}}}.
    A jwks_file is read relative to the allow-list file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    issuers = {}
    for iss, entry in (doc.get("issuers") or {}).items():
        jwks = entry.get("jwks") or json.loads((path.parent / entry["jwks_file"]).read_text(encoding="utf-8"))
        issuers[iss] = Issuer(jwt.PyJWKSet.from_dict(jwks), entry.get("jku", ""))
    if not issuers:
        raise ValueError(f"{path}: no issuers")
    return issuers
