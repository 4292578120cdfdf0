"""The `jakcds` command line (typer).

Exit codes: 0 ok; 1 a check failed (test, lint); 2 bad input (one line on stderr, nothing on
stdout); 3 a rule pack that cannot be loaded or is refused.
"""

# No `from __future__ import annotations` here: typer reads every command's signature at each
# start, and string annotations would make it evaluate each one (~10 ms of a start).
import json
import os
import sys
from datetime import datetime
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# the CLI's own process: pydantic's plugin discovery (importlib.metadata over every installed
# package, ~15 ms of each start) finds nothing jakcds uses
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from jakcds import EngineError, InputError, PackError, evaluator  # noqa: E402
from jakcds.ehr.chart import evaluate_read, read_chart  # noqa: E402
from jakcds.ehr.fhir import is_fhir  # noqa: E402

app = typer.Typer(no_args_is_help=True, help="JAK inhibitor clinical decision support.")
rules_app = typer.Typer(no_args_is_help=True, help="Review the rule pack: list, show, lint, manifest.")
app.add_typer(rules_app, name="rules")

class Format(str, Enum):
    text = "text"
    json = "json"


class Citations(str, Enum):
    numbered = "numbered"
    inline = "inline"


PatientArgument = Annotated[str, typer.Argument(help="patient profile JSON, or a FHIR R4 Bundle/resource; - for stdin")]
DraftOption = Annotated[
    bool, typer.Option("--include-draft", help="also run rules with status: draft and, for FHIR input, the draft (VERIFIED-S) code mappings")
]
RulesOption = Annotated[Optional[Path], typer.Option("--rules", help="a rule pack directory instead of the shipped one")]
FormatOption = Annotated[Optional[Format], typer.Option("--format", "-f", help="default: text on a terminal, else json")]
ConditionOption = Annotated[
    Optional[str], typer.Option("--condition", help="FHIR input: the condition to treat, if not the one active skin condition")
]
AsOfOption = Annotated[
    Optional[datetime], typer.Option("--as-of", formats=["%Y-%m-%d"], help="FHIR input: compute ages on this date (default today)")
]


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"jakcds: error: {message[:500]}", err=True)
    raise typer.Exit(code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicate = next((key for key in keys if keys.count(key) > 1), None)
    if duplicate is not None:
        raise ValueError(f"duplicate key {duplicate!r}")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def read_patient(source: str) -> Any:
    """The JSON document at `source` (a path, or - for stdin); strict: no duplicate keys, no NaN."""
    name = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"{name}: cannot read: {error}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except RecursionError:
        fail(f"{name}: invalid JSON: nested too deeply")
    except ValueError as error:
        fail(f"{name}: invalid JSON: {str(error)[:200]}")


def wants_json(format: Format | None) -> bool:
    return (format or (Format.text if sys.stdout.isatty() else Format.json)) is Format.json


def print_result(document: str) -> None:
    """A result's JSON and a newline on stdout."""
    sys.stdout.write(document + "\n")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")


def load(rules: Path | None, include_draft: bool = False) -> Any:
    try:
        return evaluator(rules, include_draft)
    except PackError as error:
        fail(f"rule pack: {error}", code=3)


def reads_fhir(data: Any, condition: str | None, as_of: datetime | None) -> bool:
    """FHIR input, or options that apply to FHIR input only (then refused if it is not)."""
    return bool(condition or as_of or is_fhir(data))


def decide(ev: Any, data: Any, condition: str | None, as_of: datetime | None) -> tuple[Any, dict[str, Any]]:
    """The result for a JSON profile or FHIR input (with what was not used), and the profile it
    was made from (what `explain` reads)."""
    if reads_fhir(data, condition, as_of):
        reader = fhir_reader(ev, data, as_of)
        return evaluate_read(ev, reader, condition), reader.profile_for(condition)
    return ev.evaluate(data), data


@contextmanager
def input_errors(patient: str, *also: type[Exception]) -> Iterator[None]:
    """An InputError (or one of `also`) about the patient document: one line on stderr, exit 2;
    durable-rules failing on the pack's rules: "rule pack: refused", exit 3."""
    try:
        yield
    except (InputError, *also) as error:
        fail(f"{'stdin' if patient == '-' else patient}: {error}")
    except EngineError as error:  # durable-rules failed on the pack's rules (e.g. too many co-firing tests)
        fail(f"rule pack: refused, the engine failed on it: {error}", code=3)


def fhir_reader(ev: Any, data: Any, as_of: datetime | None) -> Any:
    """A Reader of FHIR input (jakcds.ehr.fhir), for the FHIR options too."""
    if not is_fhir(data):
        fail("--condition and --as-of apply to FHIR input only")
    return read_chart(ev, data, as_of.date() if as_of else None)


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("jakcds")
        except PackageNotFoundError:  # a checkout run without an install
            package = "(not installed)"
        from jakcds import load_pack

        try:
            pack = load_pack()
        except PackError as error:
            fail(f"rule pack: {error}", code=3)
        print(f"jakcds {package}; rule pack {pack.meta.name} {pack.meta.version} (sha256 {pack.sha256})")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="the package and rule pack versions")] = False,
) -> None:
    """JAK inhibitor clinical decision support on declarative, cited rules."""


