"""`jakcds rules lint`: what a reviewer must know before approving a pack, one finding a line."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from itertools import combinations, product
from pathlib import Path
from typing import Any

from ..decision.evaluate import Evaluator, InputError
from ..decision.session import EngineError
from ..knowledge.pack import Pack, PackError, Source, default_path, load_pack, read_file
from ..knowledge.rules import Group, Rule, Test

MAX_SOURCE_BYTES = 16 << 20  # a seed or the label sheet (the largest is about 0.3 MB)
_TYPOGRAPHIC = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " ", "μ": "µ"})


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning
    file: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper()} {self.file or '-'} {self.rule or '-'}: {self.message}"


def normalise_quote(text: str) -> str:
    """Quotes match their source word for word, whitespace, typographic quotes and a Markdown
    table's escaped pipe aside."""
    return re.sub(r"\s+", " ", text.replace("\\|", "|").translate(_TYPOGRAPHIC)).strip()


def quote_found(quote: str, normalised_text: str) -> bool:
    """Every part of the quote (parts are separated by an ellipsis "…") is in the text."""
    return all(part.strip() in normalised_text for part in normalise_quote(quote).split("…") if part.strip())


def source_path(source: Source, seeds: Path) -> Path:
    """Where a source's text is: a seed in shared/seeds, a label in shared/knowledge/us-labels.md."""
    return seeds / source.file if source.kind == "seed" else seeds.parent / "knowledge" / "us-labels.md"


def seeds_dir(pack_path: Path, given: Path | None = None) -> Path | None:
    """--seeds, else $JAKCDS_SEEDS, else shared/seeds beside the repository holding the pack or
    beside the current directory (a checkout of this repository)."""
    if given or os.environ.get("JAKCDS_SEEDS"):
        return Path(given or os.environ["JAKCDS_SEEDS"])
    for repo in (pack_path.resolve().parent, Path.cwd()):
        if (repo.parent / "shared" / "seeds").is_dir():
            return repo.parent / "shared" / "seeds"
    return None


def lint(path: Path | str | None = None, seeds: Path | None = None, today: datetime.date | None = None) -> list[Finding]:
    root = Path(path) if path else default_path()
    try:
        pack = load_pack(root, verify=False)
        evaluator = Evaluator(pack)  # compiled: what would hang or fail durable-rules is refused here
    except PackError as error:
        return [Finding("error", "", "", str(error))]
    findings = [Finding("error", "manifest.json", "", problem) for problem in pack.manifest_problems]
    findings += _quotes(pack, seeds_dir(root, seeds))
    try:
        findings += _dose_conflicts(pack, evaluator)
    except EngineError as error:
        findings.append(Finding("error", "", "", f"durable-rules failed evaluating the examples: {error}"))
    findings += _unstated_dose_changes(pack)
    findings += [Finding("error", "vocabulary/facts.yaml", "", f"fact {fact!r} has no name in words")
                 for fact in sorted(pack.catalogue.keys() - pack.fact_names.keys())]
    proposed = {drug for r in pack.active() if r.kind == "propose" for drug in r.drugs}  # drugs a caution can reach
    for rule in pack.active():
        findings += [Finding(level, pack.rule_files[rule.id], rule.id, message) for level, message in _rule(rule, proposed, today or datetime.date.today())]
    return findings


def quoted_spans(text: str) -> str:
    """The parts of the fact sheet in quote marks (its quotations of label text), one per line."""
    return "\n".join(normalise_quote(a or b) for a, b in re.findall(r'"([^"\n]+)"|“([^”\n]+)”', text))


def _quotes(pack: Pack, seeds: Path | None) -> list[Finding]:
    """Every quote against its source's text: seeds, and the US-label fact sheet, where a citation
    of kind quote must be one of the sheet's quotations and a record may be any of its text."""
    if seeds is None or not seeds.is_dir():
        return [Finding("error", "", "", f"seed documents not found ({seeds or 'give --seeds'}): quotes not checked")]
    findings, texts = [], {}
    for rule in pack.rules:
        for citation in rule.citations:
            source = pack.sources[citation.source]
            path = source_path(source, seeds)
            if path not in texts:
                raw = _source_text(path)
                texts[path] = (normalise_quote(raw), quoted_spans(raw)) if raw is not None else None
            where = (pack.rule_files[rule.id], rule.id)
            if texts[path] is None:
                findings.append(Finding("error", *where, f"{path} not found: quote not checked"))
                continue
            whole, quoted = texts[path]
            if not quote_found(citation.quote, whole):
                findings.append(Finding("error", *where, f"quote not found word for word in {path.name}: {citation.quote!r}"))
            elif source.kind == "label" and citation.kind == "quote" and not all(
                    part.strip() in quoted for part in normalise_quote(citation.quote).split("…") if part.strip()):
                findings.append(Finding("error", *where, f"cited as a quote but the sheet does not quote it (mark it kind: record): {citation.quote!r}"))
    return findings


