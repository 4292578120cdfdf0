"""The clinician's text view of a result (rich): ranked table, cautions, why-not, citations."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..decision.result import EVIDENCE_WORDS, NO_PROPOSAL, Candidate, Caution, Citation, Result, evidence_words

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _source(citation: Citation, result: Result) -> str:
    """Who a citation's source is: a label (with when its copies were read) or the first author and year."""
    source = result.sources.get(citation.source)
    if source and source.kind == "label":
        who = f"US label, read {source.read_on}"
    elif source and source.authors:
        who = f"{source.authors[0]}{' et al.' if len(source.authors) > 1 else ''} {source.date[:4]}"
    else:
        who = source.title if source else ""
    return f"[{citation.source}] {who}"


def _said(citation: Citation) -> str:
    """Where in the source and what it says (a label citation's grade says how it was verified)."""
    grade = f"{citation.grade}, " if citation.grade else ""
    said = f"record: {citation.quote}" if citation.kind == "record" else f"“{citation.quote}”"
    return f"{grade}{citation.locator}: {said}"


def _cite(citation: Citation, result: Result) -> str:
    return escape(f"{_source(citation, result)}, {_said(citation)}")


def _who(patient: dict) -> str:
    """The patient in a few words: age, sex, pregnancy and breastfeeding where known."""
    parts = [f"{patient['age']} y" if patient.get("age") is not None else "age unknown", patient.get("sex") or "sex unknown"]
    parts += [word for word in ("pregnant", "breastfeeding") if patient.get(word)]
    return ", ".join(parts)


def _finding(candidate: Candidate) -> str:
    """What must be confirmed first (a conditional candidate), then the most severe caution in
    words: its severity and the message's lead (up to the first colon)."""
    facts = sorted({fact for item in candidate.confirm for fact in item.facts})
    lines = [f"[bold]CONFIRM[/] {escape(', '.join(facts))}"] if candidate.conditional else []
    if candidate.cautions:
        top = candidate.cautions[0]  # cautions are most severe first
        lead = top.message.split(":", 1)[0]
        more = f" (+{len(candidate.cautions) - 1})" if len(candidate.cautions) > 1 else ""
        lines.append(f"[{SEVERITY_STYLE[top.severity]}]{top.severity.upper()}[/] {escape(lead)}{more}")
    return "\n".join(lines) or "none"


def _line(console: Console, indent: int, markup: str, style: str = "") -> None:
    """One paragraph whose wrapped lines keep its indent."""
    console.print(Padding(Text.from_markup(markup, style=style), (0, 0, 0, indent)))


class _Citations:
    """Citations inline under each statement, or numbered once ([n]) and listed at the end."""

    def __init__(self, result: Result, numbered: bool):
        self.result, self.numbered, self.refs = result, numbered, []

    def show(self, console: Console, indent: int, markup: str, citations: list[Citation]) -> None:
        if not self.numbered:
            _line(console, indent, markup)
            for citation in citations:
                _line(console, indent + 2, _cite(citation, self.result), "dim")
            return
        numbers = []
        for citation in citations:
            if citation not in self.refs:
                self.refs.append(citation)
            numbers.append(str(self.refs.index(citation) + 1))
        _line(console, indent, markup + (f" [dim]\\[{','.join(numbers)}][/]" if numbers else ""))

    def references(self, console: Console) -> None:
        """The numbered references, grouped under their source (each source named once)."""
        if not self.refs:
            return
        console.print("\n[bold]References[/]")
        numbered = list(enumerate(self.refs, start=1))
        for source in dict.fromkeys(c.source for c in self.refs):
            mine = [(n, c) for n, c in numbered if c.source == source]
            _line(console, 2, escape(_source(mine[0][1], self.result)), "dim")
            for number, citation in mine:
                _line(console, 4, f"\\[{number}] {escape(_said(citation))}", "dim")


def _caution(console: Console, cite: _Citations, caution: Caution) -> None:
    style = SEVERITY_STYLE[caution.severity]
    cite.show(console, 2, f"[{style}]{caution.severity.upper()}[/] {caution.rule}: {escape(caution.message)}", caution.citations)


def render(result: Result, console: Console, citations: str = "numbered") -> None:
    """The text view; `citations`: "numbered" (references at the end) or "inline" (under each statement)."""
    rs, patient = result.ruleset, result.patient
    cite = _Citations(result, citations == "numbered")
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
            _line(console, 2, f"[{style}]{prompt.severity.upper()}[/] {prompt.fact}: for {', '.join(prompt.drugs)} ({rules})")

    # a caution every candidate carries is printed once, after them
    shared = set.intersection(*({x.rule for x in c.cautions} for c in result.candidates)) if len(result.candidates) > 1 else set()
    for c in result.candidates:
        console.print(f"\n[bold]{c.rank}. {c.name}[/] ({c.label_status.replace('_', '-')}, {evidence_words(c.evidence)})")
        cite.show(console, 2, escape(c.rationale), c.citations)
        for item in c.confirm:
            _line(console, 2, f"[bold]CONFIRM[/] {escape(item.needs)} ({item.rule}): proposed only if it holds")
        for caution in c.cautions:
            if caution.rule not in shared:
                _caution(console, cite, caution)
    if shared:
        console.print("\n[bold]Every candidate[/]")
        for caution in result.candidates[0].cautions:
            if caution.rule in shared:
                _caution(console, cite, caution)

    if result.excluded:
        console.print("\n[bold]Not suggested (why not)[/]")
        unproposed = [x.name for x in result.excluded if [r.rule for r in x.reasons] == [NO_PROPOSAL]]
        for x in result.excluded:
            if x.name not in unproposed:
                _line(console, 2, escape(f"{x.name}: " + "; ".join(f"{r.rule}: {r.message}" for r in x.reasons)))
        if unproposed:  # one line for the drugs no rule proposes, instead of one each
            _line(console, 2, escape(f"{', '.join(unproposed)}: {NO_PROPOSAL}: no active rule proposes them for "
                                     f"{result.condition_name}."))
    if result.notes:
        console.print("\n[bold]Notes[/]")
        for note in result.notes:
            _line(console, 2, escape(f"{note.rule}: {note.message}"))
    if result.not_assessed:
        console.print("\n[bold]Not assessed (entries this pack does not know)[/]")
        for item in result.not_assessed:
            _line(console, 2, escape(f"{item.entry} ({item.field}): {item.why}"))
    if result.as_of:
        console.print(f"\n[bold]From FHIR[/] (ages as of {result.as_of}); not used ({len(result.unmapped)}):")
        for item in result.unmapped:
            _line(console, 2, escape(f"{item.resource} {item.code}: {item.why}"))
    cite.references(console)
    console.print(f"\n{len(result.trace)} of {rs.rules_run} rules fired; `--format json` shows the trace, "
                  "`jakcds explain` each rule's tests.", style="dim")
