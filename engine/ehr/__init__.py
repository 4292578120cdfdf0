"""EHR integration: FHIR R4 input (fhir, elements, chart), CDS Hooks cards and service, JWT auth."""
