"""Population screening over a FHIR Bulk Data export (NDJSON, one file per resource type), on Dask.

    jakcds screen EXPORT_DIR -o OUT_DIR [--scheduler ADDRESS] [--workers N]

1. Partition (one streaming pass, bounded memory, orjson): every line of every `*.ndjson` file
   (or of the files an `$export` manifest names) is written as it came to one of BUCKETS bucket
   files by a hash of its patient (the Patient's id, or the subject / patient reference; a
   reference to another server's patient is kept apart from the local one). A line that is not
   JSON, not a FHIR resource, longer than LINE_MAX, or a resource the reader reads about no
   patient is a bad line: counted, the first BAD_KEPT listed, never stopping the run. Resources
   of other types about no patient (Location, Organization, ...) and the bulk client's
   `log.ndjson` are normal parts of an export: counted by type, not read.
2. Evaluate (Dask, one task per bucket): each bucket's patients, in id order, are read with the
   same reader and rules as `evaluate_fhir`; each worker process builds its engine once (durable-
   rules holds the GIL: processes, not threads). A malformed Observation (or a malformed resource
   of a type the reader does not read) is set aside and listed, and the facts it could have given
   are left unknown; the patient is still evaluated. Each task writes its own part files.
3. Join the parts in bucket order into temporary files, renamed into place, then `_SUCCESS`
   last: `results.ndjson` (one line per patient), `summary.csv` and `summary.parquet`,
   `bad_lines.ndjson` and `counts.json`. The same export gives byte-identical files whatever the
   scheduler and the number of workers. The work folder (the bucketed copy of the export and the
   parts) is removed at the end, and an earlier run's outputs at the start.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

# partitions of the export: at least 64, and about 32 MiB each, so that one task holds one bucket's
# patients in memory whatever the export's size (capped by the open-file limit)
BUCKETS, BUCKET_BYTES, MAX_BUCKETS = 64, 32 * 1024 * 1024, 900
LINE_MAX = 16 * 1024 * 1024  # a longer line is a bad line, skipped without being held
BAD_KEPT = 1000  # bad lines listed in full in bad_lines.ndjson; all are counted
SUMMARY = ["kind", "patient", "condition", "drug", "rank", "label_status", "severity", "rules", "severity_rules"]
OUTPUTS = ("results.ndjson", "summary.csv", "summary.parquet", "bad_lines.ndjson", "counts.json")
MARKER, WORK, TEMP = "_SUCCESS", ".screen-work", ".tmp-"
READ_PER_PATIENT = ("Patient", "Condition", "Observation", "MedicationStatement", "MedicationRequest", "AllergyIntolerance")
READ_TYPES = (*READ_PER_PATIENT, "Medication")  # what the FHIR reader reads
SET_ASIDE = ("Observation",)  # the read type whose facts can be left unknown when one is malformed
CLIENT_LOG = "log.ndjson"  # the bulk-data client's own log of the export, not resources
LOINC = "http://loinc.org"
RESOURCE_TYPE, MAX_TYPES = re.compile(r"[A-Z][A-Za-z]{1,63}"), 500  # FHIR R5 has ~160 resource types: counters stay small
EXPORT_REQUEST = re.compile(r"(.+?)/(?:Patient/|Group/[^/]+/)?\$export\b")  # the FHIR server's base, from the kick-off URL


class ScreenError(ValueError):
    """An export or output folder that cannot be screened; str() is one line."""


@dataclass(frozen=True)
class Job:
    """What every task needs: the pack, the date ages are computed on, where parts go."""

    rules: str | None
    include_draft: bool
    as_of: str
    parts: str
    files: tuple[str, ...]  # the export's file names, by the index bucket lines carry


@dataclass
class Partition:
    """What the partition pass found."""

    buckets: list[str] = field(default_factory=list)  # non-empty bucket files, in order
    patients: int = 0  # Patient resources: what the progress bar counts to
    resources: Counter[str] = field(default_factory=Counter)  # about a patient, by type
    other: Counter[str] = field(default_factory=Counter)  # about no patient, not read, by type
    not_read: dict[str, int] = field(default_factory=dict)  # file -> lines (the client's log)
    bad: int = 0
    listed: list[dict[str, Any]] = field(default_factory=list)  # the first BAD_KEPT bad lines

    def bad_line(self, item: dict[str, Any]) -> None:
        self.bad += 1
        if len(self.listed) < BAD_KEPT:
            self.listed.append(item)


def patient_of(resource: dict[str, Any], base: str = "") -> str | None:
    """The patient a resource is about: a Patient's id, else its subject / patient reference
    (`Patient/X`, `Patient/X/_history/N`, or `BASE/Patient/X` on this export's server -> X; a full
    URL on another server stays whole, apart from the local X)."""
    if resource.get("resourceType") == "Patient":
        return resource.get("id") if isinstance(resource.get("id"), str) and resource["id"] else None
    for name in ("subject", "patient"):
        reference = resource.get(name)
        target = reference.get("reference") if isinstance(reference, dict) else None
        if isinstance(target, str) and "Patient/" in target:
            head, _, tail = target.partition("Patient/")
            if head and head.rstrip("/") != base:
                return target
            return tail.split("/", 1)[0] or None
    return None


def export_files(export: Path) -> tuple[list[Path], str]:
    """The NDJSON files of an export folder, or those its `$export` manifest lists (by path or
    file URL; its error files too); and the server base the manifest's request names ("" if none)."""
    manifest = next((p for p in (export / "manifest.json", export / "$export.json") if p.is_file()), None)
    if manifest is None:
        files = sorted(export.glob("*.ndjson"))
        if not files:
            raise ScreenError(f"{export}: no *.ndjson files and no $export manifest: not a FHIR Bulk Data export")
        return files, ""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ScreenError(f"{manifest}: not a readable JSON manifest ({type(error).__name__})") from None
    lists = [data.get("output"), data.get("error", [])] if isinstance(data, dict) else [None]
    if not all(isinstance(items, list) and all(isinstance(i, dict) and isinstance(i.get("url"), str) for i in items) for items in lists):
        raise ScreenError(f"{manifest}: 'output' (and 'error') must be lists of objects with a 'url'")
    items = [item for items in lists for item in items or []]
    files = [export / Path(item["url"].removeprefix("file://")).name for item in items]
    missing = next((p for p in files if not p.is_file()), None)
    if missing is not None:
        raise ScreenError(f"{manifest}: lists {missing.name}, which is not in {export}")
    if not files:
        raise ScreenError(f"{manifest}: lists no NDJSON files")
    base = EXPORT_REQUEST.match(data["request"]) if isinstance(data.get("request"), str) else None
    return files, base.group(1) if base else ""


