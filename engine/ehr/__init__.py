"""EHR integration: FHIR R4 input (fhir, chart), CDS Hooks cards and service, JWT auth."""