@app.command()
def evaluate(
    patient: PatientArgument,
    format: FormatOption = None,
    rules: RulesOption = None,
    include_draft: DraftOption = False,
    condition: ConditionOption = None,
    as_of: AsOfOption = None,
    citations: Annotated[
        Citations, typer.Option("--citations", help="text: numbered references at the end, or inline under each statement")
    ] = Citations.numbered,
    details: Annotated[
        bool, typer.Option("--details", help="text: the full view (every caution, why not, notes, references), not the first screen")
    ] = False,
) -> None:
    """Rank the JAK inhibitors that could be considered for a patient, with cautions and citations.

    Text shows a first screen (80×24 in the common case) unless --details; JSON is the whole result.
    A document with a resourceType is read as FHIR R4; the result lists what it could not map."""
    data = read_patient(patient)
    ev = load(rules, include_draft)
    with input_errors(patient):
        if wants_json(format) and not reads_fhir(data, condition, as_of):
            return print_result(ev.evaluate_json(data, indent=True).decode())  # plain data: no Result built
        result, _ = decide(ev, data, condition, as_of)
    if wants_json(format):
        print_result(result.model_dump_json(indent=2))
    else:
        from rich.console import Console

        from jakcds.views.text import first_screen, render

        if details:
            render(result, Console(), citations.value)
        else:
            first_screen(result, Console())


@app.command()
def explain(
    patient: PatientArgument,
    drug: Annotated[str, typer.Option("--drug", "-d", help="the drug to explain, e.g. ruxolitinib")],
    format: FormatOption = None,
    rules: RulesOption = None,
    condition: ConditionOption = None,
    as_of: AsOfOption = None,
) -> None:
    """Why a drug is a candidate or not: each rule that concerns it, and the values it compared."""
    from jakcds.review.explain import explain as explain_drug

    data = read_patient(patient)
    ev = load(rules)
    with input_errors(patient, ValueError):
        if condition or as_of or is_fhir(data):
            data = fhir_reader(ev, data, as_of).profile_for(condition)
        report = explain_drug(ev, data, drug)
    if wants_json(format):
        return print_json(report)
    head = f"candidate #{report['rank']}" if report["status"] == "candidate" else "not suggested"
    typer.echo(f"{drug}: {head}")
    for reason in report["reasons"]:
        typer.echo(f"  why not: {reason['rule']}: {reason['message']}")
    for rule in report["rules"]:
        typer.echo(f"  {rule['rule']} ({rule['kind']}) {'FIRED' if rule['fired'] else 'did not fire'}: {rule['title']}")
        for test in rule["tests"]:
            value = "unknown" if test["patient"] in (None, []) else test["patient"]
            typer.echo(f"      {'yes' if test['holds'] else 'no '}  {test['test']}  [patient: {value}]")


