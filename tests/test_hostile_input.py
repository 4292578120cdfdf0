"""Hostile input (red team 2026-12, F9): whatever a caller passes, the library answers a Result or
an InputError of one bounded line (never RecursionError, OverflowError, AttributeError...), and the
CLI exits 2 with one line, never a traceback. `scripts/bench.py --fuzz-only` runs 10,000 + 10,000."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jakcds
from conftest import CASES, RULES
from jakcds.decision.evaluate import MESSAGE_MAX
from jakcds.ehr.chart import evaluate_chart

EVALUATOR = jakcds.evaluator(RULES)
FIELDS = sorted(jakcds.Patient.model_fields)
CHARTS = [json.loads(path.read_text()) for path in sorted(CASES.glob("*/bundle.json"))]
JAKCDS = str(Path(sys.executable).with_name("jakcds"))


def nested(depth, leaf=1):
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"value": leaf}
    return leaf


hostile_values = st.one_of(
    st.integers(),  # unbounded: past the float range too
    st.sampled_from([10**400, -(10**400), 10**5000, float("nan"), float("inf"), 1e-05, 1e308]),
    st.floats(),
    st.text(max_size=20),
    st.integers(100, 3000).map(nested),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3), max_leaves=8),
)
labs = st.dictionaries(st.sampled_from(sorted(EVALUATOR.pack.labs) + ["colour"]),
                       hostile_values | st.fixed_dictionaries({"value": hostile_values, "unit": hostile_values}), max_size=3)


def answered(call):
    """A Result, or one bounded line of InputError: nothing else escapes."""
    try:
        call()
    except jakcds.InputError as error:
        assert str(error) and "\n" not in str(error) and len(str(error)) <= MESSAGE_MAX


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), hostile_values, max_size=4), labs)
def test_a_hostile_profile_gives_a_result_or_an_input_error(profile, lab_values):
    answered(lambda: EVALUATOR.evaluate({"condition": "dermatomyositis", **profile, "labs": lab_values}))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(CHARTS) - 1), st.integers(0, 10**6), hostile_values, st.booleans())
def test_a_hostile_chart_gives_a_result_or_an_input_error(which, where, value, whole):
    """One value deep inside a shipped chart replaced (or the whole chart, e.g. a list at the top)."""
    chart = copy.deepcopy(CHARTS[which])
    if whole:
        chart = value
    else:
        paths = []
        stack = [(chart, [])]
        while stack:
            node, path = stack.pop()
            paths.append(path)
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
            stack.extend((child, path + [key]) for key, child in items)
        path = paths[1:][where % (len(paths) - 1)]
        parent = chart
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    answered(lambda: evaluate_chart(EVALUATOR, chart))


@pytest.mark.parametrize("text", [
    '{"condition": "dermatomyositis", "labs": {"platelets": 1' + "0" * 400 + "}}",
    '{"condition": "dermatomyositis", "labs": {"platelets": 1' + "0" * 5000 + "}}",
    '{"condition": "dermatomyositis", "weight_kg": 1' + "0" * 400 + "}",
    '{"condition": "dermatomyositis", "pregnant": ' + "[" * 990 + "]" * 990 + "}",
    '{"condition": "dermatomyositis", "labs": {"platelets": {"value": ' + "[" * 990 + "]" * 990 + ', "unit": "x"}}}',
    '[' * 50 + ']' * 50,
    '{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": ' + "[" * 900 + "]" * 900 + "}]}",
])
def test_the_cli_refuses_hostile_input_in_one_line(text):
    done = subprocess.run([JAKCDS, "evaluate", "-", "--format", "json"], input=text, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and not done.stdout
