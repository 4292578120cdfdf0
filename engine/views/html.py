"""Web pages a reviewer looks at (Jinja2): one decision (`jakcds report`) and the rule pack
(`jakcds rules docs`). Every page is self-contained: inline CSS, no network, no script but the
index's filter (its Content-Security-Policy allows nothing else); the trace sections are
<details> that open on a click."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ..decision.evaluate import Evaluator
from ..decision.result import Result
from ..knowledge.describe import describe_condition, value_words
from ..knowledge.pack import Pack

TEMPLATES = Path(__file__).resolve().parent / "templates"
FILTER_JS = (TEMPLATES / "filter.js").read_text(encoding="utf-8")  # the index's only script
# Nothing loads from anywhere; the only script that runs is the index's filter (by its hash), so a
# link or text a hostile pack slips in cannot run script.
CSP = ("default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
       f"script-src 'sha256-{base64.b64encode(hashlib.sha256(FILTER_JS.encode()).digest()).decode()}'")


def web_address(url: str) -> bool:
    """Only an http(s) address becomes a link (never javascript:, data: or a file)."""
    return isinstance(url, str) and url.lower().startswith(("https://", "http://")) and url.isprintable() and " " not in url


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.tests["web_address"] = web_address
    env.globals.update(csp=Markup(CSP), filter_js=Markup(FILTER_JS))  # ours, not input: never escaped
    return env


def _patient_rows(patient: dict[str, Any], pack: Pack) -> list[tuple[str, str]]:
    """The recorded patient facts, each by its name in words with its unit (labs one by one)."""
    flat = {**{key: value for key, value in patient.items() if key != "labs"}, **(patient.get("labs") or {})}
    return [(pack.fact_words(fact), value_words(fact, value, pack)) for fact, value in flat.items() if value not in (None, [], {})]


def decision_page(ev: Evaluator, result: Result, explained: dict[str, dict[str, Any]]) -> str:
    """One decision: the patient, the ranking with findings, before starting, the why-nots, and
    the trace of every rule that concerns each drug (from `jakcds explain`)."""
    facts = _patient_rows(result.patient, ev.pack)
    plan = ev.plan
    return _environment().get_template("report.html.j2").render(
        result=result, facts=facts, explained=sorted(explained.items()), names={d: info.name for d, info in ev.pack.drugs.items()},
        citations={rule.id: plan.citations[rule.id] for rule in ev.rules},
        all_sources={key: plan.sources[key] for key in sorted(plan.sources)},
    )


def rule_pages(ev: Evaluator, coverage: dict[str, int], feedback: dict[str, Counter[str]]) -> dict[str, str]:
    """The rule pack's site: index.html and rules/<ID>.html for every rule (any status)."""
    pack, env = ev.pack, _environment()
    plan = ev.plan
    rows, pages = [], {}
    for rule in pack.rules:
        cited = sorted({c.source for c in rule.citations})
        votes = feedback.get(rule.id)
        seen = {"overridden": votes["overridden"], "total": sum(votes.values())} if votes else None
        rows.append({"id": rule.id, "title": rule.title, "kind": rule.kind, "status": rule.status, "drugs": rule.drugs,
                     "sources": cited, "coverage": coverage.get(rule.id), "feedback": seen})
        pages[f"rules/{rule.id}.html"] = env.get_template("rule.html.j2").render(
            rule=rule, file=pack.rule_files[rule.id], coverage=coverage.get(rule.id), feedback=seen,
            conditions=describe_condition(rule.when, pack) if rule.when else ["always (no condition)"],
            citations=rule.citations, sources={key: plan.sources[key] for key in cited})
    rows.sort(key=lambda r: (-(r["feedback"]["overridden"] / r["feedback"]["total"]) if r["feedback"] else 0, r["id"]))
    filters = {"drug": sorted(pack.drugs), "kind": sorted({r.kind for r in pack.rules}), "status": sorted({r.status for r in pack.rules}),
               "source": sorted(pack.sources)}
    pages["index.html"] = env.get_template("index.html.j2").render(
        pack=pack, rows=rows, filters=filters, covered=sum(1 for n in coverage.values() if n), active=len(coverage),
        feedback_total=sum(sum(v.values()) for v in feedback.values()))
    return pages


def impact_page(summary: dict[str, Any], changed: dict[str, list[Any]]) -> str:
    """A pack change's impact (`jakcds rules impact`): changes by kind and by rule, then each
    changed patient, opened with a click, its changes before | after with the rules that caused them."""
    return _environment().get_template("impact.html.j2").render(summary=summary, changed=sorted(changed.items()))
