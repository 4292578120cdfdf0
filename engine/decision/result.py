"""The result (output contract) and its assembly from the rules that fired.

Ranking (documented in the README): a drug with a critical caution never ranks above one without;
then its best surviving proposal decides, by
  1. on-label before off-label (for the condition being treated),
  2. specificity: more patient facts the proposing rule required (a rule fitted to this
     profile, e.g. chilblain lupus *with* myelofibrosis, before a broader one),
  3. evidence: label > case_series > case_report > expert_opinion,
  4. drug id, alphabetically (a stable tie-break).
Everything is sorted, so list order in the input never changes the output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..knowledge.describe import describe_item, value_words
from ..knowledge.pack import Pack
from ..knowledge.rules import Evidence, Grade, LabelStatus, Rule, Severity, tests_of
from .compiler import part_probe, relaxable, relaxed_probe

EVIDENCE_ORDER = ("label", "case_series", "case_report", "expert_opinion")
EVIDENCE_WORDS = {"label": "US label", "case_series": "case series", "case_report": "case report", "expert_opinion": "expert opinion"}


def evidence_words(evidence: str) -> str:
    """An evidence level in words, as shown to clinicians: all but a label is flagged low-level."""
    return EVIDENCE_WORDS[evidence] + ("" if evidence == "label" else " (low-level evidence)")
SEVERITY_ORDER = ("critical", "warning", "info")
NO_PROPOSAL = "JAKCDS-001"  # built-in: no active proposal rule for the patient's condition concerns this drug
NO_RULES_FOR_CONDITION = "JAKCDS-002"  # built-in: the pack has no proposal rule for the condition
ALREADY_FAILED = "JAKCDS-004"  # built-in: the patient's record says this drug failed or is contraindicated
NOT_ASSESSED = "JAKCDS-005"  # built-in: pregnant or breastfeeding, and no rule of this drug's label speaks to it
POLICY = "JAKCDS-006"  # built-in note: a site policy of the pack decided a fact a shown caution reads
BUILT_IN = {NO_PROPOSAL: "No active rule proposes this drug for the patient's condition",
            NO_RULES_FOR_CONDITION: "The pack has no proposal rule for this condition",
            ALREADY_FAILED: "The drug is recorded as failed or contraindicated for this patient",
            NOT_ASSESSED: "Pregnancy or breastfeeding not assessed for this drug: its label section is not in this pack",
            POLICY: "A site policy of the pack, not a label fact, decided a fact a shown caution reads"}
# fact -> the label section a pregnant or breastfeeding patient's candidate must be assessed against
ASSESSED = {"pregnant": "pregnancy", "breastfeeding": "lactation"}


class Citation(BaseModel):
    model_config = ConfigDict(frozen=True)  # one instance per rule citation, shared by every result
    source: str
    locator: str
    quote: str
    grade: Grade | None = None  # label citations only
    kind: Literal["quote", "record"] = "quote"  # record: the sheet's record of the label, not its words


class Caution(BaseModel):
    model_config = ConfigDict(frozen=True)  # built once per rule and drugs (Plan.shared), shared by every result
    rule: str
    severity: Severity
    message: str
    citations: list[Citation]
    # the patient's medicines or comorbidities, by name, that fall under what the rule names
    # ("Dupilumab" for a rule on biologics): which of them the caution is about
    patient: list[str] = Field(default_factory=list)


class Prompt(BaseModel):
    """One fact the patient lacks that active rules need, asked once for every candidate that needs it."""

    fact: str
    name: str = ""  # the fact in words, with its unit (vocabulary/facts.yaml)
    severity: Severity  # the most severe of the asking rules
    drugs: list[str]  # the candidates that need it
    rules: list[Caution]  # the asking rules, each with its message and citations


class Confirm(BaseModel):
    """A condition of a conditional candidate's proposal that the profile cannot decide."""

    rule: str  # the proposal, or the off-label exclusion that must be confirmed not to hold
    needs: str  # in words: "severity is 'severe'", "not: age < 18 years"
    facts: list[str]  # the unknown facts it reads


