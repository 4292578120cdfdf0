"""Population screening over a FHIR Bulk Data export (NDJSON, one file per resource type), on Dask.

    jakcds screen EXPORT_DIR -o OUT_DIR [--scheduler ADDRESS] [--workers N]

1. Partition (one pass, streaming, bounded memory): every line of every `*.ndjson` file (or of
   the files an `$export` manifest names) goes to one of BUCKETS bucket files by a hash of its
   patient (the Patient's id, or the subject / patient reference); a line that is not JSON, not a
   FHIR resource or about no patient is counted and listed, and never stops the run.
2. Evaluate (Dask, one task per bucket): each bucket's patients, in id order, are read with the
   same reader and rules as `evaluate_fhir`; each worker process builds its engine once (durable-
   rules holds the GIL: processes, not threads). Each task writes its own part files.
3. Join the parts in bucket order: `results.ndjson` (one line per patient), `summary.csv` and
   `summary.parquet` (candidates per condition, and every patient on a JAK inhibitor with a
   warning or critical finding about it), `bad_lines.ndjson` and `counts.json`. The same export
   gives byte-identical files whatever the scheduler and the number of workers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

# partitions of the export: at least 64, and about 32 MiB each, so that one task holds one bucket's
# patients in memory whatever the export's size (capped by the open-file limit)
BUCKETS, BUCKET_BYTES, MAX_BUCKETS = 64, 32 * 1024 * 1024, 900
SUMMARY = ["kind", "patient", "condition", "drug", "rank", "label_status", "severity", "rules"]


@dataclass(frozen=True)
class Job:
    """What every task needs: the pack, the date ages are computed on, where parts go."""

    rules: str | None
    include_draft: bool
    as_of: str
    parts: str


def patient_of(resource: dict[str, Any]) -> str | None:
    """The patient a resource is about: a Patient's id, else its subject / patient reference."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") if isinstance(resource.get("id"), str) and resource["id"] else None
    for field in ("subject", "patient"):
        reference = resource.get(field)
        target = reference.get("reference") if isinstance(reference, dict) else None
        if isinstance(target, str) and "Patient/" in target:
            return target.rsplit("Patient/", 1)[1] or None
    return None


def export_files(export: Path) -> list[Path]:
    """The NDJSON files of an export folder, or those its `$export` manifest lists (by path or file URL)."""
    manifest = next((p for p in (export / "manifest.json", export / "$export.json") if p.is_file()), None)
    if manifest is None:
        return sorted(export.glob("*.ndjson"))
    outputs = json.loads(manifest.read_text(encoding="utf-8")).get("output") or []
    return [export / Path(str(item.get("url", "")).removeprefix("file://")).name for item in outputs]


def partition(export: Path, buckets: Path) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Stream the export into bucket files; (resources per type, bad lines)."""
    buckets.mkdir(parents=True, exist_ok=True)
    files = export_files(export)
    count = min(MAX_BUCKETS, max(BUCKETS, sum(p.stat().st_size for p in files) // BUCKET_BYTES + 1))
    handles = [open(buckets / f"{i:03d}.ndjson", "w", encoding="utf-8") for i in range(count)]
    kinds: Counter[str] = Counter()
    bad: list[dict[str, Any]] = []
    try:
        for path in files:
            with open(path, encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    why, resource = _parse(line)
                    patient = patient_of(resource) if resource else None
                    if resource and patient is None:
                        why = "about no patient (no Patient id, subject or patient reference)"
                    if why:
                        bad.append({"file": path.name, "line": number, "why": why})
                        continue
                    kinds[resource["resourceType"]] += 1
                    handles[_bucket(patient, count)].write(json.dumps([patient, resource], separators=(",", ":")) + "\n")
    finally:
        for handle in handles:
            handle.close()
    return kinds, bad


def _parse(line: str) -> tuple[str, dict[str, Any] | None]:
    try:
        resource = json.loads(line)
    except (ValueError, RecursionError):
        return "not JSON", None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return "not a FHIR resource (no resourceType)", None
    return "", resource


def _bucket(patient: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(patient.encode()).digest()[:4], "big") % count


def evaluate_bucket(bucket: str, job: Job) -> dict[str, int]:
    """One task: the bucket's patients evaluated in id order; its part files written. Counts back."""
    from ..decision.evaluate import InputError, evaluator

    ev = evaluator(job.rules, job.include_draft)  # built once per worker process, then cached
    patients: dict[str, list[dict[str, Any]]] = {}
    with open(bucket, encoding="utf-8") as lines:
        for line in lines:
            patient, resource = json.loads(line)
            patients.setdefault(patient, []).append(resource)
    name = Path(bucket).stem
    counts: Counter[str] = Counter()
    with open(Path(job.parts) / f"{name}.results.ndjson", "w", encoding="utf-8") as results, \
            open(Path(job.parts) / f"{name}.summary.csv", "w", encoding="utf-8", newline="") as summary:
        rows = csv.writer(summary)
        for patient in sorted(patients):
            try:
                line, found = screen_patient(ev, patient, patients[patient], date.fromisoformat(job.as_of))
                counts["evaluated"] += 1
            except InputError as error:
                line, found = {"patient": patient, "error": str(error)}, []
                counts["input_errors"] += 1
            results.write(json.dumps(line, sort_keys=True, separators=(",", ":"), default=str) + "\n")
            rows.writerows(found)
            counts["summary_rows"] += len(found)
    return dict(counts)


