"""One decision, top-down: evaluate -> patient (validation) -> facts -> compiler/session (durable-rules) -> result.

Imports nothing from FHIR, HTTP or terminals."""
