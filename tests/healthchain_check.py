"""Validate a CDS Hooks document with HealthChain; run by the HealthChain venv's python.

stdin:  {"kind": "discovery" | "response", "document": {...}}
stdout: a JSON list of error strings, pydantic errors as "loc: msg" (loc joined with ".").
"""

import json
import sys

from pydantic import ValidationError

from healthchain.models import CDSResponse
from healthchain.models.responses.cdsdiscovery import CDSServiceInformation

MODELS = {"discovery": CDSServiceInformation, "response": CDSResponse}


def errors(kind: str, document: object) -> list[str]:
    model = MODELS[kind]
    try:
        # CDSServiceInformation validates each entry of "services" (locs "services.<i>.<field>").
        model.model_validate(document)
    except ValidationError as exc:
        return [".".join(str(part) for part in e["loc"]) + ": " + e["msg"] for e in exc.errors()]
    except Exception as exc:  # e.g. the AttributeError for suggestions without selectionBehavior
        return [f"<{type(exc).__name__}>: {exc}"]
    return []


if __name__ == "__main__":
    request = json.load(sys.stdin)
    json.dump(errors(request["kind"], request["document"]), sys.stdout)
