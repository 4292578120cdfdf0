"""Each rule's own examples: it fires on the `fires: true` patients and not on the others."""

import pytest

import jakcds
from conftest import RULES
from jakcds.review.cases import run_examples

OUTCOMES = run_examples(jakcds.evaluator(RULES))


@pytest.mark.parametrize("outcome", OUTCOMES, ids=[o.name for o in OUTCOMES])
def test_rule_example(outcome):
    assert outcome.status == "PASS", outcome.detail


def test_every_active_rule_has_examples_of_both_kinds(evaluator):
    for rule in evaluator.rules:
        kinds = {example.fires for example in rule.examples}
        assert True in kinds, f"{rule.id} needs an example that fires"
        assert rule.when is None or False in kinds, f"{rule.id} needs an example on which it must not fire"
