"""Alert burden: prints measured numbers (no assertions). Run: python scripts/burden.py [--cases DIR]

Over the golden cases (JSON profiles and FHIR bundles; refused ones skipped) and the example CDS
Hooks requests: cautions per candidate and per result, the share of cautions on off-label
candidates of results that also propose on-label ones (in the result, and on what is shown: a
card or the first screen), before-starting prompts per result, duplicate prompts, lines of the
default terminal view at 80 columns (the first screen where there is one; target <= 24 for 80% of
the cases), profile field names shown raw in it and in the full view (target 0), and cards per
hook request. It measures whichever jakcds is imported: for another checkout's figures run it
from there, e.g. `cd /tmp/x && python -c 'import runpy, sys; from tests.conftest import *;
sys.argv[1:] = ["--cases", "/path/to/cases"]; runpy.run_path("/path/to/scripts/burden.py",
run_name="__main__")'`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
from collections import Counter
from pathlib import Path

import yaml
from rich.console import Console

import jakcds
from jakcds.ehr.service import HookRequest, Service, Settings
from jakcds.review.cases import case_dirs, evaluate_case
from jakcds.views import text

ROOT = Path(__file__).resolve().parents[1]


def text_lines(result, view=None) -> list[str]:
    """The text view at 80 columns: the default terminal view unless `view` is given."""
    out = io.StringIO()
    (view or getattr(text, "first_screen", text.render))(result, Console(file=out, width=80, color_system=None, force_terminal=False))
    return out.getvalue().splitlines()


def raw_fields(lines: list[str], fields: list[str]) -> int:
    """Profile field names shown as they are (tb_status, cyp2c9, egfr), not in words."""
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, fields)) + r")(?![\w-])")
    return sum(len(pattern.findall(line)) for line in lines)


def off_label_beside_on_label(result) -> tuple[int, int]:
    """Cautions on off-label candidates of a result that proposes on-label ones: in the result, and
    on what is shown (an off-label candidate marked beside_on_label gets one line and no card)."""
    if not any(c.label_status == "on_label" for c in result.candidates):
        return 0, 0
    aside = [c for c in result.candidates if c.label_status == "off_label"]
    return sum(len(c.cautions) for c in aside), sum(len(c.cautions) for c in aside if not getattr(c, "beside_on_label", False))


def duplicates(result, asking: set[str]) -> int:
    """Asking rules shown on more than one candidate (each extra showing counts), plus facts asked twice."""
    shown = Counter(c.rule for cand in result.candidates for c in cand.cautions if c.rule in asking)
    facts = Counter(p.fact for p in result.before_starting)
    return sum(n - 1 for n in shown.values()) + sum(n - 1 for n in facts.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=Path, default=ROOT / "cases")
    args = parser.parse_args()
    ev = jakcds.evaluator()
    asking = {r.id for r in ev.rules if r.asks}
    # field names that are not words a clinician would write (age, sex, severity are)
    fields = sorted(f for f in ev.pack.catalogue if "_" in f or re.search(r"\d", f) or f == "egfr")
    per_candidate, per_result, shown_per_result, prompts, dups, lines, details = [], [], [], [], 0, [], []
    aside = aside_shown = raw = raw_details = 0
    for directory in case_dirs(args.cases):
        try:
            result = evaluate_case(directory, ev)
        except jakcds.InputError:
            continue  # a case that must be refused
        per_candidate += [len(c.cautions) for c in result.candidates]
        per_result.append(sum(len(c.cautions) for c in result.candidates))
        shown_per_result.append(sum(len(c.cautions) for c in result.candidates if not getattr(c, "beside_on_label", False)))
        in_result, on_screen = off_label_beside_on_label(result)
        aside, aside_shown = aside + in_result, aside_shown + on_screen
        prompts.append(len(result.before_starting))
        dups += duplicates(result, asking)
        shown = text_lines(result)
        lines.append(len(shown))
        raw += raw_fields(shown, fields)
        full = text_lines(result, text.render)
        details.append(len(full))
        raw_details += raw_fields(full, fields)
    hooks = yaml.safe_load((args.cases / "hooks" / "cards.yaml").read_text())
    service = Service(ev, Settings("http://127.0.0.1", None, as_of=hooks["as_of"]))
    cards = {}
    for name, wanted in sorted(hooks["requests"].items()):
        request = HookRequest.model_validate(json.loads((args.cases / "hooks" / name).read_text()))
        cards[name] = len(service.call(wanted["service"], request, asyncio.run(service.gather(request))))
    total = sum(per_result)
    fits = sum(n <= 24 for n in lines)
    print(f"cases: {len(lines)}, candidates: {len(per_candidate)}")
    print(f"cautions per candidate: median {statistics.median(per_candidate):g}, max {max(per_candidate)}")
    print(f"cautions per result: mean {statistics.mean(per_result):.1f}, median {statistics.median(per_result):g}, max {max(per_result)}; "
          f"shown (cards, first screen): mean {statistics.mean(shown_per_result):.1f}")
    print(f"cautions on off-label candidates beside on-label ones: {aside} of {total} ({aside / total:.0%}) in the result, "
          f"{aside_shown} shown")
    print(f"before-starting prompts per result: median {statistics.median(prompts):g}, max {max(prompts)}")
    print(f"duplicate prompts: {dups}")
    print(f"default terminal view at 80 columns: median {statistics.median(lines):g} lines, max {max(lines)}; "
          f"<= 24 lines: {fits} of {len(lines)} ({fits / len(lines):.0%})")
    print(f"full view (--details): median {statistics.median(details):g} lines, max {max(details)}")
    print(f"field names shown raw: {raw} in the default view, {raw_details} in the full view")
    print("cards per hook request: " + ", ".join(f"{name} {n}" for name, n in cards.items()))


if __name__ == "__main__":
    main()
