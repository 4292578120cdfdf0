"""The clinician's text views of a result (rich): the first screen (`first_screen`: patient,
ranked table, what to find out, fitting 80×24 in the common case) and the full view (`render`:
cautions, why-not, notes, citations)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ..decision.result import EVIDENCE_WORDS, NO_PROPOSAL, Candidate, Caution, Citation, Result, evidence_words

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
FINDING_MAX = 40  # characters of the first screen's "most severe finding": one line, never a paragraph


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
    about = f" (patient: {', '.join(caution.patient)})" if caution.patient else ""
    cite.show(console, 2, f"[{style}]{caution.severity.upper()}[/] {caution.rule}: {escape(caution.message + about)}", caution.citations)


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
            _line(console, 2, f"[{style}]{prompt.severity.upper()}[/] {escape(prompt.name)}: for {escape(_names(result, prompt.drugs))} ({rules})")

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


def _names(result: Result, drugs: list[str]) -> str:
    """Drugs by their names, as the result lists them."""
    names = {c.drug: c.name for c in result.candidates} | {x.drug: x.name for x in result.excluded}
    return ", ".join(names.get(drug, drug) for drug in drugs)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lead(caution: Caution) -> str:
    """A caution in short: its message up to the first colon, and the patient's items it is about."""
    lead = caution.message.split(":", 1)[0]
    return f"{lead}: {', '.join(caution.patient)}" if caution.patient else lead


def headline(candidate: Candidate, limit: int = FINDING_MAX) -> tuple[str, str]:
    """The first screen's one finding of a candidate: a critical caution, else what must be
    confirmed, else its most severe caution (the lead of its message), with how many more; as
    (severity or CONFIRM, words), the words cut so the whole is at most FINDING_MAX characters."""
    items = [(c.severity.upper(), _lead(c)) for c in candidate.cautions]
    confirms = [("CONFIRM", item.needs) for item in candidate.confirm]
    critical = [item for item in items if item[0] == "CRITICAL"]
    ordered = critical + confirms + [item for item in items if item[0] != "CRITICAL"]
    if not ordered:
        return "", "none"
    tag, words = ordered[0]
    more = f" (+{len(ordered) - 1})" if len(ordered) > 1 else ""
    return tag, _short(words, limit - len(tag) - 1 - len(more)) + more


def _finding_cell(candidate: Candidate, limit: int) -> Text:
    tag, words = headline(candidate, limit)
    if not tag:
        return Text(words)
    return Text.assemble((tag, SEVERITY_STYLE.get(tag.lower(), "bold")), " ", words)


def _table(candidates: list[Candidate], width: int) -> Table:
    """One line per candidate; the finding cut to what is left of the width (at most FINDING_MAX)."""
    rows = [(str(c.rank), c.name, c.label_status.replace("_", "-"), EVIDENCE_WORDS[c.evidence]) for c in candidates]
    heads = ("#", "drug", "status", "evidence")
    used = sum(max(len(row[i]) for row in [heads, *rows]) + 2 for i in range(len(heads)))
    limit = max(12, min(FINDING_MAX, width - used - 4))  # rich keeps a few columns to itself
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for head in heads:
        table.add_column(head, no_wrap=True)
    table.add_column("most severe finding", no_wrap=True, overflow="ellipsis")
    for row, c in zip(rows, candidates):
        table.add_row(*row, _finding_cell(c, limit))
    return table


def first_screen(result: Result, console: Console) -> None:
    """What a clinician reads in ten seconds: who, the ranked options (one line each), what to
    find out first in words, and how to see the rest (`--details`)."""
    shown = [c for c in result.candidates if not c.beside_on_label]
    console.print(f"[bold]{escape(result.condition_name)}[/] — {_who(result.patient)}")
    if shown:
        console.print(_table(shown, console.width))
    else:
        console.print("[bold]No JAK inhibitor can be suggested for this patient.[/]")
        _why_none(result, console)
    aside = [c for c in result.candidates if c.beside_on_label]
    if aside:
        said = "; ".join(f"{c.name.lower()}, {EVIDENCE_WORDS[c.evidence]}" for c in aside)
        _line(console, 0, escape(f"Also reported off-label: {said} — see details."))
    _find_out(result, {c.drug for c in shown}, console)
    off_label = any(c.label_status == "off_label" for c in shown)
    notes = [n for n in result.notes if off_label or not n.about_off_label]
    for note in notes:  # one line each: the rest is in the details
        _line(console, 0, escape(_short(f"Note: {note.message}", min(console.width, 80) - 1)))
    if result.as_of:
        unused = len(result.unmapped)
        _line(console, 0, escape(f"From FHIR (ages as of {result.as_of}): {unused} chart item{'s' * (unused != 1)} not used."))
    rs = result.ruleset
    console.print(f"More: --details (cautions, why not, notes, sources). Pack {rs.name} {rs.version}"
                  + (", drafts included." if rs.drafts_included else "."), style="dim")


def _find_out(result: Result, drugs: set[str], console: Console) -> None:
    """The facts to find out before starting for the shown candidates, in words, one line per severity."""
    prompts = [p for p in result.before_starting if drugs & set(p.drugs)]
    if not prompts:
        return
    console.print("[bold]Before starting, find out[/]")
    for severity in SEVERITY_STYLE:
        names = [p.name for p in prompts if p.severity == severity]
        if names:
            _line(console, 2, f"[{SEVERITY_STYLE[severity]}]{severity.upper()}[/] {escape(', '.join(names))}")


def _why_none(result: Result, console: Console) -> None:
    """Why no drug: each excluded drug's first reason in short (what was not met, or the lead of
    its message), one line each, drugs with the same reason together."""
    by_reason: dict[str, list[str]] = {}
    for x in result.excluded:
        reason = x.reasons[0]
        if reason.rule != NO_PROPOSAL:
            said = "not met: " + reason.message.split("; not met: ", 1)[1] if reason.unmet else reason.message.split(":", 1)[0]
            by_reason.setdefault(said, []).append(x.name)
    for said, names in by_reason.items():
        _line(console, 2, escape(_short(f"{', '.join(names)}: {said}", 2 * 76)))
