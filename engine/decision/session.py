"""Running the compiled ruleset on durable-rules: one live session per ruleset, reused.

We drive durable-rules' C extension directly (`durable_rules_engine`, which `durable.engine`
wraps): assert the fact, then start and complete each action it triggers, reading only the
action's name, then retract the fact. The wrapper's per-action work (a JSON round trip of the
state, a Closure with a datetime, a Python callback) was ~80% of the engine's time; our actions
only record that a rule fired, so none of it is needed.

Creating and deleting a session per evaluation was 46% of the engine's time
(shared/reviews/perf-2026-12.md §1): each ruleset keeps one session, and each evaluation asserts
its fact, drains the actions and retracts it. Every rule is one pattern over the one patient
fact, so what fires depends on that fact alone. What shared/knowledge/durable-rules.md measured
still holds:
- no Host, so none of its endless timer threads and none of their races;
- `delete_state` segfaults in a session where no action ever completed, so a session starts
  with a sentinel fact (with a no-op rule), asserted in its own call;
- the extension never releases the GIL, so serialising evaluations behind one lock costs no
  throughput (one session per thread measured no faster: scripts/bench.py) and rules out
  interleaved asserts in one session;
- `delete_ruleset` frees nothing: a ruleset is created once per engine.
After any engine error the session may hold part of the fact: it is deleted and started afresh.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import durable_rules_engine as native

from .compiler import SENTINEL

_names = itertools.count(1)  # each engine's ruleset has its own name in the extension
NOT_HANDLED = 1  # assert_fact's result code when no rule matched the fact (then not stored)
SID = "1"  # the one live session of each ruleset


class EngineError(RuntimeError):
    """durable-rules failed while evaluating (the engine errored)."""


class RuleEngine:
    """The compiled pack (one or more rulesets: compiler.chunked) loaded once into durable-rules,
    each with its live session; `run` is safe from any thread."""

    def __init__(self, rulesets: list[dict[str, Any]]):
        self._lock = threading.Lock()
        # the extension takes each rule without its action ("run"): the action is the rule's name
        self._handles = [
            native.create_ruleset(f"jakcds-{next(_names)}", json.dumps(
                {name: {key: value for key, value in body.items() if key != "run"} for name, body in ruleset.items()},
                ensure_ascii=False))
            for ruleset in rulesets
        ]
        for handle in self._handles:
            _start(handle)

    def run(self, fact: dict[str, Any]) -> frozenset[str]:
        """Assert the patient fact in each ruleset's session, then retract it; the ids of the
        rules that fired."""
        message = json.dumps({**fact, "sid": SID}, ensure_ascii=False)
        with self._lock:
            return frozenset(name for handle in self._handles for name in _evaluate(handle, message))


def _start(handle: int) -> None:
    """A fresh session: once the sentinel's action completed, delete_state is safe."""
    _fire(handle, json.dumps({"sid": SID, "t": SENTINEL}))


def _evaluate(handle: int, message: str) -> set[str]:
    try:
        fired = _fire(handle, message)
        native.retract_fact(handle, message)
        return fired
    except (native.error, EngineError) as error:
        native.delete_state(handle, SID)
        _start(handle)
        if isinstance(error, EngineError):
            raise
        raise EngineError(f"durable-rules: {error}") from None


def _fire(handle: int, message: str) -> set[str]:
    """Assert one fact; start and complete every action it triggers; the rules that fired."""
    code, state = native.assert_fact(handle, message)
    if code == NOT_HANDLED:
        return set()
    fired = set()
    started = native.start_action_for_state(handle, state)
    action = started[1] if started else None
    while action:
        fired.add(_action(action))
        action = native.complete_and_start_action(handle, state)
    return fired


def _action(message: str) -> str:
    """The action named by a started action's message, '{"RULE-ID":{...bindings}}'. Rule ids have
    no quote or backslash (the rule schema's pattern), so the name ends at the first quote."""
    if not message.startswith('{"'):
        raise EngineError(f"durable-rules: unexpected action message {message[:40]!r}")
    return message[2 : message.index('"', 2)]