class Candidate(BaseModel):
    drug: str
    name: str
    rank: int
    label_status: LabelStatus
    evidence: Evidence
    rationale: str
    rules: list[str]
    citations: list[Citation]
    cautions: list[Caution]
    conditional: bool = False  # proposed only if `confirm` holds: ranks below the unconditional
    confirm: list[Confirm] = Field(default_factory=list)
    # off-label while on-label candidates for the condition are proposed: one line on the first
    # screen ("also reported off-label"), no CDS Hooks card; its full detail stays here and in explain
    beside_on_label: bool = False


class Unmet(BaseModel):
    needs: str  # a part of the proposal's condition, in words
    patient: dict[str, Any]  # the patient's value of each fact it reads (None: not recorded)


class Reason(BaseModel):
    model_config = ConfigDict(frozen=True)  # the fixed ones are shared by every result (Plan.shared)
    rule: str
    message: str
    citations: list[Citation] = Field(default_factory=list)  # none for the built-in JAKCDS-* reasons
    unmet: list[Unmet] = Field(default_factory=list)  # a proposal that did not fire: the parts that did not hold


class Excluded(BaseModel):
    drug: str
    name: str
    reasons: list[Reason]


class Note(BaseModel):
    model_config = ConfigDict(frozen=True)  # shared by every result (Plan.shared)
    rule: str
    message: str
    citations: list[Citation] = Field(default_factory=list)
    about_off_label: bool = False  # shown only with an off-label candidate (the rule's only_with_off_label)


class TraceEntry(BaseModel):
    rule: str
    kind: str
    fired: bool
    matched: dict[str, Any]


class SourceInfo(BaseModel):
    model_config = ConfigDict(frozen=True)  # one instance per source, shared by every result
    kind: str
    title: str
    authors: list[str]
    container: str
    date: str
    doi: str
    url: str
    product: str = ""  # label sources
    read_on: str = ""  # label sources


class RulesetInfo(BaseModel):
    name: str
    version: str
    sha256: str
    path: str  # "(built-in)" for the shipped pack
    drafts_included: bool
    rules_run: int  # the active (and, if included, draft) rules every evaluation runs


class Unmapped(BaseModel):
    resource: str  # e.g. Observation/f205
    code: str  # system|code, or what the item is about
    why: str


class NotAssessed(BaseModel):
    field: str  # the input list it was typed in
    entry: str  # as typed
    why: str


# what the pack cannot judge about an entry it does not know, by the list it was typed in
NOT_ASSESSED_WHY = {
    "medications": "this pack does not know its interactions — check them",
    "comorbidities": "this pack does not know this condition — check what the labels say of it",
    "failed_therapies": "not a therapy this pack knows — not counted for refractory disease",
    "contraindicated_therapies": "not a therapy this pack knows — not counted for refractory disease",
}


def not_assessed(patient: dict[str, Any]) -> list[dict[str, str]]:
    """The entries the pack took but cannot judge, each with what that means."""
    return [{"field": field, "entry": entry, "why": NOT_ASSESSED_WHY[field]}
            for field, entries in patient["not_assessed"].items() for entry in entries]


class Result(BaseModel):
    """Read-only: its cautions, reasons, notes, citations and sources are shared by every result
    of one Evaluator (copy it with `model_copy(deep=True)` to edit one)."""

    ruleset: RulesetInfo
    patient: dict[str, Any]
    condition_name: str  # the condition treated, by its vocabulary name
    candidates: list[Candidate]
    before_starting: list[Prompt]  # what to find out first, most severe first
    excluded: list[Excluded]
    notes: list[Note]
    trace: list[TraceEntry]
    sources: dict[str, SourceInfo]
    not_assessed: list[NotAssessed] = Field(default_factory=list)  # entries taken but not known to this pack
    # FHIR input only: what was not used and why, and the date ages were computed on
    unmapped: list[Unmapped] = Field(default_factory=list)
    read_by_draft: list[Unmapped] = Field(default_factory=list)  # what a draft (VERIFIED-S) code mapping read: drafts included only
    as_of: str | None = None