def lines(path: Path, line_max: int = LINE_MAX) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line without its end or a leading UTF-8 byte order mark) of a file; None for
    a line longer than line_max, skipped to its end without being held."""
    with open(path, "rb") as handle:
        number = 0
        while line := handle.readline(line_max + 1):
            number += 1
            if len(line) > line_max and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):
                    line = handle.readline(1 << 20)
                yield number, None
            else:
                yield number, line.removeprefix(b"\xef\xbb\xbf" if number == 1 else b"").rstrip(b"\r\n")


def partition(files: list[Path], buckets: Path, base: str = "", line_max: int = LINE_MAX) -> Partition:
    """Stream the export into bucket files: `file index, line number, patient (JSON), the line`."""
    buckets.mkdir(parents=True, exist_ok=True)
    count = min(MAX_BUCKETS, max(BUCKETS, sum(p.stat().st_size for p in files) // BUCKET_BYTES + 1))
    paths = [buckets / f"{i:03d}.ndjson" for i in range(count)]
    handles = [open(p, "wb") for p in paths]
    found, types = Partition(), set[str]()
    try:
        for index, path in enumerate(files):
            if path.name == CLIENT_LOG:
                found.not_read[path.name] = sum(1 for _ in lines(path, line_max))
                continue
            for number, line in lines(path, line_max):
                if line is None:
                    found.bad_line({"file": path.name, "line": number, "why": f"longer than {line_max:,} bytes"})
                    continue
                if not line.strip():
                    continue
                resource, why = _parse(line, types)
                if resource is None:
                    found.bad_line({"file": path.name, "line": number, "why": why})
                    continue
                kind = resource["resourceType"]
                patient = patient_of(resource, base)
                if patient is None and kind in READ_PER_PATIENT:
                    found.bad_line({"file": path.name, "line": number, "resource": _name(resource),
                                    "why": "about no patient (no Patient id, subject or patient reference)"})
                elif patient is None:
                    found.other[kind] += 1
                else:
                    found.resources[kind] += 1
                    found.patients += kind == "Patient"
                    handles[_bucket(patient, count)].write(b"%d\t%d\t%s\t%s\n" % (index, number, orjson.dumps(patient), line))
    finally:
        for handle in handles:
            handle.close()
    found.buckets = [str(p) for p in paths if p.stat().st_size]
    return found


def _parse(line: bytes, types: set[str]) -> tuple[dict[str, Any] | None, str]:
    """The resource on a line, or why it is a bad line (`types`: the resource types seen so far)."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return None, "not UTF-8" if "utf-8" in str(error).lower() else "not JSON"
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return None, "not a FHIR resource (no resourceType)"
    kind = resource["resourceType"]
    if kind not in types:
        if not RESOURCE_TYPE.fullmatch(kind) or len(types) >= MAX_TYPES:
            return None, "not a FHIR resource type"
        types.add(kind)
    return resource, ""