@app.command()
def report(
    patient: PatientArgument,
    out: Annotated[Path, typer.Option("-o", "--out", help="the HTML file to write")],
    rules: RulesOption = None,
    condition: ConditionOption = None,
    as_of: AsOfOption = None,
    include_draft: DraftOption = False,
) -> None:
    """One decision as a self-contained web page: patient, ranking, findings, before starting, why-nots, trace."""
    from jakcds.review.explain import explain_each
    from jakcds.views.html import decision_page

    data = read_patient(patient)
    ev = load(rules, include_draft)
    with input_errors(patient, ValueError):
        result, profile = decide(ev, data, condition, as_of)
        explained = explain_each(ev, profile)
    out.write_text(decision_page(ev, result, explained), encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("test")
def run_tests(
    path: Annotated[Path, typer.Argument(help="the golden cases directory")] = Path("cases"),
    rules: RulesOption = None,
    include_draft: Annotated[bool, typer.Option("--include-draft", help="also run draft rules and their examples")] = False,
    update: Annotated[
        bool, typer.Option("--update", help="write expected.yaml.new beside each case whose result changed, for review")
    ] = False,
    accept: Annotated[
        Optional[list[str]], typer.Option("--accept", help="move a case's reviewed expected.yaml.new in (a case name, or all)")
    ] = None,
) -> None:
    """Run the golden cases and every rule's examples: PASS / FAIL / TODO, one line each. Fails while
    a case has a pending expected.yaml.new (its diff is shown): review it, then --accept it."""
    from jakcds.review import cases

    if accept:
        waiting = {d.name: d for d in cases.pending_cases(path)}
        names = sorted(waiting) if accept == ["all"] else accept
        for name in names:
            if name not in waiting:
                fail(f"case {name} has no pending expected.yaml.new in {path}")
            cases.accept(waiting[name])
            typer.echo(f"accepted {name}")
        return
    if update:
        ev = load(rules, include_draft)
        changed = [d.name for d in cases.case_dirs(path) if cases.update_case(d, ev)]
        typer.echo("\n".join(f"pending {name}" for name in changed))
        typer.echo(f"jakcds test --update: {len(changed)} cases changed; review each diff with jakcds test, then --accept NAME")
        return
    outcomes = cases.run_all(path, load(rules, include_draft))
    for outcome in outcomes:
        typer.echo(f"{outcome.status} {outcome.name}" + (f"  ({outcome.detail})" if outcome.status == "TODO" else ""))
        if outcome.status == "FAIL":
            typer.echo("\n".join(f"    {line}" for line in outcome.detail.splitlines()))
    pending = cases.pending_cases(path)
    for directory in pending:
        typer.echo(f"PENDING case {directory.name}\n" + "\n".join(f"    {line}" for line in cases.pending_diff(directory).splitlines()))
    counts = {status: sum(o.status == status for o in outcomes) for status in ("PASS", "FAIL", "TODO")}
    typer.echo(f"jakcds test: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['TODO']} todo, {len(pending)} pending")
    if counts["FAIL"] or pending or not outcomes:
        raise typer.Exit(1)


@app.command()
def coverage(
    path: Annotated[Path, typer.Argument(help="the golden cases directory")] = Path("cases"),
    format: FormatOption = None,
    rules: RulesOption = None,
) -> None:
    """Which active rules fired in the golden cases and rule examples, and which never did."""
    from jakcds.review.cases import coverage as rule_coverage
    from jakcds.review.cases import run_all

    ev = load(rules)
    counts = rule_coverage(run_all(path, ev), ev)
    never = [rule for rule, n in counts.items() if n == 0]
    covered = len(counts) - len(never)
    summary = {"covered": covered, "total": len(counts), "percent": round(100 * covered / max(len(counts), 1), 1)}
    if wants_json(format):
        return print_json({"rules": counts, "never_fired": never, **summary})
    from rich.console import Console
    from rich.table import Table

    table = Table("rule", "kind", "fired in", title="Rule coverage over golden cases and rule examples", title_justify="left")
    for rule in ev.rules:
        table.add_row(rule.id, rule.kind, str(counts[rule.id]) if counts[rule.id] else "[red]never[/]")
    Console().print(table)
    typer.echo(f"{covered} of {len(counts)} active rules fired at least once ({summary['percent']}%)")
    for rule in never:
        typer.echo(f"never fired: {rule}")


LOOPBACK = ("127.0.0.1", "::1", "localhost")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8000,
    issuers: Annotated[
        Optional[Path], typer.Option("--issuers", help="allow-list of JWT issuers and their JWKS (YAML/JSON)")
    ] = None,
    base_url: Annotated[
        Optional[str], typer.Option("--base-url", help="the URL EHRs call (JWT aud); default http://HOST:PORT")
    ] = None,
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="no authentication at all; allowed on a loopback host only")
    ] = False,
    store: Annotated[
        Path, typer.Option("--store", help="SQLite file for the replay cache, issued cards and feedback (shared by workers, kept across restarts)")
    ] = Path("jakcds-service.sqlite3"),
    workers: Annotated[int, typer.Option("--workers", min=1, help="server processes (uvicorn workers), sharing the store")] = 1,
    processes: Annotated[int, typer.Option("--processes", min=1, help="per server process: worker processes reading charts and running the rules")] = 1,
    cors_origin: Annotated[
        Optional[list[str]], typer.Option("--cors-origin", help="a browser-based CDS client's origin allowed to call (repeatable)")
    ] = None,
    rules: RulesOption = None,
    include_draft: DraftOption = False,
) -> None:
    """Run the HL7 CDS Hooks 2.0 service (discovery, patient-view, order-select, order-sign, feedback)."""
    import uvicorn

    from jakcds.ehr.auth import load_issuers
    from jakcds.ehr.limits import describe, uvicorn_options
    from jakcds.ehr.service import ENVIRONMENT

    if insecure_dev == bool(issuers):
        fail("give --issuers (JWT allow-list), or --insecure-dev for a local trial without authentication")
    if insecure_dev and host not in LOOPBACK:
        fail(f"--insecure-dev is refused on {host}: it is allowed on a loopback host only")
    try:
        if issuers:
            load_issuers(issuers)  # refused here, before any worker starts
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"--issuers: {error}")
    if insecure_dev:
        typer.secho("WARNING: --insecure-dev: AUTHENTICATION IS OFF. Any local process can call this service. "
                    "Never use it with real patient data.", fg="red", bold=True, err=True)
    ev = load(rules, include_draft)  # a refused pack exits 3 here, with one line
    os.environ[ENVIRONMENT] = json.dumps({
        "rules": None if ev.info.path == "(built-in)" else ev.info.path, "include_draft": include_draft,
        "issuers": str(issuers.resolve()) if issuers else None, "base_url": base_url or f"http://{host}:{port}",
        "store": str(store.resolve()), "cors": cors_origin or [], "processes": processes,
    })
    typer.echo(describe(), err=True)
    uvicorn.run("jakcds.ehr.service:from_environment", factory=True, workers=workers, host=host, port=port, log_level="warning",
                **uvicorn_options())