Shared = TypeVar("Shared")


@dataclass(frozen=True)
class Plan:
    """What assembling a result needs of the rules that is the same for every evaluation: built
    once per Evaluator, so an evaluation walks the rules that fired, not the whole pack. The
    result items that depend only on the pack (a rule's caution for these drugs, an exclusion's
    reason, a part of a condition in words) are built on first use and shared (`shared`)."""

    by_id: dict[str, Rule]
    order: dict[str, int]  # rule id -> its position (rule order)
    proposals: dict[str, list[Rule]]  # drug -> its proposal rules
    pending: dict[str, list[Rule]]  # drug -> its off-label exclusions that have a relaxed probe
    parts: dict[str, list[str]]  # rule id -> the probe names of its parts
    relaxed: dict[str, str]  # rule id -> the name of its relaxed probe
    condition_parts: dict[str, frozenset[str]]  # proposal id -> the probes of its parts that read only the condition
    citations: dict[str, list[Citation]]  # rule id -> its citations (shared, frozen instances)
    products: dict[str, str]  # source -> the product whose label it is ("" for a seed)
    sources: dict[str, SourceInfo]  # source -> its bibliographic data (shared, frozen)
    pack: Pack
    memo: dict[Hashable, Any] = field(default_factory=dict)  # what `shared` built

    @classmethod
    def of(cls, rules: list[Rule], pack: Pack) -> Plan:
        proposals: dict[str, list[Rule]] = defaultdict(list)
        pending: dict[str, list[Rule]] = defaultdict(list)
        for rule in rules:
            for drug in rule.drugs:
                if rule.kind == "propose":
                    proposals[drug].append(rule)
                elif rule.kind == "exclude" and rule.scope == "off_label" and relaxable(rule):
                    pending[drug].append(rule)
        return cls(
            by_id={rule.id: rule for rule in rules},
            order={rule.id: i for i, rule in enumerate(rules)},
            proposals=dict(proposals),
            pending=dict(pending),
            parts={rule.id: [part_probe(rule.id, i) for i in range(len(rule.parts))] for rule in rules},
            relaxed={rule.id: relaxed_probe(rule.id) for rule in rules},
            condition_parts={rule.id: frozenset(part_probe(rule.id, i) for i, part in enumerate(rule.parts)
                                                if {t.fact for t in tests_of(part)} == {"condition"}) for rule in rules},
            citations={rule.id: [Citation(**doc) for doc in rule.citation_docs] for rule in rules},
            products={key: source.product for key, source in pack.sources.items()},
            sources={key: SourceInfo(**source.model_dump(exclude={"file", "note"})) for key, source in pack.sources.items()},
            pack=pack,
        )

    def shared(self, key: Hashable, make: Callable[[], Shared]) -> Shared:
        """The item under key, built by make on first use (a race builds it twice, harmlessly)."""
        item = self.memo.get(key)
        if item is None:
            item = self.memo.setdefault(key, make())
        return item

    def own(self, rule: Rule, drugs: tuple[str, ...]) -> list[Citation]:
        """A rule's citations of these drugs' labels (and of non-label sources); all if none is
        theirs: a rule shared by several products shows each product its own label."""
        cited = self.citations[rule.id]
        return [c for c in cited if self.products[c.source] in ("", *drugs)] or cited

    def caution(self, rule: Rule, drugs: tuple[str, ...]) -> Caution:
        """A rule as a caution shown with these drugs (sorted): its message and their citations."""
        return self.shared(("caution", rule.id, drugs), lambda: Caution(
            rule=rule.id, severity=rule.severity, message=rule.message, citations=self.own(rule, drugs)))

    def note(self, rule: Rule) -> Note:
        return self.shared(("note", rule.id), lambda: Note(rule=rule.id, message=rule.message, citations=self.citations[rule.id],
                                                          about_off_label=rule.only_with_off_label))

    def reason(self, rule: Rule) -> Reason:
        return self.shared(("reason", rule.id), lambda: Reason(rule=rule.id, message=rule.message, citations=self.citations[rule.id]))

    def built_in(self, rule: str, message: str) -> Reason:
        return self.shared(("built-in", rule, message), lambda: Reason(rule=rule, message=message))

    def json(self, document: dict[str, Any], indent: bool = False) -> bytes:
        """A result's document (`assemble`) as the Result's JSON, byte for byte what
        `model_dump_json` writes, without building the Result. The shared items (frozen models,
        which this Plan keeps anyway) are dumped once each; other models, each time."""
        return orjson.dumps(document, default=self._plain, option=orjson.OPT_INDENT_2 if indent else 0)

    def _plain(self, item: Any) -> Any:
        if not isinstance(item, BaseModel):
            raise TypeError(f"not JSON: {type(item).__name__}")
        if not item.model_config.get("frozen"):
            return item.model_dump(mode="json")
        key = ("json", id(item))  # the entry keeps the item, so no other object ever has its id
        entry = self.memo.get(key)
        if entry is None:
            entry = self.memo.setdefault(key, (item, item.model_dump(mode="json")))
        return entry[1]

    def needs(self, rule: Rule, part: int, negate: bool = False) -> str:
        """A part of a rule's condition in words (negated: what must not hold)."""
        return self.shared(("needs", rule.id, part, negate), lambda: describe_item(rule.parts[part], self.pack, negate))


