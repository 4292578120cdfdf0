"""Interaction classes as data (issue 22): every interacting medicine cites the sheet's FDA class
rows, rules test classes, and adding a medicine of a class never silences what was said."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

import jakcds
from conftest import RULES, SEEDS

EVALUATOR = jakcds.evaluator(RULES)
PACK = EVALUATOR.pack
SHEET = (SEEDS.parent / "knowledge" / "us-labels.md").read_text(encoding="utf-8")
CLASS_ROWS = SHEET[SHEET.index("### 17.1"):SHEET.index("### 17.2")] + SHEET[SHEET.index("### 18.1"):SHEET.index("### 18.2")]
CLASSES = {code for code in PACK.treatments.entries if re.search(r"(cyp\w+_(inhibitor|inducer)|oat3_inhibitor|_disputed)$", code)}
MEMBERS = sorted(code for code, entry in PACK.treatments.entries.items() if set(entry.is_a) & CLASSES)
SEVERITY = {"info": 0, "warning": 1, "critical": 2}


def test_every_member_of_an_interaction_class_cites_the_sheets_class_rows():
    assert len(MEMBERS) > 60
    for code in MEMBERS:
        entry = PACK.treatments.entries[code]
        assert re.match(r"us-labels\.md §1[78]\.1(/§18\.1)? \(VERIFIED-S\)", entry.source), code
        named = entry.name.split(" (")[0].lower().replace("st. john's", "st. john's")
        assert named in CLASS_ROWS.lower(), f"{code}: {named!r} is not in us-labels.md §17.1 / §18.1"


def test_rules_test_interaction_classes_not_single_interacting_drugs():
    """A rule names a class; only a label that names the drug itself (ruxolitinib and fluconazole's dose) names it."""
    named = {test.value for rule in PACK.rules if rule.when for test in rule.when.tests() if test.fact == "medications"}
    assert named & set(MEMBERS) <= {"fluconazole"}


def findings(result) -> dict[str, int]:
    """Per drug, the most severe thing said about it: a caution's severity, or 3 when excluded."""
    said = {c.drug: max((SEVERITY[x.severity] for x in c.cautions), default=-1) for c in result.candidates}
    return said | {x.drug: 3 for x in result.excluded if any(r.rule.startswith(("LABEL", "SEED")) for r in x.reasons)}


patients = st.fixed_dictionaries(
    {"condition": st.sampled_from(["atopic_dermatitis", "alopecia_areata", "dermatomyositis", "vitiligo", "chilblain_lupus_erythematosus"])},
    optional={
        "age": st.integers(12, 90),
        "severity": st.sampled_from(["moderate", "severe"]),
        "failed_therapies": st.lists(st.sampled_from(["dupilumab", "methotrexate", "systemic_corticosteroids"]), max_size=2),
        "comorbidities": st.lists(st.sampled_from(["myelofibrosis"]), max_size=1),
        "medications": st.lists(st.sampled_from(MEMBERS), max_size=2),
        "labs": st.fixed_dictionaries({}, optional={"platelets": st.integers(60, 400)}),
    },
)


@settings(max_examples=200, deadline=None)
@given(patients, st.sampled_from(MEMBERS))
def test_adding_an_interacting_medicine_never_silences_a_caution(patient, medicine):
    before = EVALUATOR.evaluate(patient)
    after = EVALUATOR.evaluate({**patient, "medications": sorted({*patient.get("medications", []), medicine})})
    fired = lambda result: {t.rule for t in result.trace if t.fired and t.kind in ("caution", "exclude")}  # noqa: E731
    assert fired(before) <= fired(after)
    was, now = findings(before), findings(after)
    assert all(now.get(drug, 3) >= level for drug, level in was.items())
