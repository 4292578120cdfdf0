"""Running the compiled ruleset on durable-rules, one short-lived session per evaluation.

We drive durable-rules' C extension directly (`durable_rules_engine`, which `durable.engine`
wraps): assert the fact, then start and complete each action it triggers, reading only the
action's name. The wrapper's per-action work (a JSON round trip of the state, a Closure with a
datetime, a Python callback) was ~80% of the engine's time; our actions only record that a rule
fired, so none of it is needed. What shared/knowledge/durable-rules.md measured still holds:
- no Host, so none of its endless timer threads and none of their races;
- `delete_state` segfaults in a session where no action ever completed, so a sentinel fact (with
  a no-op rule) is asserted first, in its own call; every session is deleted (at most 1024 may
  live at once);
- the extension never releases the GIL, so serialising evaluations behind one lock costs no
  throughput and rules out interleaved sessions;
- `delete_ruleset` frees nothing: a ruleset is created once per engine.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import durable_rules_engine as native

from .compiler import SENTINEL

_names = itertools.count(1)  # each engine's ruleset has its own name in the extension
NOT_HANDLED = 1  # assert_fact's result code when no rule matched the fact


class EngineError(RuntimeError):
    """durable-rules failed while evaluating (the engine errored)."""


class RuleEngine:
    """The compiled pack (one or more rulesets: compiler.chunked) loaded once into durable-rules;
    `run` is safe from any thread."""

    def __init__(self, rulesets: list[dict[str, Any]]):
        self._sids = itertools.count(1)
        self._lock = threading.Lock()
        # the extension takes each rule without its action ("run"): the action is the rule's name
        self._handles = [
            native.create_ruleset(f"jakcds-{next(_names)}", json.dumps(
                {name: {key: value for key, value in body.items() if key != "run"} for name, body in ruleset.items()},
                ensure_ascii=False))
            for ruleset in rulesets
        ]

    def run(self, fact: dict[str, Any]) -> frozenset[str]:
        """Assert the patient fact in a fresh session of each ruleset; the ids of the rules that fired."""
        with self._lock:
            sid = str(next(self._sids))
            return frozenset(name for handle in self._handles for name in _session(handle, sid, fact))


def _session(handle: int, sid: str, fact: dict[str, Any]) -> set[str]:
    try:
        _fire(handle, {"sid": sid, "t": SENTINEL})  # once an action completed, delete_state is safe
        try:
            return _fire(handle, {**fact, "sid": sid}) - {SENTINEL}
        finally:
            native.delete_state(handle, sid)
    except native.error as error:
        raise EngineError(f"durable-rules: {error}") from None


def _fire(handle: int, fact: dict[str, Any]) -> set[str]:
    """Assert one fact; start and complete every action it triggers; the rules that fired."""
    code, state = native.assert_fact(handle, json.dumps(fact, ensure_ascii=False))
    if code == NOT_HANDLED:
        return set()
    fired = set()
    started = native.start_action_for_state(handle, state)
    message = started[1] if started else None
    while message:
        fired.add(_action(message))
        message = native.complete_and_start_action(handle, state)
    return fired


def _action(message: str) -> str:
    """The action named by a started action's message, '{"RULE-ID":{...bindings}}'. Rule ids have
    no quote or backslash (the rule schema's pattern), so the name ends at the first quote."""
    if not message.startswith('{"'):
        raise EngineError(f"durable-rules: unexpected action message {message[:40]!r}")
    return message[2 : message.index('"', 2)]