def proposal_key(rule: Rule) -> tuple[int, int, int, str]:
    return (rule.label_status != "on_label", -rule.specificity, EVIDENCE_ORDER.index(rule.evidence), rule.id)


def _citations(rules: list[Rule], plan: Plan) -> list[Citation]:
    """The rules' citations, each once, in rule order."""
    return list(dict.fromkeys(c for rule in rules for c in plan.citations[rule.id]))


def _not_assessed(rules: list[Rule], patient: dict[str, Any], name: str, plan: Plan) -> list[Caution]:
    """Silence is not safety: a pregnant or breastfeeding patient's candidate whose fired rules say
    nothing about it gets a caution saying it was not assessed."""
    return [
        plan.shared((NOT_ASSESSED, fact, name), lambda: Caution(
            rule=NOT_ASSESSED, severity="warning", citations=[],
            message=f"{fact.capitalize()} not assessed: no rule in this pack holds the {section} section of {name}'s "
                    f"US label (the sheet has no verified value); read it before prescribing."))
        for fact, section in ASSESSED.items()
        if patient[fact] and not any(fact in r.facts for r in rules)
    ]


def _cautions(rules: list[Rule], drug: str, plan: Plan, extra: list[Caution], patient: dict[str, Any]) -> list[Caution]:
    """A drug's cautions, most severe first. A rule shared by several products cites each one's
    label: the candidate shows its own label's citations (all of them if none is its own)."""
    cautions = [_about(plan.caution(rule, (drug,)), rule, patient, plan.pack) for rule in rules]
    return sorted([*cautions, *extra], key=lambda c: (SEVERITY_ORDER.index(c.severity), c.rule))


LISTED = {"medications": "treatments", "comorbidities": "diagnoses"}  # patient lists a caution may name items of


def _about(caution: Caution, rule: Rule, patient: dict[str, Any], pack: Pack) -> Caution:
    """The caution naming the patient's medicines or comorbidities that fall under the classes its
    rule's `has` tests name (the rule fired: durable-rules decided; this only says which item)."""
    named = [t for t in (rule.when.tests() if rule.when else []) if t.op == "has" and t.fact in LISTED]
    if not named:
        return caution
    items = []
    for test in named:
        vocabulary = getattr(pack, LISTED[test.fact])
        items += [vocabulary.entries[code].name for code in patient[test.fact]
                  if code in vocabulary.closures and test.value in vocabulary.closures[code]]
    return caution.model_copy(update={"patient": sorted(set(items))}) if items else caution


