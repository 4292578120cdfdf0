"""CDS Hooks 2.0 cards from results: one card per candidate (patient-view) or per finding about
a drafted JAK inhibitor order (order-select / order-sign).

Every card names one rule: `source.topic.code` is its id, `source` its first citation's source
(the seed article or the US label) and `detail` carries the rationale, evidence and quotes.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..decision.result import EVIDENCE_WORDS, Candidate, Citation, Prompt, Result, RulesetInfo, SourceInfo, Unmapped, evidence_words
from ..knowledge.rules import Severity

RULES_SYSTEM = "urn:jakcds:rule"
OVERRIDE_SYSTEM = "urn:jakcds:override-reason"
OVERRIDE_REASONS = [
    {"system": OVERRIDE_SYSTEM, "code": "benefit-outweighs-risk", "display": "Benefit outweighs the risk for this patient"},
    {"system": OVERRIDE_SYSTEM, "code": "already-managed", "display": "Already addressed (monitoring or plan in place)"},
    {"system": OVERRIDE_SYSTEM, "code": "chart-data-wrong", "display": "The chart data behind this card is wrong or outdated"},
]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
SUMMARY_MAX = 139  # the spec: "<140 characters"


@dataclass
class Basis:
    """What every card of a decision refers to: the ruleset, the cited sources, what was not used."""

    ruleset: RulesetInfo
    sources: dict[str, SourceInfo]
    unmapped: list[Unmapped]
    titles: dict[str, str]  # rule id -> its title, for source.topic.display

    @classmethod
    def of(cls, result: Result, titles: dict[str, str]) -> Basis:
        return cls(result.ruleset, result.sources, result.unmapped, titles)


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _quote(citation: Citation, sources: dict[str, SourceInfo]) -> str:
    source = sources.get(citation.source)
    title = source.title if source else citation.source
    grade = f", {citation.grade}" if citation.grade else ""
    said = f"record: {citation.quote}" if citation.kind == "record" else f"“{citation.quote}”"
    return f"- {title} ({citation.locator}{grade}): {said}"


def _source(rule: str, citations: list[Citation], basis: Basis) -> dict[str, Any]:
    info = basis.sources.get(citations[0].source) if citations else None
    source: dict[str, Any] = {
        "label": info.title if info else f"jakcds rule pack {basis.ruleset.name} {basis.ruleset.version}",
        "topic": {"system": RULES_SYSTEM, "code": rule, "display": basis.titles[rule]},
    }
    if info and info.url:
        source["url"] = info.url
    return source


def card(
    summary: str, indicator: Severity, detail: list[str], rule: str, citations: list[Citation], basis: Basis
) -> dict[str, Any]:
    """One spec card; warnings and critical cards offer override reasons, every cited URL a link."""
    unmapped = _not_used(basis.unmapped)
    rs = basis.ruleset
    footer = [f"\nRule {rule}; rule pack {rs.name} {rs.version} (sha256 {rs.sha256[:12]})."]
    if unmapped:
        footer += ["\nNot used from the chart:", *unmapped]
    out: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _summary(summary),
        "indicator": indicator,
        "detail": "\n".join(detail + footer),
        "source": _source(rule, citations, basis),
    }
    if indicator != "info":
        out["overrideReasons"] = OVERRIDE_REASONS
    cited = [basis.sources[c.source] for c in citations if c.source in basis.sources]
    links = {info.url: info.title for info in cited if info.url}
    if links:
        out["links"] = [{"label": _summary(title), "url": url, "type": "absolute"} for url, title in links.items()]
    return out


def _code(text: str) -> str:
    """Text as a Markdown code span: a code written `system|code` in plain text becomes a broken
    link in renderers that link bare URLs (the CDS Hooks sandbox's). A backtick inside is fenced by
    a longer run of them."""
    if not text:
        return ""
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _not_used(unmapped: list[Unmapped], group_from: int = 3) -> list[str]:
    """What was not used from the chart: each item, except that a reason shared by many is one counted line."""
    counts = Counter(u.why for u in unmapped)
    lines = [f"- {u.resource} {_code(u.code)}".rstrip() + f": {u.why}" for u in unmapped if counts[u.why] < group_from]
    lines += [f"- {n} resources: {why}" for why, n in sorted(counts.items()) if n >= group_from]
    return lines


def _highest(candidate: Candidate) -> Severity:
    """Its most severe caution; at least a warning while a condition of its proposal is unconfirmed."""
    floor: list[Severity] = ["warning"] if candidate.conditional else []
    return max([c.severity for c in candidate.cautions] + floor, key=SEVERITY_RANK.__getitem__, default="info")


def _if_confirmed(candidate: Candidate) -> str:
    return f", if {'; '.join(c.needs for c in candidate.confirm)}" if candidate.conditional else ""


def _candidate_detail(candidate: Candidate, result: Result, condition: str) -> list[str]:
    lines = [
        f"**{candidate.name}**, option {candidate.rank} for {condition}: "
        f"{candidate.label_status.replace('_', '-')}, evidence: {evidence_words(candidate.evidence)}.",
        "",
        candidate.rationale,
        *(f"\n**CONFIRM** {c.needs} ({c.rule}): proposed only if it holds." for c in candidate.confirm),
        "",
        "Sources:",
        *(_quote(c, result.sources) for c in candidate.citations),
    ]
    for caution in candidate.cautions:
        lines += ["", f"**{caution.severity.upper()}** ({caution.rule}): {caution.message}"]
        lines += [_quote(c, result.sources) for c in caution.citations]
    return lines


def _work_up(prompts: list[Prompt], result: Result, basis: Basis) -> list[dict[str, Any]]:
    """One card for everything to find out before starting (none when nothing is missing)."""
    if not prompts:
        return []
    lines = []
    for prompt in prompts:
        lines += ["", f"**{prompt.name}** (for {', '.join(prompt.drugs)}):"]
        for rule in prompt.rules:
            lines += [f"- {rule.message} ({rule.rule})", *(_quote(c, result.sources) for c in rule.citations)]
    first = prompts[0].rules[0]
    summary = "Before starting, find out: " + ", ".join(p.name for p in prompts)
    return [card(summary, prompts[0].severity, lines[1:], first.rule, first.citations, basis)]


def patient_view(result: Result, condition: str, titles: dict[str, str]) -> list[dict[str, Any]]:
    """The chart overview: a card per candidate, most suitable first, or why there is none. An
    off-label candidate beside on-label ones for the condition gets no card (the result keeps it)."""
    basis, cards = Basis.of(result, titles), []
    for c in (c for c in result.candidates if not c.beside_on_label):
        cautions = f", {len(c.cautions)} caution{'s' * (len(c.cautions) != 1)}" if c.cautions else ""
        summary = f"{c.rank}. {c.name} for {condition} ({c.label_status.replace('_', '-')}, {EVIDENCE_WORDS[c.evidence]}{cautions}{_if_confirmed(c)})"
        cards.append(card(summary, _highest(c), _candidate_detail(c, result, condition), c.rules[0], c.citations, basis))
    cards += _work_up(result.before_starting, result, basis)
    if not result.candidates:
        reasons = [f"- {x.name}: " + "; ".join(f"{r.message} ({r.rule})" for r in x.reasons) for x in result.excluded]
        notes = [f"- {n.message} ({n.rule})" for n in result.notes]
        rule = result.notes[0].rule if result.notes else result.excluded[0].reasons[0].rule
        cards.append(card(f"No JAK inhibitor can be suggested for {condition}", "info", ["Why not:", *reasons, *notes], rule, [], basis))
    return cards


def order_review(result: Result, drug: str, condition: str, titles: dict[str, str]) -> list[dict[str, Any]]:
    """A drafted order for `drug`: a card per reason it is not suggested; or one saying it is an option
    (its warnings and infos in the detail), one per critical caution (each needs its own override
    reason) and one work-up card for what its rules need."""
    basis = Basis.of(result, titles)
    candidate = next((c for c in result.candidates if c.drug == drug), None)
    if candidate is None:
        excluded = next(x for x in result.excluded if x.drug == drug)
        return [
            card(f"{excluded.name} is not suggested for {condition}: {reason.message}",
                 "warning" if reason.rule.startswith("JAKCDS-") or reason.unmet else "critical",
                 [f"**{excluded.name}** is not among the options for {condition}.", "", reason.message, "",
                  *(_quote(c, result.sources) for c in reason.citations)],
                 reason.rule, reason.citations, basis)
            for reason in excluded.reasons
        ]
    cards = [
        card(f"{candidate.name}: {caution.message}", caution.severity,
             [f"**{caution.severity.upper()}** for {candidate.name} ({condition}): {caution.message}", "", "Sources:",
              *(_quote(c, result.sources) for c in caution.citations)],
             caution.rule, caution.citations, basis)
        for caution in candidate.cautions
        if caution.severity == "critical"
    ]
    summary = f"{candidate.name} is option {candidate.rank} for {condition} ({candidate.label_status.replace('_', '-')}{_if_confirmed(candidate)})"
    own = [p for p in result.before_starting if drug in p.drugs]
    detail = _candidate_detail(candidate, result, condition)
    return [card(summary, _highest(candidate), detail, candidate.rules[0], candidate.citations, basis), *cards,
            *_work_up(own, result, basis)]
