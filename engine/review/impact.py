"""Rule-change impact: whose decision changes between two packs, and how (`jakcds rules impact`).

A decision is a pure function of the patient and the pack, so the impact of a pack change is exact:
every patient of a source is evaluated with both packs and the two results are compared, part by
part. Each change names the rules that caused it: the rule it is about (a caution, an exclusion
reason, a proposal) and the rules of that drug whose firing differs between the two traces.

Sources: golden cases (folders with expected.yaml), a folder of profiles or charts (*.json), or a
FHIR Bulk Data export (*.ndjson: partitioned and evaluated on Dask as `jakcds screen` does, one
bucket in memory at a time). Patients whose results are identical are counted, not listed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ..decision.evaluate import Evaluator, InputError
from ..knowledge.pack import PackError, load_pack

CHANGE_FIELDS = ["patient", "condition", "kind", "drug", "item", "before", "after", "rules"]


@dataclass(frozen=True)
class Change:
    patient: str
    condition: str
    kind: str  # candidate_added, rank_changed, caution_removed, reason_added, prompt_added, ...
    drug: str  # "" when the change is not about one drug (a prompt, a note)
    item: str  # the rule, fact or drug the change is about
    before: str
    after: str
    rules: str  # the rule ids that caused it, space-separated


def pack_folder(spec: str, scratch: Path) -> Path:
    """A rule-pack folder as given, else this repository's rules/ at git revision `spec`."""
    path = Path(spec)
    if (path / "pack.yaml").is_file():
        return path
    done = subprocess.run(["git", "archive", "--format=tar", spec, "rules"], capture_output=True)
    if done.returncode != 0:
        raise PackError(f"{spec}: neither a rule-pack folder nor a git revision with rules/ ({done.stderr.decode(errors='replace').strip()[:200]})")
    target = scratch / hashlib.sha256(spec.encode()).hexdigest()[:16]
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")
    return target / "rules"


def pack_evaluator(folder: Path, include_draft: bool = False) -> Evaluator:
    """The pack as it stands: a head under review is rarely approved yet, so its manifest is not enforced."""
    return Evaluator(load_pack(folder, verify=False), include_draft)


# ---- comparing two results (their JSON documents) ----

def _by_drug(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["drug"]: item for item in items}


def _fired(result: dict[str, Any]) -> dict[str, bool]:
    return {t["rule"]: t["fired"] for t in result["trace"]}


