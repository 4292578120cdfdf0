"""How deep durable-rules' walk of a ruleset's alpha network can go, so the compiler can split
rulesets before it is too deep.

durable-rules 2.0.28 walks the alpha network of each asserted fact depth first with a fixed
stack of 64 nodes (`handleAlpha` in src/rules/events.c, MAX_STACK_SIZE; error 303 on overflow).
Visiting a node pushes every child that matches the fact: each `$nex` child whose property is
absent, each `$or`'s forward node (always), and each hash child whose test holds. The children
are visited last pushed first, so a node whose k children match leaves k - 1 of them waiting
while the walk goes down the last one. Which children match depends on the patient, so the
bound here assumes the worst a fact can do: on one property, the `$nex` tests (property absent)
or the others (present), and of its equality tests only those whose values durable-rules takes
as equal (true == 1 == "true") at once.

The mirror follows the network's construction (src/rules/rete.c, createAlpha and findAlpha): a
test is a child of the node before it in its `$and`, shared with an identical test (property,
operator, value) under the same node; an `$or` adds a forward node, never shared, that each
branch's last node links to and that the tests after the `$or` hang from.
"""

from __future__ import annotations

import json
import operator
from collections import Counter, defaultdict
from typing import Any

MAX_STACK = 64  # durable-rules' MAX_STACK_SIZE (src/rules/events.c)
NEX = "$nex"
EQ = "$eq"
_COMPARE = {"$lt": operator.lt, "$lte": operator.le, "$gt": operator.gt, "$gte": operator.ge}
_OPERATORS = ("$eq", "$neq", "$lt", "$lte", "$gt", "$gte", "$ex", "$nex", "$mt", "$imt", "$iany", "$iall")


class Node:
    __slots__ = ("test", "tests", "forwards", "parents", "depth")

    def __init__(self, test: tuple[str, str, Any] | None = None) -> None:
        self.test = test  # (property, operator, value); None: the root or a forward node
        self.tests: dict[tuple[str, str, str], Node] = {}  # (property, operator, value as JSON) -> child
        self.forwards: list[Node] = []  # the forward nodes of `$or`s whose branch ends here
        self.parents: list[Node] = []
        self.depth: int | None = None  # the walk's worst stack below this node (None: to compute)

    def matching(self) -> int:
        """The most children one fact can make match at once."""
        absent: Counter[str] = Counter()
        present: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for child in self.tests.values():
            assert child.test is not None  # a child under tests is a test node
            prop, op, value = child.test
            if op == NEX:
                absent[prop] += 1
            else:
                present[prop].append((op, value))
        at_once = {prop: _at_once(tests) for prop, tests in present.items()}
        return len(self.forwards) + sum(max(absent[p], at_once.get(p, 0)) for p in absent.keys() | at_once.keys())

    def children(self) -> list[Node]:
        return [*self.tests.values(), *self.forwards]


def _at_once(tests: list[tuple[str, Any]]) -> int:
    """The most of these tests of one property that one value can pass: exact for equalities and
    numeric comparisons (the value tried at every threshold and between them), else every
    test but all-but-one of each group of equalities (a value equals one group only)."""
    numeric = [(op, value) for op, value in tests if op in _COMPARE and _is_number(value)]
    equal = Counter(_coerced(value) for op, value in tests if op == EQ)
    if len(numeric) + sum(equal.values()) < len(tests) or not all(isinstance(key, float) for key in equal):
        return len(tests) - sum(equal.values()) + max(equal.values(), default=0)
    points = sorted({*(float(v) for _, v in numeric), *equal})
    tries = [points[0] - 1, *points, *((a + b) / 2 for a, b in zip(points, points[1:], strict=False)), points[-1] + 1]
    return max(equal[x] + sum(_COMPARE[op](x, float(v)) for op, v in numeric) for x in tries)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerced(value: Any) -> Any:
    """An equality value as durable-rules compares it (true == 1 == "true"; "7" == 7)."""
    if isinstance(value, str):
        try:
            return float({"true": 1, "false": 0}.get(value, value))
        except ValueError:
            return value
    return float(value) if isinstance(value, (bool, int, float)) else json.dumps(value, sort_keys=True)


class AlphaNetwork:
    """The alpha network of a ruleset being packed, and the deepest its walk can go (`depth`)."""

    def __init__(self) -> None:
        self.root = Node()

    def add(self, rule: dict[str, Any]) -> None:
        """A durable rule {"all": [{alias: pattern}, ...]}: each pattern hangs from the root."""
        for pattern in rule["all"]:
            for expression in pattern.values():
                self._add(expression, self.root)

    def depth(self) -> int:
        return _depth(self.root)

    def _add(self, expression: dict[str, Any], parent: Node) -> Node:
        """The node an expression ends on, below parent (createAlpha)."""
        node = parent
        for key, value in expression.items():  # several keys: one after another, as `$and`
            node = self._add_one(key, value, node)
        return node

    def _add_one(self, key: str, value: Any, parent: Node) -> Node:
        if key == "$and":
            for item in value:
                parent = self._add(item, parent)
            return parent
        if key == "$or":
            forward = Node()
            for item in value:
                end = self._add(item, parent)
                end.forwards.append(forward)
                forward.parents.append(end)
                _changed(end)
            return forward
        if key in _OPERATORS:
            ((prop, operand),) = value.items()
            return self._test(parent, prop, key, operand)
        return self._test(parent, key, EQ, value)

    def _test(self, parent: Node, prop: str, op: str, value: Any) -> Node:
        """The shared node of a test below parent (findAlpha)."""
        key = (prop, op, json.dumps(value, sort_keys=True))
        node = parent.tests.get(key)
        if node is None:
            node = parent.tests[key] = Node((prop, op, value))
            node.parents.append(parent)
            _changed(parent)
        return node


def _changed(node: Node) -> None:
    """Forget the depth of a node whose children changed, and of all above it (a node whose depth
    is known has known depths below it, so the walk up stops at the first unknown one)."""
    pending = [node]
    while pending:
        current = pending.pop()
        if current.depth is not None:
            current.depth = None
            pending.extend(current.parents)


def _depth(node: Node) -> int:
    """The most stack entries the walk needs from this node down, the node included."""
    if node.depth is None:
        children = node.children()
        node.depth = max(1, node.matching() - 1 + max(map(_depth, children))) if children else 1
    return node.depth