def _name(resource: dict[str, Any] | None) -> str:
    if resource is None:
        return "(unreadable)"
    return f"{str(resource.get('resourceType', '?'))[:40]}/{str(resource.get('id', '?'))[:64]}"


def _bucket(patient: str, count: int) -> int:
    return int.from_bytes(hashlib.sha256(patient.encode()).digest()[:4], "big") % count


def evaluate_bucket(bucket: str, job: Job) -> dict[str, int]:
    """One task: the bucket's patients evaluated in id order; its part files written. Counts back."""
    from ..decision.evaluate import evaluator

    ev = evaluator(job.rules, job.include_draft)  # built once per worker process, then cached
    patients: dict[str, list[tuple[str, int, bytes]]] = {}
    with open(bucket, "rb") as handle:
        for entry in handle:
            index, number, key, raw = entry.rstrip(b"\n").split(b"\t", 3)
            patients.setdefault(orjson.loads(key), []).append((job.files[int(index)], int(number), raw))
    name = Path(bucket).stem
    counts: Counter[str] = Counter()
    parts = Path(job.parts)
    with open(parts / f"{name}.results.ndjson", "w", encoding="utf-8") as results, \
            open(parts / f"{name}.summary.csv", "w", encoding="utf-8", newline="") as summary, \
            open(parts / f"{name}.bad.ndjson", "w", encoding="utf-8") as bad:
        rows = csv.writer(summary)
        for patient in sorted(patients):
            line, found, aside = screen_patient(ev, patient, patients[patient], date.fromisoformat(job.as_of))
            counts["input_errors" if "error" in line else "evaluated"] += 1
            counts["bad_resources"] += len(aside)
            results.write(json.dumps(line, sort_keys=True, separators=(",", ":"), default=str) + "\n")
            rows.writerows(found)
            bad.writelines(json.dumps(item, sort_keys=True) + "\n" for item in aside)
            counts["summary_rows"] += len(found)
    return dict(counts)


