"""A local stand-in for an EHR's JWT issuer, for trying, testing and load-testing `jakcds serve`.

    python scripts/dev_issuer.py init DIR            # ES384 key pair + DIR/issuers.yaml for --issuers
    python scripts/dev_issuer.py token DIR URL       # print a fresh token whose aud is URL

The private key stays in DIR (never commit one); the service only ever sees the public JWKS.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://ehr.example.org/"
KID = "dev-es384"


def init(directory: Path) -> Path:
    """Write a key pair, its JWKS and an issuers.yaml allow-listing ISSUER; returns issuers.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (directory / "private-key.pem").write_bytes(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": KID, "alg": "ES384", "use": "sig"}
    (directory / "jwks.json").write_text(json.dumps({"keys": [public]}, indent=2) + "\n")
    issuers = directory / "issuers.yaml"
    issuers.write_text(f"issuers:\n  {json.dumps(ISSUER)}:\n    jwks_file: jwks.json\n")
    return issuers


def token(directory: Path, audience: str, lifetime: int = 300, **claims: Any) -> str:
    """A signed ES384 token as an EHR would send it: iss, aud, iat, exp and a fresh jti."""
    key = serialization.load_pem_private_key((directory / "private-key.pem").read_bytes(), password=None)
    now = int(time.time())
    body = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())} | claims
    return jwt.encode(body, key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["init", directory]:
            print(init(Path(directory)))
        case ["token", directory, audience]:
            print(token(Path(directory), audience))
        case _:
            sys.exit(__doc__)
