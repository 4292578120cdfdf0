"""Each rule's own examples: it fires on the `fires: true` patients and not on the others."""

import pytest

from conftest import RULES, fired
import jakcds

PACK = jakcds.load_pack(RULES)
EXAMPLES = [(rule.id, i, ex) for rule in PACK.rules for i, ex in enumerate(rule.examples)]


@pytest.mark.parametrize("rule_id, index, example", EXAMPLES, ids=[f"{r}#{i}" for r, i, _ in EXAMPLES])
def test_rule_example(evaluator, rule_id, index, example):
    result = evaluator.evaluate(example.patient)
    assert (rule_id in fired(result)) is example.fires, example.note or example.patient


def test_conditional_active_rules_have_both_kinds_of_example():
    for rule in PACK.active():
        if rule.when is not None:
            kinds = {example.fires for example in rule.examples}
            assert kinds == {True, False}, f"{rule.id} needs an example that fires and one that must not"