def screen_patient(ev: Any, patient: str, items: list[tuple[str, int, bytes]],
                   as_of: date) -> tuple[dict[str, Any], list[list[Any]], list[dict[str, Any]]]:
    """One patient's results line (one result per active skin condition), summary rows, and the
    resources set aside (each naming its file and line). A patient that cannot be read is a
    results line with the error and one `not_assessed` summary row."""
    from ..decision.evaluate import InputError
    from .chart import evaluate_read

    aside: list[dict[str, Any]] = []
    try:
        reader = _read(ev, _parsed(items, aside), as_of, aside)
        on_jak = sorted(set(reader.lists["medications"]) & set(ev.pack.drugs))
        results, rows = [], []
        for condition in reader.skin_conditions():
            result = evaluate_read(ev, reader, condition)
            results.append(result.model_dump(mode="json", exclude={"sources", "ruleset"}))
            rows += [_candidate(patient, condition, c) for c in result.candidates]
            rows += _findings(result, ev.plan.by_id, patient, condition, on_jak)
    except InputError as error:
        return {"patient": patient, "error": str(error)}, [["not_assessed", patient, *[""] * 7]], [_listed(i) for i in aside]
    line: dict[str, Any] = {"patient": patient, "on_jak_inhibitor": on_jak, "results": results,
            "unmapped": [u.model_dump() for u in reader.sorted_unmapped()]}
    return line, rows, [_listed(i) for i in aside]


def _parsed(items: list[tuple[str, int, bytes]], aside: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, int]]:
    """The patient's resources with their file and line, sorted by type and id. A line Python's
    parser refuses (nested deeper than it reads) is set aside as `fatal`: what it is cannot be told."""
    parsed = []
    for file, number, raw in items:
        try:
            parsed.append((json.loads(raw), file, number))
        except (ValueError, RecursionError):
            aside.append({"file": file, "line": number, "resource": None, "why": "not JSON to Python's parser", "fatal": True})
    return sorted(parsed, key=lambda item: (str(item[0].get("resourceType")), str(item[0].get("id")), item[1], item[2]))


def _read(ev: Any, resources: list[tuple[dict[str, Any], str, int]], as_of: date, aside: list[dict[str, Any]]) -> Any:
    """The patient read by the FHIR reader. If it refuses them, each resource is read alone and
    those it refuses are set aside (added to `aside`): an Observation or a type the reader does
    not read, and the patient is read without it, what it could have said left unknown and
    listed (never filled by an older result); any other read type is `fatal`, since what it would
    have said cannot be left unknown: the patient is not assessed."""
    from ..decision.evaluate import InputError
    from .chart import read_chart

    if aside:  # a line that could not be parsed
        raise InputError(f"{aside[0]['file']} line {aside[0]['line']}: {aside[0]['why']}")
    try:
        reader = read_chart(ev, _bundle(resources), as_of)
    except InputError:
        refused = []
        for resource, file, number in resources:
            try:
                read_chart(ev, resource, as_of)  # alone: the reader's own checks of this resource
            except InputError as error:
                kind = resource.get("resourceType")
                refused.append({"file": file, "line": number, "resource": resource, "why": str(error),
                                "fatal": kind in READ_TYPES and kind not in SET_ASIDE})
        aside += refused
        if not refused:
            raise  # the resources are readable alone, not together (e.g. two Patients)
        fatal = next((item for item in refused if item["fatal"]), None)
        if fatal is not None:
            raise InputError(f"{fatal['file']} line {fatal['line']}: {fatal['why']}") from None
        reader = read_chart(ev, _bundle([r for r in resources if all(r[0] is not i["resource"] for i in refused)]), as_of)
    for item in aside:
        _unknown(ev, reader, item)
    return reader


def _bundle(resources: list[tuple[dict[str, Any], str, int]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r, _, _ in resources]}


def _unknown(ev: Any, reader: Any, item: dict[str, Any]) -> None:
    """What a set-aside resource could have said, taken out of what the reader read, and listed."""
    resource = item["resource"]
    if resource.get("resourceType") != "Observation":
        return reader.skip(_name(resource), "", f"set aside, malformed: {item['why']}")
    facts = _facts(ev, resource, reader.drafts)
    for fact in facts:
        reader.profile.get("labs", {}).pop(fact, None)
        reader.profile.pop(fact, None)
    reader.skip(_name(resource), "", f"set aside, malformed: {item['why']}; left unknown: {', '.join(facts) or 'nothing the pack reads'}")