@app.command()
def screen(
    export: Annotated[Path, typer.Argument(help="a FHIR Bulk Data export: a folder of *.ndjson files (or with its $export manifest)")],
    out: Annotated[Path, typer.Option("-o", "--out", help="a new or earlier screen's folder: results.ndjson, summary.csv/.parquet, bad_lines.ndjson, counts.json, then _SUCCESS when complete")],
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="a Dask distributed scheduler address (default: this machine's cores)")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="local worker processes (default: all cores; 1: in this process)")] = None,
    as_of: AsOfOption = None,
    rules: RulesOption = None,
    include_draft: DraftOption = False,
) -> None:
    """Screen a whole population: every patient's candidates, and every patient on a JAK inhibitor with a finding."""
    from jakcds.ehr.screen import ScreenError
    from jakcds.ehr.screen import screen as run_screen

    if not export.is_dir():
        fail(f"{export}: not a folder")
    ev = load(rules, include_draft)  # a refused pack exits 3 before any work
    try:
        figures = run_screen(export, out, rules=None if ev.info.path == "(built-in)" else ev.info.path, include_draft=include_draft,
                             as_of=as_of.date() if as_of else None, scheduler=scheduler, workers=workers, progress=sys.stderr.isatty())
    except ScreenError as error:
        fail(str(error))
    except OSError as error:  # a full disk, a folder that cannot be written
        fail(f"{out}: {error.strerror or error}{f' ({error.filename})' if error.filename else ''}")
    typer.echo(f"{figures['patients']:,} patients ({figures['evaluated']:,} evaluated, {figures['input_errors']} not assessed), "
               f"{sum(figures['resources'].values()):,} resources, {figures['bad_lines']} bad lines, "
               f"{figures['bad_resources']} resources set aside; {figures['summary_rows']:,} summary rows; "
               f"{figures['patients_per_second']:,.1f} patients/s -> {out}")


@app.command()
def feedback(
    store: Annotated[Path, typer.Option("--store", help="the service's SQLite store")] = Path("jakcds-service.sqlite3"),
) -> None:
    """Print the card feedback the service recorded, one JSON line per record."""
    from jakcds.ehr.store import Store

    if not store.is_file():
        fail(f"{store}: no such store")
    for record in Store(store).feedback():
        typer.echo(json.dumps(record, sort_keys=True))