def _one_dose(cautions: list[Rule]) -> list[Rule]:
    """A drug's cautions without the doses they state when one of them changes or withholds the
    dose without stating one (a strong CYP3A4 inhibitor, "avoid"): never a starting dose beside it."""
    if any(rule.changes_dose for rule in cautions):
        return [rule for rule in cautions if not rule.dose]
    return cautions


def _lacks(observed: dict[str, Any], fact: str) -> bool:
    """The profile does not say: absent, or recorded as unknown (TB and hepatitis status)."""
    return observed[fact] in (None, "unknown")


def _asked(rule: Rule, observed: dict[str, Any]) -> list[str]:
    """The facts this rule asks for that the patient lacks (a rule asking for a full blood count
    asks only for the counts missing). A rule that asks for none is an ordinary caution."""
    return [fact for fact in rule.asks if _lacks(observed, fact)]


def _before_starting(cautions_of: dict[str, list[Rule]], asked: dict[str, list[str]], plan: Plan) -> list[dict[str, Any]]:
    """One prompt per fact the candidates' fired rules ask for and the patient lacks (asked: rule
    id -> those facts)."""
    asking: dict[str, dict[str, Rule]] = defaultdict(dict)
    needed_by: dict[str, set[str]] = defaultdict(set)
    for drug, cautions in cautions_of.items():
        for rule in cautions:
            for fact in asked[rule.id]:
                asking[fact][rule.id] = rule
                needed_by[fact].add(drug)
    prompts = []
    for fact, rules in asking.items():
        ordered = sorted(rules.values(), key=lambda r: r.id)
        drugs = tuple(sorted(needed_by[fact]))
        prompts.append({
            "fact": fact,
            "name": plan.pack.fact_words(fact),
            "severity": min((r.severity for r in ordered), key=SEVERITY_ORDER.index),
            "drugs": drugs,
            "rules": [plan.caution(rule, drugs) for rule in ordered],
        })
    prompts.sort(key=lambda p: (SEVERITY_ORDER.index(p["severity"]), p["fact"]))
    return prompts


def _patient_words(values: dict[str, Any], pack: Pack) -> str:
    """The patient's values of the facts a part reads, in words: "moderate" for one fact, else
    each named ("age 11, weight 38")."""
    if len(values) == 1:
        return value_words(*next(iter(values.items())), pack)
    return ", ".join(f"{pack.fact_words(fact, unit=False)} {value_words(fact, value, pack)}" for fact, value in values.items())


def _failed(rule: Rule, fired: frozenset[str], plan: Plan) -> list[int]:
    """The parts of a rule that did not hold, by index (durable-rules decided each, as a probe)."""
    return [i for i, probe in enumerate(plan.parts[rule.id]) if probe not in fired]


def _confirm(rule: Rule, fired: frozenset[str], plan: Plan, observed: dict[str, Any], negate: bool = False) -> list[dict[str, Any]]:
    """What must be confirmed for a rule that holds only with unknown values taken as holding
    (relaxed): its failed parts (for an exclusion: that they do not hold)."""
    return [
        {"rule": rule.id, "needs": plan.needs(rule, i, negate),
         "facts": sorted({t.fact for t in tests_of(rule.parts[i]) if t.fact == "condition" or _lacks(observed, t.fact)})}
        for i in _failed(rule, fired, plan)
    ]


def _unmet(rule: Rule, fired: frozenset[str], plan: Plan, observed: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"needs": plan.needs(rule, i), "patient": {t.fact: observed[t.fact] for t in tests_of(rule.parts[i])}}
            for i in _failed(rule, fired, plan)]