def _facts(ev: Any, resource: dict[str, Any], drafts: bool) -> list[str]:
    """The labs and Observation facts a malformed Observation could have given: those its LOINC
    codes map to, or all of them when its codes cannot be read."""
    observed = {**ev.pack.fhir.observations, **(ev.pack.fhir.draft.observations if drafts else {})}
    mappings = {**{name: set(lab.loinc) for name, lab in ev.pack.labs.items()},
                **{name: set(mapping.loinc) for name, mapping in observed.items()}}
    codes = _loinc(resource)
    return sorted(mappings if codes is None else (name for name, loinc in mappings.items() if loinc & codes))


def _loinc(resource: dict[str, Any]) -> set[str] | None:
    """The LOINC codes of an Observation's code and components; None when they cannot be read."""
    if not isinstance(resource.get("component") or [], list):
        return None
    concepts = [resource.get("code")] + [c.get("code") if isinstance(c, dict) else c for c in resource.get("component") or []]
    codes: set[str] = set()
    for concept in concepts:
        if concept is None:
            continue
        codings = concept.get("coding", []) if isinstance(concept, dict) else None
        if not isinstance(codings, list) or not all(isinstance(c, dict) for c in codings):
            return None
        codes |= {str(c.get("code")) for c in codings if c.get("system") == LOINC}
    return codes


def _listed(item: dict[str, Any]) -> dict[str, Any]:
    """A set-aside resource as a bad_lines.ndjson entry: its name, file, line and why."""
    return {"file": item["file"], "line": item["line"], "resource": _name(item["resource"]),
            "why": ("patient not assessed: " if item["fatal"] else "set aside: ") + item["why"]}


def _candidate(patient: str, condition: str, candidate: Any) -> list[Any]:
    """A candidate row: its most severe caution and the rules behind it, beside the proposing rules."""
    severity = candidate.cautions[0].severity if candidate.cautions else ""
    behind = sorted(c.rule for c in candidate.cautions if c.severity == severity)
    return ["candidate", patient, condition, candidate.drug, candidate.rank, candidate.label_status,
            severity, " ".join(candidate.rules), " ".join(behind)]


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
            named = " ".join(sorted(rule for level, rule in found if level == severity))
            if named:
                rows.append(["on_jak_finding", patient, condition, drug, "", "", severity, named, named])
    return rows


def screen(export: Path, out: Path, *, rules: str | None = None, include_draft: bool = False,
           as_of: date | None = None, scheduler: Any = None, workers: int | None = None,
           progress: bool = False, line_max: int = LINE_MAX) -> dict[str, Any]:
    """Screen a bulk export into `out`. scheduler: None (local processes, `workers` of them; 1
    runs in this process), a Dask distributed address, or a distributed Client / cluster.
    Raises ScreenError on an export or output folder that cannot be used, OSError on a failed write."""
    files, base = export_files(export)
    _clear(out)
    work = out / WORK
    started = time.perf_counter()
    try:
        found = partition(files, work / "buckets", base, line_max)
        (work / "parts").mkdir()
        job = Job(rules, include_draft, (as_of or date.today()).isoformat(), str(work / "parts"), tuple(p.name for p in files))
        counts = run_tasks(found.buckets, evaluate_bucket, job, scheduler=scheduler, workers=workers,
                           patients=found.patients if progress else None)
        total = sum((Counter(c) for c in counts), Counter())
        summary: dict[str, Any] = {
            "resources": dict(sorted(found.resources.items())), "not_about_a_patient": dict(sorted(found.other.items())),
            "files_not_read": found.not_read, "bad_lines": found.bad, "bad_resources": total["bad_resources"],
            "bad_listed": _join(out, work / "parts", found), "patients": total["evaluated"] + total["input_errors"],
            "evaluated": total["evaluated"], "input_errors": total["input_errors"], "summary_rows": total["summary_rows"]}
        (out / (TEMP + "counts.json")).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for name in OUTPUTS:
            os.replace(out / (TEMP + name), out / name)
        (out / MARKER).write_bytes(b"")  # last: the outputs are complete
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in OUTPUTS:
            (out / (TEMP + name)).unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return {**summary, "seconds": seconds, "patients_per_second": summary["patients"] / seconds if seconds else 0.0}