def screen_patient(ev: Any, patient: str, resources: list[dict[str, Any]], as_of: date) -> tuple[dict[str, Any], list[list[Any]]]:
    """One patient's results (one per active skin condition) and summary rows."""
    from .chart import evaluate_read, read_chart

    entries = sorted(resources, key=lambda r: (str(r.get("resourceType")), str(r.get("id"))))
    reader = read_chart(ev, {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}, as_of)
    on_jak = sorted(set(reader.lists["medications"]) & set(ev.pack.drugs))
    results, rows = [], []
    for condition in reader.skin_conditions():
        result = evaluate_read(ev, reader, condition)
        results.append(result.model_dump(mode="json", exclude={"sources", "ruleset"}))
        rows += [["candidate", patient, condition, c.drug, c.rank, c.label_status,
                  c.cautions[0].severity if c.cautions else "", " ".join(c.rules)] for c in result.candidates]
        rows += _findings(result, ev.plan.by_id, patient, condition, on_jak)
    line = {"patient": patient, "on_jak_inhibitor": on_jak, "results": results,
            "unmapped": [u.model_dump() for u in reader.sorted_unmapped()]}
    return line, rows


def _findings(result: Any, rules: dict[str, Any], patient: str, condition: str, on_jak: list[str]) -> list[list[Any]]:
    """For each JAK inhibitor the patient takes: its warning and critical cautions, or the
    exclusions that would remove it now (critical). A proposal it does not meet or the off-label
    bar is not a finding about a drug already taken: the prescriber chose it."""
    rows = []
    for drug in on_jak:
        candidate = next((c for c in result.candidates if c.drug == drug), None)
        if candidate is not None:
            found = [(c.severity, c.rule) for c in candidate.cautions if c.severity in ("warning", "critical")]
        else:
            excluded = next(x for x in result.excluded if x.drug == drug)
            found = [("critical", r.rule) for r in excluded.reasons
                     if r.rule in rules and rules[r.rule].kind == "exclude" and rules[r.rule].scope == "all"]
        for severity in ("critical", "warning"):
            named = sorted(rule for level, rule in found if level == severity)
            if named:
                rows.append(["on_jak_finding", patient, condition, drug, "", "", severity, " ".join(named)])
    return rows


def screen(export: Path, out: Path, *, rules: str | None = None, include_draft: bool = False,
           as_of: date | None = None, scheduler: Any = None, workers: int | None = None,
           progress: bool = False) -> dict[str, Any]:
    """Screen a bulk export into `out`. scheduler: None (local processes, `workers` of them; 1
    runs in this process), a Dask distributed address, or a distributed Client / cluster."""
    out.mkdir(parents=True, exist_ok=True)
    buckets, parts = out / "buckets", out / "parts"
    parts.mkdir(exist_ok=True)
    started = time.perf_counter()
    kinds, bad = partition(export, buckets)
    job = Job(rules, include_draft, (as_of or date.today()).isoformat(), str(parts))
    files = [str(p) for p in sorted(buckets.glob("*.ndjson")) if p.stat().st_size]
    counts = run_tasks(files, evaluate_bucket, job, scheduler=scheduler, workers=workers, progress=progress)
    total = sum((Counter(c) for c in counts), Counter())
    _join(out, parts, files)
    seconds = time.perf_counter() - started
    summary = {"resources": dict(sorted(kinds.items())), "bad_lines": len(bad), "patients": total["evaluated"] + total["input_errors"],
               "evaluated": total["evaluated"], "input_errors": total["input_errors"], "summary_rows": total["summary_rows"]}
    (out / "bad_lines.ndjson").write_text("".join(json.dumps(b, sort_keys=True) + "\n" for b in bad), encoding="utf-8")
    (out / "counts.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {**summary, "seconds": seconds, "patients_per_second": summary["patients"] / seconds if seconds else 0.0}


def run_tasks(files: list[str], task: Any, job: Any, *, scheduler: Any = None, workers: int | None = None,
              progress: bool = False) -> list[Any]:
    """task(file, job=job) for every bucket file, one Dask task each; their returns in file order.
    scheduler: None (local processes, `workers` of them; 1 runs in this process), a Dask
    distributed address, or a distributed Client / cluster."""
    import dask
    import dask.bag as db

    bag = db.from_sequence(files, npartitions=max(len(files), 1)).map(task, job=job)
    if scheduler is not None:
        from distributed import Client
        from distributed import progress as show

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        future = client.compute(bag)
        if progress:
            show(future)
        return future.result()
    from dask.diagnostics import ProgressBar

    local = "synchronous" if workers == 1 else "processes"
    with dask.config.set(scheduler=local, num_workers=workers or os.cpu_count()), ProgressBar() if progress else nullcontext():
        return bag.compute()


def _join(out: Path, parts: Path, files: list[str]) -> None:
    """The part files, in bucket order, into the final results and summary (streamed)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    names = [Path(f).stem for f in files]
    with open(out / "results.ndjson", "w", encoding="utf-8") as results:
        for name in names:
            with open(parts / f"{name}.results.ndjson", encoding="utf-8") as part:
                results.writelines(part)
    with open(out / "summary.csv", "w", encoding="utf-8", newline="") as summary:
        csv.writer(summary).writerow(SUMMARY)
        for name in names:
            with open(parts / f"{name}.summary.csv", encoding="utf-8", newline="") as part:
                summary.write(part.read())
    columns = {name: pa.string() for name in SUMMARY}
    table = pacsv.read_csv(io.BytesIO((out / "summary.csv").read_bytes()),
                           convert_options=pacsv.ConvertOptions(column_types=columns, strings_can_be_null=False))
    pq.write_table(table, out / "summary.parquet")