def _differs(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Rules whose firing differs between the two traces, or that only one pack runs."""
    old, new = _fired(before), _fired(after)
    return {rule for rule in old.keys() | new.keys() if old.get(rule) != new.get(rule)}


def compare(before: dict[str, Any], after: dict[str, Any], drugs_of: dict[str, set[str]]) -> list[tuple[str, str, str, str, str, set[str]]]:
    """(kind, drug, item, before, after, rules) for every difference that matters to a clinician."""
    moved = _differs(before, after)

    def of_drug(drug: str) -> set[str]:
        return {rule for rule in moved if drug in drugs_of.get(rule, set())}

    changes: list[tuple[str, str, str, str, str, set[str]]] = []
    old, new = _by_drug(before["candidates"]), _by_drug(after["candidates"])
    old_x, new_x = _by_drug(before["excluded"]), _by_drug(after["excluded"])
    for drug in sorted(old.keys() | new.keys()):
        a, b = old.get(drug), new.get(drug)
        if a is None or b is None:
            kind = "candidate_added" if a is None else "candidate_removed"
            side = b or a
            reasons = {r["rule"] for r in (old_x if a is None else new_x).get(drug, {}).get("reasons", [])}
            changes.append((kind, drug, drug, _rank(a), _rank(b), set(side["rules"]) | reasons | of_drug(drug)))
            continue
        if a["rank"] != b["rank"]:
            changes.append(("rank_changed", drug, drug, str(a["rank"]), str(b["rank"]), of_drug(drug)))
        if a["conditional"] != b["conditional"]:
            changes.append(("conditional_changed", drug, drug, _conditional(a), _conditional(b), {i["rule"] for i in a["confirm"] + b["confirm"]} | of_drug(drug)))
        changes += _keyed("caution", drug, a["cautions"], b["cautions"], lambda c: c["rule"], lambda c: f"{c['severity']}: {c['message']}")
    # a drug that moves only because others came, went or became (un)conditional: their rules moved it
    movers = set().union(*(c[5] for c in changes if c[0] in ("candidate_added", "candidate_removed", "conditional_changed")))
    changes = [(*c[:5], c[5] or movers) if c[0] == "rank_changed" else c for c in changes]
    for drug in sorted(old_x.keys() & new_x.keys()):
        changes += _keyed("reason", drug, old_x[drug]["reasons"], new_x[drug]["reasons"], lambda r: r["rule"], _reason_words)
    changes += _keyed("prompt", "", before["before_starting"], after["before_starting"], lambda p: p["fact"],
                      lambda p: f"{p['severity']} for {', '.join(p['drugs'])}")
    changes += _keyed("note", "", before["notes"], after["notes"], lambda n: n["rule"], lambda n: n["message"])
    return changes


def _conditional(candidate: dict[str, Any]) -> str:
    return "conditional" if candidate["conditional"] else "unconditional"


def _rank(candidate: dict[str, Any] | None) -> str:
    return "" if candidate is None else f"#{candidate['rank']}{' (conditional)' if candidate['conditional'] else ''}"


def _reason_words(reason: dict[str, Any]) -> str:
    unmet = "; ".join(f"not met: {u['needs']}" for u in reason.get("unmet", []))
    return f"{reason['message']}{' — ' + unmet if unmet else ''}"


def _keyed(what: str, drug: str, before: list[dict[str, Any]], after: list[dict[str, Any]], key: Any, words: Any) -> list[tuple[str, str, str, str, str, set[str]]]:
    """Items of one list (cautions, reasons, prompts, notes) added, removed or changed, by key."""
    old, new = {key(i): i for i in before}, {key(i): i for i in after}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            changes.append((f"{what}_added", drug, name, "", words(b), _rules(b)))
        elif b is None:
            changes.append((f"{what}_removed", drug, name, words(a), "", _rules(a)))
        elif words(a) != words(b):
            kind = f"{what}_severity_changed" if a.get("severity") != b.get("severity") else f"{what}_changed"
            changes.append((kind, drug, name, words(a), words(b), _rules(a) | _rules(b)))
    return changes


def _rules(item: dict[str, Any]) -> set[str]:
    """The rule an item is (a caution, reason or note), or the rules that ask it (a prompt)."""
    return {item["rule"]} if "rule" in item else {r["rule"] for r in item.get("rules", [])}


# ---- running a source through both packs ----

@dataclass(frozen=True)
class Packs:
    base: Evaluator
    head: Evaluator

    def drugs_of(self) -> dict[str, set[str]]:
        return {rule.id: set(rule.drugs) for pack in (self.base.pack, self.head.pack) for rule in pack.rules}


def results(ev: Evaluator, data: dict[str, Any], *, condition: str | None = None, as_of: date | None = None) -> dict[str, dict[str, Any]]:
    """condition -> the result's JSON, for a profile or a chart (every active skin condition it holds)."""
    from ..ehr.chart import evaluate_read, read_chart
    from ..ehr.fhir import is_fhir

    if not is_fhir(data):
        result = ev.evaluate(data)
        return {result.patient["condition"]: result.model_dump(mode="json")}
    reader = read_chart(ev, data, as_of)
    conditions = [condition] if condition else reader.skin_conditions()
    return {c: evaluate_read(ev, reader, c).model_dump(mode="json") for c in conditions}


def patient_changes(packs: Packs, name: str, data: dict[str, Any], drugs_of: dict[str, set[str]], **options: Any) -> list[Change]:
    """One patient's changes; an input error on one side only is itself a change."""
    sides = []
    for ev in (packs.base, packs.head):
        try:
            sides.append(results(ev, data, **options))
        except InputError as error:
            sides.append({"": {"error": str(error)}})
    before, after = sides
    changes = []
    for condition in sorted(before.keys() | after.keys()):
        a, b = before.get(condition), after.get(condition)
        if a == b:
            continue
        if a is None or b is None or "error" in a or "error" in b:
            changes.append(Change(name, condition, "evaluation_changed", "", condition, _outcome(a), _outcome(b), ""))
            continue
        changes += [Change(name, condition, kind, drug, item, old, new, " ".join(sorted(rules)))
                    for kind, drug, item, old, new, rules in compare(a, b, drugs_of)]
    return changes


def _outcome(result: dict[str, Any] | None) -> str:
    return "" if result is None else result.get("error", "evaluated")


def source_items(source: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, document, options) of golden cases or a folder of *.json profiles and charts."""
    import yaml

    cases = sorted(p.parent for p in source.glob("*/expected.yaml"))
    if cases:
        for case in cases:
            expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8")) or {}
            document = case / ("bundle.json" if (case / "bundle.json").is_file() else "patient.json")
            options = {"condition": expected.get("condition"), "as_of": date.fromisoformat(str(expected["as_of"]))} if "as_of" in expected else {}
            yield case.name, json.loads(document.read_text(encoding="utf-8")), options
        return
    for path in sorted(source.glob("*.json")):
        yield path.stem, json.loads(path.read_text(encoding="utf-8")), {}


def impact(base: str, head: str, source: Path, out: Path, *, scratch: Path, include_draft: bool = False,
           as_of: date | None = None, workers: int | None = None) -> dict[str, Any]:
    """Evaluate `source` with both packs; write impact.ndjson, impact.csv, impact.html and return the summary."""
    folders = pack_folder(base, scratch), pack_folder(head, scratch)
    packs = Packs(pack_evaluator(folders[0], include_draft), pack_evaluator(folders[1], include_draft))
    drugs_of = packs.drugs_of()
    if any(source.glob("*.ndjson")) or (source / "manifest.json").is_file():
        changed, total = _bulk(folders, source, out, include_draft, as_of or date.today(), workers)
    else:
        changed, total = {}, 0
        for name, document, options in source_items(source):
            total += 1
            if found := patient_changes(packs, name, document, drugs_of, **options):
                changed[name] = found
    summary = _summary(packs, source, changed, total)
    _write(out, changed, summary)
    return summary


def _source_sha256(source: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _summary(packs: Packs, source: Path, changed: dict[str, list[Change]], total: int) -> dict[str, Any]:
    changes = [c for found in changed.values() for c in found]
    return {
        "base": {"name": packs.base.info.name, "version": packs.base.info.version, "sha256": packs.base.info.sha256},
        "head": {"name": packs.head.info.name, "version": packs.head.info.version, "sha256": packs.head.info.sha256},
        "source": str(source), "source_sha256": _source_sha256(source),
        "patients": total, "changed": len(changed), "unchanged": total - len(changed),
        "changes_by_kind": dict(sorted(Counter(c.kind for c in changes).items())),
        "changes_by_rule": dict(sorted(Counter(r for c in changes for r in c.rules.split()).items())),
    }


def _write(out: Path, changed: dict[str, list[Change]], summary: dict[str, Any]) -> None:
    from ..views.html import impact_page

    out.mkdir(parents=True, exist_ok=True)
    with open(out / "impact.ndjson", "w", encoding="utf-8") as lines:
        for name in sorted(changed):
            lines.write(json.dumps({"patient": name, "changes": [asdict(c) for c in changed[name]]}, sort_keys=True) + "\n")
    with open(out / "impact.csv", "w", encoding="utf-8", newline="") as table:
        rows = csv.writer(table)
        rows.writerow(CHANGE_FIELDS)
        rows.writerows([getattr(c, f) for f in CHANGE_FIELDS] for name in sorted(changed) for c in changed[name])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "impact.html").write_text(impact_page(summary, changed), encoding="utf-8")


# ---- a FHIR Bulk Data export: the screening partition, one Dask task per bucket ----

@dataclass(frozen=True)
class BulkJob:
    base: str
    head: str
    include_draft: bool
    as_of: str
    parts: str


_packs: dict[tuple[str, str, bool], Packs] = {}  # per worker process: each pack compiled once


def impact_bucket(bucket: str, job: BulkJob) -> dict[str, int]:
    """One task: the bucket's patients (each one chart), both packs; changes to a part file. Counts back."""
    key = (job.base, job.head, job.include_draft)
    if key not in _packs:
        _packs[key] = Packs(pack_evaluator(Path(job.base), job.include_draft), pack_evaluator(Path(job.head), job.include_draft))
    packs = _packs[key]
    drugs_of = packs.drugs_of()
    patients: dict[str, list[dict[str, Any]]] = {}
    with open(bucket, "rb") as lines:
        for line in lines:  # the screening partition's lines: file index, line number, patient, resource
            _, _, patient, resource = line.rstrip(b"\n").split(b"\t", 3)
            patients.setdefault(json.loads(patient), []).append(json.loads(resource))
    with open(Path(job.parts) / f"{Path(bucket).stem}.impact.ndjson", "w", encoding="utf-8") as part:
        for patient in sorted(patients):
            entries = sorted(patients[patient], key=lambda r: (str(r.get("resourceType")), str(r.get("id"))))
            chart = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in entries]}
            found = patient_changes(packs, patient, chart, drugs_of, as_of=date.fromisoformat(job.as_of))
            if found:
                part.write(json.dumps([patient, [asdict(c) for c in found]]) + "\n")
    return {"evaluated": len(patients)}


def _bulk(folders: tuple[Path, Path], export: Path, out: Path, include_draft: bool, as_of: date, workers: int | None) -> tuple[dict[str, list[Change]], int]:
    from ..ehr.screen import export_files, partition, run_tasks

    buckets, parts = out / "buckets", out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    files, base = export_files(export)
    found = partition(files, buckets, base)
    job = BulkJob(str(folders[0].resolve()), str(folders[1].resolve()), include_draft, as_of.isoformat(), str(parts))
    total = sum(counts["evaluated"] for counts in run_tasks(found.buckets, impact_bucket, job, workers=workers))
    changed: dict[str, list[Change]] = {}
    for name in found.buckets:
        with open(parts / f"{Path(name).stem}.impact.ndjson", encoding="utf-8") as part:
            for line in part:
                patient, found = json.loads(line)
                changed[patient] = [Change(**c) for c in found]
    shutil.rmtree(buckets)  # no copy of the export is left behind
    shutil.rmtree(parts)
    return changed, total
