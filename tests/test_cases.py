"""Golden cases in cases/: the parts of each result that matter are pinned down."""

import json
import shutil

import pytest

from conftest import CASES
from jakcds.review.cases import case_dirs, run_case

DIRS = case_dirs(CASES)


def test_the_required_cases_are_there():
    names = {d.name for d in DIRS}
    assert {"wenzel-chilblain-lupus", "dermatomyositis-not-refractory", "unknown-code", "bad-unit"} <= names
    assert len(DIRS) >= 12


@pytest.mark.parametrize("directory", DIRS, ids=[d.name for d in DIRS])
def test_golden_case(directory, evaluator):
    outcome = run_case(directory, evaluator)
    assert outcome.status == "PASS", f"{directory.name}\n{outcome.detail}"


def test_a_broken_case_fails_with_a_diff(tmp_path, evaluator):
    broken = tmp_path / "wenzel"
    shutil.copytree(CASES / "wenzel-chilblain-lupus", broken)
    patient = json.loads((broken / "patient.json").read_text())
    patient["comorbidities"] = ["thrombocytopenia"]  # without myelofibrosis, no ruxolitinib
    (broken / "patient.json").write_text(json.dumps(patient))
    outcome = run_case(broken, evaluator)
    assert not outcome.passed
    assert outcome.detail.startswith("--- expected") and "\n-- drug: ruxolitinib" in outcome.detail
