"""Golden cases in cases/: the parts of each result that matter are pinned down."""

import json
import shutil

import pytest

import jakcds

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


def test_the_first_screen_fits_80_by_24_for_most_golden_cases_and_never_shows_a_field_name(evaluator):
    """Issue 23: <= 24 lines at 80 columns for at least 80% of the golden cases; no line wider;
    no profile field name (tb_status, cyp2c9, egfr, ...) in any of them."""
    import io
    import re

    from rich.console import Console

    from jakcds.review.cases import evaluate_case
    from jakcds.views.text import first_screen

    fields = [f for f in evaluator.pack.catalogue if "_" in f or re.search(r"\d", f) or f == "egfr"]
    raw = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, fields)) + r")(?![\w-])")
    heights = []
    for directory in case_dirs(CASES):
        try:
            result = evaluate_case(directory, evaluator)
        except jakcds.InputError:
            continue
        out = io.StringIO()
        first_screen(result, Console(file=out, width=80, color_system=None, force_terminal=False))
        lines = out.getvalue().splitlines()
        heights.append(len(lines))
        assert all(len(line.rstrip()) <= 80 for line in lines) and not raw.search(out.getvalue()), (directory.name, out.getvalue())
    assert sum(h <= 24 for h in heights) >= 0.8 * len(heights), heights
