"""Running the compiled ruleset on durable-rules, one short-lived session per evaluation.

Built on what shared/knowledge/durable-rules.md measured for 2.0.28:
- the default Host starts endless timer threads whose dispatcher races with our calls, so
  `_run` is disabled and actions run synchronously inside `assert_fact`;
- `delete_state` segfaults in a session where no action ever completed, so a sentinel fact
  (with a no-op rule) is asserted first, in its own call; every session is deleted (at most
  1024 may live at once);
- exceptions in actions are swallowed into the session state: we read it and raise;
- the extension never releases the GIL, so serialising evaluations behind one lock costs no
  throughput and rules out interleaved sessions.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from typing import Any

from durable import engine as durable
from durable.engine import MessageNotHandledException

from .compiler import SENTINEL

RULESET = "jakcds"


class EngineError(RuntimeError):
    """durable-rules failed while evaluating (an action raised, or the engine errored)."""


class _SyncHost(durable.Host):
    """A Host without background dispatch threads; every action is our recorder."""

    def __init__(self, action: Callable[[str], Callable[[Any], None]]):
        self._make_action = action
        super().__init__()

    def _run(self) -> None:  # no timer threads: we never use durable timers
        pass

    def get_action(self, action_name: str) -> Callable[[Any], None]:
        return self._make_action(action_name)


class RuleEngine:
    """The compiled pack loaded once into durable-rules; `run` is safe from any thread."""

    def __init__(self, ruleset: dict[str, Any]):
        self._fired: dict[str, set[str]] = {}
        self._sids = itertools.count(1)
        self._lock = threading.Lock()
        self._host = _SyncHost(self._recorder)
        self._host.set_rulesets({RULESET: copy.deepcopy(ruleset)})  # durable pops "run" from the dicts

    def _recorder(self, rule_id: str) -> Callable[[Any], None]:
        def record(c: Any) -> None:  # exactly one parameter: two would make durable treat it as async
            if rule_id != SENTINEL:
                self._fired[c.s.sid].add(rule_id)

        return record

    def run(self, fact: dict[str, Any]) -> frozenset[str]:
        """Assert the patient fact in a fresh session; return the ids of the rules that fired."""
        with self._lock:
            sid = str(next(self._sids))
            self._fired[sid] = set()
            try:
                self._host.assert_fact(RULESET, {"sid": sid, "t": SENTINEL})
            except BaseException:
                self._fired.pop(sid)
                raise
            try:
                try:
                    state = self._host.assert_fact(RULESET, {**fact, "sid": sid})
                except MessageNotHandledException:
                    state = None  # no rule matched the patient
                if state and "exception" in state:
                    raise EngineError(f"a rule action failed in durable-rules: {state['exception']}")
                return frozenset(self._fired[sid])
            finally:
                self._fired.pop(sid)
                self._host.delete_state(RULESET, sid)