def _clear(out: Path) -> None:
    """An output folder ready for a run: created, or one holding only an earlier screen's files,
    whose completion marker goes first (a failed rerun never leaves them looking complete)."""
    if out.exists() and not out.is_dir():
        raise ScreenError(f"{out}: not a folder")
    out.mkdir(parents=True, exist_ok=True)
    ours = {*OUTPUTS, MARKER, WORK}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(TEMP))
    if foreign:
        raise ScreenError(f"{out}: holds files no screen wrote ({', '.join(foreign[:3])}): give a new or empty folder")
    (out / MARKER).unlink(missing_ok=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / WORK, ignore_errors=True)


def run_tasks(buckets: list[str], task: Any, job: Any, *, scheduler: Any = None, workers: int | None = None,
              patients: int | None = None) -> list[dict[str, int]]:
    """task(bucket, job) for every bucket, one Dask task each (screen, rules impact); their counts in
    bucket order. With `patients` (the total), a progress bar on stderr counts the patients done.
    scheduler: None (local processes, `workers` of them; 1 runs in this process), a Dask
    distributed address, or a distributed Client / cluster."""
    import dask
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    tasks = [dask.delayed(task)(bucket, job) for bucket in buckets]
    bar = Progress("screening", BarColumn(), MofNCompleteColumn(), "patients", TimeElapsedColumn(),
                   console=Console(stderr=True), disable=patients is None)
    counted = bar.add_task("screen", total=patients or 0)

    def done(counts: dict[str, int]) -> None:
        bar.advance(counted, counts.get("evaluated", 0) + counts.get("input_errors", 0))

    with bar:
        if scheduler is None:
            from dask.callbacks import Callback

            local = "synchronous" if workers == 1 else "processes"
            with Callback(posttask=lambda key, result, *_: done(result)):
                return list(dask.compute(*tasks, scheduler=local, num_workers=workers or os.cpu_count()))
        from distributed import Client, as_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            futures = client.compute(tasks)
            for future in as_completed(futures):
                done(future.result())
            return client.gather(futures)
        finally:
            if client is not scheduler:
                client.close()


def _join(out: Path, parts: Path, found: Partition) -> int:
    """The part files, in bucket order, into the temporary results, summary and bad lines
    (streamed); the number of bad lines and resources listed."""
    names = [Path(f).stem for f in found.buckets]
    with open(out / (TEMP + "results.ndjson"), "wb") as results:
        for name in names:
            with open(parts / f"{name}.results.ndjson", "rb") as part:
                shutil.copyfileobj(part, results)
    with open(out / (TEMP + "summary.csv"), "w", encoding="utf-8", newline="") as summary:
        csv.writer(summary).writerow(SUMMARY)
        for name in names:
            with open(parts / f"{name}.summary.csv", encoding="utf-8", newline="") as part:
                shutil.copyfileobj(part, summary)
    listed = len(found.listed)
    with open(out / (TEMP + "bad_lines.ndjson"), "w", encoding="utf-8") as bad:
        bad.writelines(json.dumps(item, sort_keys=True) + "\n" for item in found.listed)
        for name in names:
            with open(parts / f"{name}.bad.ndjson", encoding="utf-8") as part:
                for line in part:
                    if listed >= BAD_KEPT:
                        break
                    bad.write(line)
                    listed += 1
    _parquet(out / (TEMP + "summary.csv"), out / (TEMP + "summary.parquet"))
    return listed


def _parquet(source: Path, target: Path) -> None:
    """summary.csv as typed columns: rank an integer, rules lists of rule ids, empty cells null (streamed)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    read = {name: pa.int32() if name == "rank" else pa.string() for name in SUMMARY}
    schema = pa.schema([(name, pa.list_(pa.string()) if name.endswith("rules") else read[name]) for name in SUMMARY])
    options = pacsv.ConvertOptions(column_types=read, strings_can_be_null=True, null_values=[""])
    with pq.ParquetWriter(target, schema) as writer, pacsv.open_csv(source, convert_options=options) as batches:
        for batch in batches:
            columns = [pc.split_pattern(batch.column(name), " ") if name.endswith("rules") else batch.column(name) for name in SUMMARY]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