def _source_text(path: Path) -> str | None:
    """A source's text: a regular file of at most MAX_SOURCE_BYTES, else None (not checked)."""
    try:
        return read_file(path, path.name, MAX_SOURCE_BYTES).decode("utf-8", errors="replace")
    except PackError:
        return None


def _merge(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Two example profiles as one patient: lists joined, labs merged, `first` winning a clash."""
    merged = {**second, **first}
    for key in first.keys() & second.keys():
        if isinstance(first[key], list):
            merged[key] = sorted({*first[key], *second[key]})
        elif isinstance(first[key], dict):
            merged[key] = {**second[key], **first[key]}
    return merged


def _dose_conflicts(pack: Pack, evaluator: Evaluator) -> list[Finding]:
    """One dose per drug: two active cautions of one drug that state different doses and fire
    together on a profile made of a firing example of each are an error unless one supersedes the
    other."""
    dosed = [r for r in pack.active() if r.dose]
    findings = []
    for a, b in combinations(dosed, 2):
        if a.dose == b.dose or not set(a.drugs) & set(b.drugs) or a.id in b.supersedes or b.id in a.supersedes:
            continue
        for one, two in product(*([e.patient for e in rule.examples if e.fires] for rule in (a, b))):
            profile = _merge(one, two)
            try:
                fired = {t.rule for t in evaluator.evaluate(profile).trace}
            except InputError:
                continue
            if {a.id, b.id} <= fired:
                findings.append(Finding("error", pack.rule_files[a.id], a.id,
                                        f"states {a.dose!r} and {b.id} states {b.dose!r} for {', '.join(sorted(set(a.drugs) & set(b.drugs)))}, "
                                        f"and both fire on {profile}: one must supersede the other"))
                break
    return findings


def _unstated_dose_changes(pack: Pack) -> list[Finding]:
    """A caution that tells to avoid its drug or reduce its dose changes the starting dose: it
    must say so (`changes_dose`, or `dose`), or a normal starting dose is shown beside it."""
    findings = []
    for rule in pack.active():
        if rule.kind != "caution" or rule.dose or rule.changes_dose:
            continue
        names = {word.lower() for drug in rule.drugs for word in (drug, pack.drugs[drug].name.split(" (")[0])}
        said = re.search(rf"\b(avoid|reduce)\s+(the\s+)?({'|'.join(map(re.escape, sorted(names)))})\b", rule.message, re.I)
        if said:
            findings.append(Finding("error", pack.rule_files[rule.id], rule.id,
                                    f"says {said.group(0)!r} but states no dose and lacks changes_dose: true "
                                    "(a normal starting dose would be shown beside it)"))
    return findings


def _rule(rule: Rule, proposed: set[str], today: datetime.date) -> list[tuple[str, str]]:
    found = []
    kinds = {example.fires for example in rule.examples}
    if True not in kinds:
        found.append(("error", "no example on which the rule fires"))
    if rule.when is not None and False not in kinds:
        found.append(("error", "no example on which the rule must not fire"))
    if rule.when is not None:
        found += [("error", f"contradictory conditions, can never fire: {why}") for why in _contradictions(rule.when)]
    if rule.kind == "caution":
        for drug in sorted(set(rule.drugs) - proposed):
            found.append(("warning", f"unreachable for {drug}: cautions show on candidates, and no active rule proposes {drug}"))
    if rule.next_review and rule.next_review < today:
        found.append(("warning", f"past its next review date ({rule.next_review})"))
    for field in ("author", "created", "next_review"):
        if not getattr(rule, field):
            found.append(("warning", f"no {field}"))
    return found


def _contradictions(group: Group) -> list[str]:
    """Tests in one `all` group that no patient can satisfy together (nested groups too)."""
    found = []
    for item in group.items:
        if isinstance(item, Group):
            found += _contradictions(item)
    if group.all_ is None:
        return found
    tests = [item for item in group.items if isinstance(item, Test)]
    by_fact: dict[str, list[Test]] = {}
    for test in tests:
        by_fact.setdefault(test.fact, []).append(test)
    for fact, same in by_fact.items():
        ops = {(t.op, str(t.value)) for t in same}
        for t in same:
            if t.op == "has" and ("lacks", str(t.value)) in ops:
                found.append(f"{fact} both has and lacks {t.value}")
        if ("known", "False") in ops and len(ops) > 1:
            found.append(f"{fact} must be unknown and tested at once")
        equal = {str(t.value) for t in same if t.op == "eq"}
        if len(equal) > 1:
            found.append(f"{fact} equals {' and '.join(sorted(equal))}")
        low = max((t.value for t in same if t.op in ("gt", "gte")), default=None)
        high = min((t.value for t in same if t.op in ("lt", "lte")), default=None)
        if low is not None and high is not None and (low > high or (low == high and not {"gte", "lte"} <= {t.op for t in same})):
            found.append(f"{fact} has an empty range")
    return found
