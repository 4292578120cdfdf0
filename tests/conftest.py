import os
from pathlib import Path

import pytest

import jakcds

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules"
CASES = REPO / "cases"
SEEDS = Path(os.environ.get("JAKCDS_SEEDS", REPO.parent / "shared" / "seeds"))

WENZEL = {
    "age": 69,
    "sex": "female",
    "condition": "chilblain_lupus_erythematosus",
    "failed_therapies": ["systemic_corticosteroids"],
    "contraindicated_therapies": [],
    "comorbidities": ["myelofibrosis", "thrombocytopenia"],
    "labs": {"platelets": 120},
    "medications": [],
    "pregnant": False,
    "breastfeeding": False,
    "smoking": "never",
}


@pytest.fixture(scope="session")
def evaluator() -> jakcds.Evaluator:
    """The repository's rule pack (so an edited rule is tested without reinstalling)."""
    return jakcds.evaluator(RULES)


@pytest.fixture(scope="session")
def pack(evaluator: jakcds.Evaluator) -> jakcds.Pack:
    return evaluator.pack


def fired(result: jakcds.Result) -> set[str]:
    return {entry.rule for entry in result.trace if entry.fired}