def _decide(
    drug: str, name: str, condition: str, plan: Plan, by_kind: dict[str, dict[str, list[Rule]]],
    fired: frozenset[str], observed: dict[str, Any],
) -> tuple[list[tuple[Rule, list[dict[str, Any]]]], list[Reason | dict[str, Any]]]:
    """A drug's surviving proposals, best first, each with what must be confirmed (empty: none;
    the unconditional ones first), and otherwise the reasons it is not suggested."""
    excludes = by_kind["exclude"][drug]
    proposed = {p.id for p in by_kind["propose"][drug]}  # fired, not superseded
    pending = [x for x in plan.pending.get(drug, []) if plan.relaxed[x.id] in fired and x.id not in fired]
    options: list[tuple[Rule, list[dict[str, Any]]]] = []
    removed: list[Rule] = []
    reasons: list[Reason | dict[str, Any]] = []
    for rule in plan.proposals.get(drug, []):
        if rule.id in proposed:
            confirm = []
        elif plan.relaxed[rule.id] in fired:
            confirm = _confirm(rule, fired, plan, observed)
        else:
            # a proposal about the patient's condition (its condition-only parts hold) says why it did not fire
            if fired >= plan.condition_parts[rule.id]:
                unmet = _unmet(rule, fired, plan, observed)
                said = "; ".join(f"{u['needs']} (patient: {_patient_words(u['patient'], plan.pack)})" for u in unmet)
                reasons.append({"rule": rule.id, "message": f"Would propose {name} for {condition}; not met: {said}.", "citations": plan.citations[rule.id], "unmet": unmet})
            continue
        off_label = rule.label_status == "off_label"
        if any(x.scope == "all" or off_label for x in excludes):
            removed.append(rule)
            continue
        if off_label:  # the off-label bar, where it reads a value the profile lacks (and confirm does not already ask)
            asked = {fact for c in confirm for fact in c["facts"]}
            for c in (c for x in pending for c in _confirm(x, fired, plan, observed, negate=True)):
                if not set(c["facts"]) <= asked:  # one line per unknown fact: the first bar that reads it
                    confirm.append(c)
                    asked |= set(c["facts"])
        options.append((rule, confirm))
    options.sort(key=lambda option: (bool(option[1]), proposal_key(option[0])))  # unconditional first
    if not options:
        # an exclusion is a reason only where it removed a proposal (the trace keeps every one that fired)
        off_label_removed = any(p.label_status == "off_label" for p in removed)
        reasons[:0] = [plan.reason(x) for x in excludes if (x.scope == "all" and removed) or off_label_removed]
    return options, reasons


def _sources(candidates: list[dict[str, Any]], items: list[Caution | Reason | Note | dict[str, Any]], plan: Plan) -> dict[str, SourceInfo]:
    """The sources cited by the candidates and these items."""
    cited = {c.source for cand in candidates for c in cand["citations"]}
    cited |= {c.source for item in items for c in (item["citations"] if isinstance(item, dict) else item.citations)}
    return {key: plan.sources[key] for key in sorted(cited)}