@rules_app.command("list")
def rules_list(
    drug: Annotated[Optional[str], typer.Option(help="only rules concerning this drug")] = None,
    status: Annotated[Optional[str], typer.Option(help="active, draft or deprecated")] = None,
    source: Annotated[Optional[str], typer.Option(help="only rules citing this source id")] = None,
    format: FormatOption = None,
    rules: RulesOption = None,
) -> None:
    """One row per rule: id, title, status, kind, drugs, severity, sources."""
    pack = load(rules).pack
    rows = [
        {"id": r.id, "title": r.title, "status": r.status, "kind": r.kind, "drugs": r.drugs, "severity": r.severity,
         "sources": sorted({c.source for c in r.citations}), "file": pack.rule_files[r.id]}
        for r in pack.rules
        if (drug is None or drug in r.drugs) and (status is None or r.status == status)
        and (source is None or source in {c.source for c in r.citations})
    ]
    if wants_json(format):
        return print_json(rows)
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "title", "status", "kind", "drugs", "severity", "sources")
    for row in rows:
        table.add_row(row["id"], row["title"], row["status"], row["kind"], ", ".join(row["drugs"]) or "-", row["severity"], ", ".join(row["sources"]))
    Console().print(table)


@rules_app.command("show")
def rules_show(
    rule_id: Annotated[str, typer.Argument(help="a rule id, e.g. SEED-RUX-001")],
    format: FormatOption = None,
    rules: RulesOption = None,
) -> None:
    """The whole rule for a reviewer: conditions in plain words, output, citations, examples, dates."""
    from jakcds.knowledge.describe import rule_document

    pack = load(rules).pack
    rule = next((r for r in pack.rules if r.id == rule_id.upper()), None)
    if rule is None:
        fail(f"no rule {rule_id!r} in the pack (see `jakcds rules list`)")
    doc = rule_document(rule, pack)
    if wants_json(format):
        return print_json(doc)
    typer.echo(f"{rule.id}  {rule.title}\n  file: {doc['file']}   status: {rule.status}   kind: {rule.kind}   drugs: {', '.join(rule.drugs) or '-'}")
    typer.echo("  when:\n" + "\n".join(f"    {line}" for line in doc["conditions_in_words"]))
    extra = f", label status {rule.label_status}" if rule.label_status else f", scope {rule.scope}" if rule.kind == "exclude" else ""
    typer.echo(f"  then: {rule.kind} ({rule.severity}{extra}): {rule.message}\n  evidence: {rule.evidence}")
    for c in rule.citations:
        source = pack.sources[c.source]
        typer.echo(f"  cites [{c.source}] {source.title} — {c.locator}:\n      “{c.quote}”")
    for example in rule.examples:
        typer.echo(f"  example ({'fires' if example.fires else 'must not fire'}): {json.dumps(example.patient)}" + (f"  # {example.note}" if example.note else ""))
    typer.echo(f"  author: {rule.author or '-'}   reviewed by: {rule.reviewed_by or '-'}   created: {rule.created or '-'}   "
               f"modified: {rule.modified or '-'}   next review: {rule.next_review or '-'}")


@rules_app.command("lint")
def rules_lint(
    rules: RulesOption = None,
    seeds: Annotated[Optional[Path], typer.Option(help="the seed documents (default: $JAKCDS_SEEDS or shared/seeds beside the repository)")] = None,
    format: FormatOption = None,
) -> None:
    """Check the pack: schema, manifest, seed quotes, examples, contradictions, review dates."""
    from dataclasses import asdict

    from jakcds.review.lint import lint
    from jakcds.knowledge.pack import default_path

    findings = lint(rules or default_path(), seeds)
    errors = sum(f.level == "error" for f in findings)
    if wants_json(format):
        print_json([asdict(f) for f in findings])
    else:
        for finding in findings:
            typer.echo(str(finding))
        typer.echo(f"jakcds rules lint: {errors} errors, {len(findings) - errors} warnings")
    if errors:
        raise typer.Exit(1)


