"""The rule format: what a rule file under rules/ may say, validated on load.

A rule file is a YAML list of rules. Conditions (`when`) are data: tests of one patient fact
(`{fact: platelets, lt: 50}`) combined with `all` / `any`. Validation needs the pack's fact
catalogue, vocabularies, drugs and sources, passed as context {"catalogue", "pack"}.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from .vocabulary import UnknownCode, canonical_number

Severity = Literal["info", "warning", "critical"]
Evidence = Literal["label", "case_series", "case_report", "expert_opinion"]
LabelStatus = Literal["on_label", "off_label"]
# Grades of shared/knowledge/us-labels.md. Only the first two may back an active rule.
Grade = Literal["VERIFIED-L", "VERIFIED-S", "NON-US", "UNVERIFIED"]
ACTIVE_GRADES = ("VERIFIED-L", "VERIFIED-S")

# Operator -> fact types it applies to. Nothing else is accepted: durable-rules would take an
# unknown operator as a field name and silently never match.
OPERATORS: dict[str, tuple[str, ...]] = {
    "has": ("codes",),
    "lacks": ("codes",),
    "eq": ("enum", "bool", "number"),
    "in": ("enum",),
    "lt": ("number",),
    "lte": ("number",),
    "gt": ("number",),
    "gte": ("number",),
    "known": ("number", "enum", "bool"),
}
# defer_build: validators are built on first use, not at import
Strict = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Test(BaseModel):
    """One test of one fact, e.g. {fact: platelets, lt: 50} or {fact: comorbidities, has: myelofibrosis}."""

    model_config = Strict
    fact: str
    has: str | None = None
    lacks: str | None = None
    eq: str | bool | int | float | None = None
    in_: list[str] | None = Field(None, alias="in", min_length=1)
    lt: int | float | None = None
    lte: int | float | None = None
    gt: int | float | None = None
    gte: int | float | None = None
    known: bool | None = None

    @property
    def op(self) -> str:
        return next(name for name in OPERATORS if getattr(self, _attr(name)) is not None)

    @property
    def value(self) -> Any:
        return getattr(self, _attr(self.op))

    @model_validator(mode="after")
    def _valid(self, info: ValidationInfo) -> Test:
        given = [name for name in OPERATORS if getattr(self, _attr(name)) is not None]
        if len(given) != 1:
            raise ValueError(f"a test needs exactly one operator of {', '.join(OPERATORS)}; got {given or 'none'}")
        spec = _context(info)["catalogue"].get(self.fact)
        if spec is None:
            raise ValueError(f"unknown fact {self.fact!r} (known: {', '.join(_context(info)['catalogue'])})")
        op = given[0]
        if spec.type not in OPERATORS[op]:
            raise ValueError(f"operator {op!r} does not apply to {spec.type} fact {self.fact!r}")
        if spec.type == "codes":
            try:
                getattr(_context(info)["pack"], spec.vocabulary).check(self.value)
            except UnknownCode as error:
                raise ValueError(str(error)) from None
        values = self.value if op == "in" else [self.value]
        if spec.type == "enum" and op != "known" and not set(values) <= set(spec.values):
            raise ValueError(f"{self.fact} takes {', '.join(spec.values)}; got {self.value!r}")
        if spec.type == "bool" and op == "eq" and not isinstance(self.value, bool):
            raise ValueError(f"{self.fact} is true or false; got {self.value!r}")
        if spec.type == "number" and op == "eq" and isinstance(self.value, (bool, str)):
            raise ValueError(f"{self.fact} is a number; got {self.value!r}")
        if spec.type == "number" and op != "known":
            try:  # a threshold is a number the engine can compare with a fact: not NaN, not infinite
                canonical_number(self.value)
            except UnknownCode as error:
                raise ValueError(f"{self.fact} {op} {error}") from None
        return self

def _context(info: ValidationInfo) -> dict[str, Any]:
    """The pack and catalogue a rule is validated against (load_pack always passes them)."""
    if info.context is None:
        raise RuntimeError("rules are validated with the pack as context; use load_pack()")
    return info.context


def _attr(op: str) -> str:
    return "in_" if op == "in" else op


def _kind(value: Any) -> str:
    return "test" if isinstance(value, Test) or (isinstance(value, dict) and "fact" in value) else "group"


Condition = Annotated[Annotated[Test, Tag("test")] | Annotated["Group", Tag("group")], Discriminator(_kind)]


class Group(BaseModel):
    """all: every condition holds; any: at least one holds."""

    model_config = Strict
    all_: list[Condition] | None = Field(None, alias="all", min_length=1)
    any_: list[Condition] | None = Field(None, alias="any", min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Group:
        if (self.all_ is None) == (self.any_ is None):
            raise ValueError("a group needs exactly one of 'all' or 'any'")
        return self

    @property
    def items(self) -> list[Test | Group]:
        return self.all_ if self.all_ is not None else self.any_  # type: ignore[return-value]

    def tests(self) -> Iterator[Test]:
        for item in self.items:
            yield from tests_of(item)


def tests_of(node: Test | Group) -> Iterator[Test]:
    """The tests of a test (itself) or of a group (all of them, nested)."""
    return iter([node]) if isinstance(node, Test) else node.tests()


class Citation(BaseModel):
    model_config = Strict
    source: str
    locator: str = Field(min_length=1)
    quote: str = Field(min_length=10)
    grade: Grade | None = None  # label sources only: the fact's grade in us-labels.md
    # quote: the source's words (for a label, a quotation the sheet holds in quote marks);
    # record: the sheet's structured record of the label (an openFDA field, a summary), not its words
    kind: Literal["quote", "record"] = "quote"

    @model_validator(mode="after")
    def _source_exists(self, info: ValidationInfo) -> Citation:
        sources = _context(info)["pack"].sources
        if self.source not in sources:
            raise ValueError(f"unknown source {self.source!r} (known: {', '.join(sources)})")
        if sources[self.source].kind == "label" and self.grade is None:
            raise ValueError(f"a citation of label source {self.source!r} needs a grade ({', '.join(get_args(Grade))})")
        if sources[self.source].kind != "label" and self.grade is not None:
            raise ValueError(f"grade applies to label sources only, not {self.source!r}")
        return self


class Example(BaseModel):
    """A patient profile on which the rule must (fires: true) or must not (fires: false) fire."""

    model_config = Strict
    fires: bool
    patient: dict[str, Any]
    note: str = ""
    todo: str = ""  # a known gap: reported as TODO, not a failure


class Rule(BaseModel):
    model_config = Strict
    id: str = Field(pattern=r"^[A-Z]+(-[A-Z]+)*-\d{3}$")
    title: str = Field(min_length=5)
    status: Literal["active", "draft", "deprecated"]
    kind: Literal["propose", "caution", "exclude", "note"]
    drugs: list[str] = []
    when: Group | None = None  # None: the rule always applies (e.g. a drug's standing caution)
    severity: Severity = "info"
    message: str = Field(min_length=10)
    evidence: Evidence
    label_status: LabelStatus | None = None  # propose only
    scope: Literal["all", "off_label"] = "all"  # exclude only: off_label spares on-label proposals
    # caution only: the facts whose absence this rule reports; the result asks for each once, in
    # its "before starting" list, instead of repeating the caution on every candidate
    asks: list[str] = []
    # rules this one replaces when both fire (an organ-impairment dose band replaces the
    # normal-organ band): one statement per question, never two starting doses
    supersedes: list[str] = []
    # caution only: the dose this rule states for its drug, in short ("5 mg once daily"); two that
    # differ must not fire together unless one supersedes the other (`jakcds rules lint` checks)
    dose: str = ""
    # caution only: this rule changes or withholds its drug's starting dose without stating one
    # ("reduce by about 50%", "avoid"): in a result it replaces every dose its drug's other
    # cautions state, so a patient never reads a starting dose beside it
    changes_dose: bool = False
    # note only: shown only when an off-label candidate is (one of its drugs, if it names any)
    only_with_off_label: bool = False
    citations: list[Citation] = Field(min_length=1)
    examples: list[Example] = []
    author: str = ""
    reviewed_by: str = ""
    created: datetime.date | None = None
    modified: datetime.date | None = None
    next_review: datetime.date | None = None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Rule:
        drugs = _context(info)["pack"].drugs
        for drug in self.drugs:
            if drug not in drugs:
                raise ValueError(f"unknown drug {drug!r} (known: {', '.join(drugs)})")
        if self.kind != "note" and not self.drugs:
            raise ValueError(f"a {self.kind} rule names the drug(s) it concerns")
        if (self.kind == "propose") != (self.label_status is not None):
            raise ValueError("label_status is required for propose rules and only for them")
        if self.scope != "all" and self.kind != "exclude":
            raise ValueError("scope applies to exclude rules only")
        if self.only_with_off_label and self.kind != "note":
            raise ValueError("only_with_off_label applies to note rules only")
        if self.asks and self.kind != "caution":
            raise ValueError("asks applies to caution rules only")
        if self.dose and self.kind != "caution":
            raise ValueError("dose applies to caution rules only (a proposal's message gives the usual dose)")
        if self.changes_dose and (self.kind != "caution" or self.dose):
            raise ValueError("changes_dose applies to caution rules that state no dose")
        unknown_tested = {t.fact for t in self.when.tests() if t.known is False} if self.when and self.asks else set()
        if not set(self.asks) <= unknown_tested:
            raise ValueError(f"asks {sorted(set(self.asks) - unknown_tested)}: a rule asks only for facts it tests as unknown (known: false)")
        return self

    @field_validator("citations")
    @classmethod
    def _verified_if_active(cls, citations: list[Citation], info: ValidationInfo) -> list[Citation]:
        # reads `status`, which is declared (so validated) before `citations`
        if info.data.get("status") == "active":
            for index, citation in enumerate(citations):
                if citation.grade not in (None, *ACTIVE_GRADES):
                    raise ValueError(
                        f"citation {index} is graded {citation.grade}: an active rule may cite only "
                        f"{' or '.join(ACTIVE_GRADES)} facts (make the rule status: draft)"
                    )
        return citations

    @cached_property
    def citation_docs(self) -> list[dict[str, str]]:
        """The citations as plain data, for results (built once per rule)."""
        return [citation.model_dump() for citation in self.citations]

    @cached_property
    def facts(self) -> list[str]:
        """The facts this rule reads, sorted."""
        return sorted({test.fact for test in self.when.tests()}) if self.when else []

    @cached_property
    def parts(self) -> list[Test | Group]:
        """The conditions that must all hold: the items of a top-level `all`, else the one `any`."""
        if self.when is None:
            return []
        return self.when.items if self.when.all_ is not None else [self.when]

    @cached_property
    def specificity(self) -> int:
        """How many fact tests must hold for the rule to fire (an `any` counts its cheapest
        branch): a rule fitted to more of the patient's profile ranks its drug higher."""

        def count(node: Test | Group) -> int:
            if isinstance(node, Test):
                return 1
            counts = [count(item) for item in node.items]
            return sum(counts) if node.all_ is not None else min(counts)

        return count(self.when) if self.when else 0


Group.model_rebuild()