def assemble(
    pack: Pack,
    plan: Plan,
    fired: frozenset[str],
    patient: dict[str, Any],
    observed: dict[str, Any],
    covered_conditions: frozenset[str],
    ruleset: RulesetInfo,
) -> dict[str, Any]:
    """The result's document: plain data, with the shared items (frozen models the Plan keeps)
    in it. `Result.model_validate` makes it the Result in one call (far cheaper than one model per
    item); `Plan.json` writes it as the Result's JSON without building the Result."""
    by_kind: dict[str, dict[str, list[Rule]]] = defaultdict(lambda: defaultdict(list))
    notes: list[Note] = []
    # the rules that fired, in rule order (`fired` holds the probes' names too)
    hit = [plan.by_id[name] for name in sorted(fired & plan.by_id.keys(), key=plan.order.__getitem__)]
    superseded = {other for rule in hit for other in rule.supersedes}
    for rule in hit:
        if rule.id not in superseded:
            for drug in rule.drugs:
                by_kind[rule.kind][drug].append(rule)
            if rule.kind == "note" and not rule.only_with_off_label:
                notes.append(plan.note(rule))

    for drug, cautions in by_kind["caution"].items():
        by_kind["caution"][drug] = _one_dose(cautions)
    asked = {rule.id: _asked(rule, observed) for rule in hit if rule.kind == "caution"}
    condition = pack.diagnoses.entries[patient["condition"]].name
    tried = set(patient["failed_therapies"]) | set(patient["contraindicated_therapies"])
    ranked, excluded = [], []
    for drug, info in sorted(pack.drugs.items()):
        options, reasons = _decide(drug, info.name, condition, plan, by_kind, fired, observed)
        if options and drug not in tried:
            best, confirm = options[0]
            shown = [c for c in by_kind["caution"][drug] if not asked[c.id]]  # the rest: "before starting"
            critical = any(c.severity == "critical" for c in shown)
            off_label, *rest = proposal_key(best)[:3]
            ranked.append(((critical, off_label, bool(confirm), *rest), drug, info.name, [rule for rule, c in options if bool(c) == bool(confirm)], confirm, shown))
            continue
        if drug in tried:
            reasons.insert(0, plan.built_in(ALREADY_FAILED, f"{info.name} is recorded as failed or contraindicated for this patient: not proposed again."))
        elif not reasons:
            reasons.append(plan.built_in(NO_PROPOSAL, f"No active rule proposes {info.name} for {condition}."))
        excluded.append({"drug": drug, "name": info.name, "reasons": reasons})

    before_starting = _before_starting({entry[1]: by_kind["caution"][entry[1]] for entry in ranked}, asked, plan)
    candidates = [
        {
            "drug": drug,
            "name": name,
            "rank": rank,
            "label_status": best[0].label_status,
            "evidence": best[0].evidence,
            "rationale": best[0].message,
            "rules": [p.id for p in best],
            "citations": _citations(best, plan),
            "cautions": _cautions(shown, drug, plan, _not_assessed(by_kind["caution"][drug], patient, name, plan), patient),
            "conditional": bool(confirm),
            "confirm": confirm,
        }
        for rank, (_, drug, name, best, confirm, shown) in enumerate(sorted(ranked), start=1)
    ]
    on_label = any(c["label_status"] == "on_label" for c in candidates)
    for c in candidates:
        c["beside_on_label"] = on_label and c["label_status"] == "off_label"
    off_label_drugs = {c["drug"] for c in candidates if c["label_status"] == "off_label"}
    notes += [plan.note(r) for r in hit if r.only_with_off_label and off_label_drugs & set(r.drugs or off_label_drugs)]
    shown_rules = {c.rule for cand in candidates for c in cand["cautions"]}
    if patient["reproductive_potential"] is None and any("may_conceive" in r.facts for r in hit if r.id in shown_rules):
        low, high = pack.meta.policy.reproductive_age
        notes.append(plan.shared(POLICY, lambda: Note(rule=POLICY, message=(
            f"Site policy, not a label fact: reproductive potential was not given, so a woman aged {low}-{high} "
            "(or of unknown age) is taken to be of reproductive potential. Record reproductive potential to decide it."))))
    # no proposal is about the condition, a wider class of it, or one of its kinds (eczema: atopic dermatitis)
    kinds = {c for c in covered_conditions if patient["condition"] in pack.diagnoses.closures[c]}
    if not pack.diagnoses.closures[patient["condition"]] & covered_conditions and not kinds:
        notes.insert(0, plan.shared((NO_RULES_FOR_CONDITION, condition), lambda: Note(
            rule=NO_RULES_FOR_CONDITION, message=f"No rule in this pack proposes a JAK inhibitor for {condition}: no candidates.")))

    # The trace holds the rules that fired (`jakcds explain` shows the ones that did not, test by test).
    trace = [{"rule": r.id, "kind": r.kind, "fired": True, "matched": {f: observed[f] for f in r.facts}} for r in hit]
    return {"ruleset": ruleset, "patient": patient, "condition_name": condition, "candidates": candidates,
            "before_starting": before_starting, "excluded": excluded, "notes": notes, "trace": trace,
            "sources": _sources(candidates, [*notes, *(c for cand in candidates for c in cand["cautions"]),
                                            *(r for p in before_starting for r in p["rules"]), *(r for x in excluded for r in x["reasons"])], plan),
            "not_assessed": not_assessed(patient), "unmapped": [], "read_by_draft": [], "as_of": None}