@rules_app.command("docs")
def rules_docs(
    out: Annotated[Path, typer.Option("-o", "--out", help="the folder to write the site into")],
    cases: Annotated[Path, typer.Option("--cases", help="golden cases, for each rule's coverage")] = Path("cases"),
    store: Annotated[Optional[Path], typer.Option("--store", help="the service's SQLite store, for each rule's override rate")] = None,
    rules: RulesOption = None,
) -> None:
    """The rule pack as web pages: one per rule (conditions in words, citations, examples, review dates) and a filterable index."""
    from collections import Counter

    from jakcds.review.cases import coverage as rule_coverage
    from jakcds.review.cases import run_all
    from jakcds.views.html import rule_pages

    ev = load(rules)
    counts = rule_coverage(run_all(cases, ev), ev) if cases.is_dir() else {r.id: 0 for r in ev.rules}
    feedback: dict[str, Counter[str]] = {}
    if store is not None:
        from jakcds.ehr.store import Store

        if not store.is_file():
            fail(f"{store}: no such store")
        for record in Store(store).feedback():
            feedback.setdefault(record.get("rule") or "", Counter())[record.get("outcome")] += 1
    for name, page in rule_pages(ev, counts, feedback).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(page, encoding="utf-8")
    typer.echo(f"wrote {len(ev.pack.rules) + 1} pages to {out} (index.html)")


@rules_app.command("manifest")
def rules_manifest(
    rules: RulesOption = None,
    impact: Annotated[Optional[Path], typer.Option("--impact", help="a `rules impact` output folder: its summary is recorded with the approval")] = None,
) -> None:
    """Record the pack's files as approved (after review): writes manifest.json."""
    from jakcds.knowledge.pack import write_manifest

    summary = None
    if impact is not None:
        try:
            summary = json.loads((impact / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            fail(f"{impact}: not a `jakcds rules impact` output ({type(error).__name__}: no readable summary.json)")
    try:
        manifest = write_manifest(rules, impact=summary)
    except PackError as error:
        fail(f"rule pack: {error}", code=3)
    typer.echo(f"manifest.json: version {manifest['version']}, {len(manifest['files'])} files, sha256 {manifest['sha256']}")


@rules_app.command("impact")
def rules_impact(
    base: Annotated[str, typer.Option("--base", help="the approved pack: a rule-pack folder or a git revision of this repository's rules/ (e.g. main)")],
    on: Annotated[Path, typer.Option("--on", help="golden cases, a folder of profiles or charts (*.json), or a FHIR Bulk Data export (*.ndjson)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the folder to write impact.ndjson, impact.csv, impact.html, summary.json into")],
    head: Annotated[str, typer.Option("--head", help="the changed pack: a folder or a git revision")] = "rules",
    include_draft: DraftOption = False,
    as_of: AsOfOption = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="bulk exports: local worker processes (default: every core)")] = None,
) -> None:
    """Whose decision changes between two packs, and how: every patient of a source evaluated with both."""
    import tempfile

    from jakcds.review.impact import impact as measure

    with tempfile.TemporaryDirectory(prefix="jakcds-impact-") as scratch, input_errors(str(on), ValueError, OSError):
        try:
            summary = measure(base, head, on, out, scratch=Path(scratch), include_draft=include_draft,
                              as_of=as_of.date() if as_of else None, workers=workers)
        except PackError as error:
            fail(f"rule pack: {error}", code=3)
    kinds = ", ".join(f"{kind} {count}" for kind, count in summary["changes_by_kind"].items()) or "no change"
    typer.echo(f"{summary['changed']} of {summary['patients']} patients change ({kinds}); written to {out}")


class Contract(str, Enum):
    input = "input"
    output = "output"


@app.command()
def schema(which: Annotated[Contract, typer.Argument(help="input (the patient profile) or output (the result)")]) -> None:
    """The JSON Schema of the input profile or of the result, from the models the code validates with."""
    from jakcds import Patient, Result

    model = Patient if which is Contract.input else Result
    print_json(model.model_json_schema())


QUICK = {"evaluate", "explain"}  # the main job: nothing left running when it ends


def run() -> None:
    """The `jakcds` console script. After evaluate or explain the process leaves at once, output
    flushed: the interpreter's teardown (collecting and freeing every module and object) was ~80 ms
    of a ~300 ms evaluate here and does nothing a finished command needs. Other commands (serve,
    screen with its workers, the writers) exit as usual."""
    try:
        app()
    except SystemExit as done:
        if sys.argv[1:2] and sys.argv[1] in QUICK:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except OSError:
                raise done from None  # e.g. a closed pipe: the usual exit reports it
            os._exit(done.code if isinstance(done.code, int) else 0 if done.code is None else 1)
        raise
