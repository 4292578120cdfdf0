"""The clinician's text view of a result (rich): ranked table, cautions, why-not, citations."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..decision.result import EVIDENCE_WORDS, Citation, Result, evidence_words

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _cite(citation: Citation, result: Result) -> str:
    source = result.sources.get(citation.source)
    if source and source.kind == "label":  # a US label: its grade says how the quote was verified
        who = f"US label, read {source.read_on}, {citation.grade}"
    elif source and source.authors:
        who = f"{source.authors[0]}{' et al.' if len(source.authors) > 1 else ''} {source.date[:4]}"
    else:
        who = source.title if source else ""
    return escape(f"[{citation.source}] {who}, {citation.locator}: “{citation.quote}”")


def _who(patient: dict) -> str:
    """The patient in a few words: age, sex, pregnancy and breastfeeding where known."""
    parts = [f"{patient['age']} y" if patient.get("age") is not None else "age unknown", patient.get("sex") or "sex unknown"]
    parts += [word for word in ("pregnant", "breastfeeding") if patient.get(word)]
    return ", ".join(parts)


def _finding(candidate) -> str:
    """The most severe caution in words: its severity and the message's lead (up to the first colon)."""
    if not candidate.cautions:
        return "none"
    top = candidate.cautions[0]  # cautions are most severe first
    lead = top.message.split(":", 1)[0]
    more = f" (+{len(candidate.cautions) - 1})" if len(candidate.cautions) > 1 else ""
    return f"[{SEVERITY_STYLE[top.severity]}]{top.severity.upper()}[/] {escape(lead)}{more}"


def render(result: Result, console: Console) -> None:
    rs, patient = result.ruleset, result.patient
    console.print(f"[bold]{escape(result.condition_name)}[/] — {_who(patient)}")
    console.print(f"rule pack {rs.name} {rs.version} (sha256 {rs.sha256[:12]}…)"
                  + ("  [yellow]drafts included[/]" if rs.drafts_included else ""), style="dim")
    if result.candidates:
        table = Table(title="JAK inhibitors that could be considered", title_justify="left")
        for column in ("#", "drug", "label status", "evidence", "most severe finding"):
            table.add_column(column)
        for c in result.candidates:
            table.add_row(str(c.rank), c.name, c.label_status.replace("_", "-"), EVIDENCE_WORDS[c.evidence], _finding(c))
        console.print(table)
    else:
        console.print("[bold]No JAK inhibitor can be suggested for this patient.[/]")

    if result.before_starting:
        console.print("\n[bold]Before starting, find out[/]")
        for prompt in result.before_starting:
            style = SEVERITY_STYLE[prompt.severity]
            rules = ", ".join(r.rule for r in prompt.rules)
            console.print(f"  [{style}]{prompt.severity.upper()}[/] {prompt.fact}: for {', '.join(prompt.drugs)} ({rules})", highlight=False)

    for c in result.candidates:
        console.print(f"\n[bold]{c.rank}. {c.name}[/] ({c.label_status.replace('_', '-')}, {evidence_words(c.evidence)})")
        console.print(f"  {c.rationale}", highlight=False)
        for citation in c.citations:
            console.print(f"    {_cite(citation, result)}", style="dim", highlight=False)
        for caution in c.cautions:
            style = SEVERITY_STYLE[caution.severity]
            console.print(f"  [{style}]{caution.severity.upper()}[/] {caution.rule}: {caution.message}", highlight=False)
            for citation in caution.citations:
                console.print(f"      {_cite(citation, result)}", style="dim", highlight=False)

    if result.excluded:
        console.print("\n[bold]Not suggested (why not)[/]")
        for x in result.excluded:
            reasons = "; ".join(f"{r.rule}: {r.message}" for r in x.reasons)
            console.print(f"  {x.name}: {reasons}", highlight=False)
    if result.notes:
        console.print("\n[bold]Notes[/]")
        for note in result.notes:
            console.print(f"  {note.rule}: {note.message}", highlight=False)
    if result.as_of:
        console.print(f"\n[bold]From FHIR[/] (ages as of {result.as_of}); not used ({len(result.unmapped)}):")
        for item in result.unmapped:
            console.print(f"  {item.resource} {item.code}: {item.why}", highlight=False)
    if any(c.evidence != "label" for c in result.candidates):
        console.print(
            "\n[bold yellow]Evidence is low-level:[/] off-label suggestions rest on single case reports, "
            "a six-case series or one author's opinion, not on trials. Weigh them accordingly."
        )
    console.print(f"\n{len(result.trace)} of {rs.rules_run} rules fired; `--format json` shows the trace, "
                  "`jakcds explain` each rule's tests.", style="dim")
