"""Alert burden: prints measured numbers (no assertions). Run: python scripts/burden.py [--cases DIR]

Over the golden patients (JSON profiles) and the example CDS Hooks requests:
cautions per candidate (median, max), before-starting prompts per result, duplicate prompts (one
asking rule shown on more than one candidate, or one fact asked twice), lines of the text view at
80 columns (all, and the Wenzel case's first screen: up to its first candidate's details), and
cards per hook request. It measures whichever jakcds is installed, so the same script run on an
older checkout's install gives the "before" figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
from collections import Counter
from pathlib import Path

import yaml
from rich.console import Console

import jakcds
from jakcds.ehr.service import HookRequest, Service, Settings
from jakcds.views.text import render

ROOT = Path(__file__).resolve().parents[1]


def text_lines(result) -> list[str]:
    out = io.StringIO()
    render(result, Console(file=out, width=80, color_system=None, force_terminal=False))
    return out.getvalue().splitlines()


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
    per_candidate, prompts, dups, lines, first_screen, wenzel = [], [], 0, [], 0, 0
    for path in sorted(args.cases.glob("*/patient.json")):
        try:
            result = ev.evaluate(json.loads(path.read_text()))
        except jakcds.InputError:
            continue  # a case that must be refused
        per_candidate += [len(c.cautions) for c in result.candidates]
        prompts.append(len(result.before_starting))
        dups += duplicates(result, asking)
        shown = text_lines(result)
        lines.append(len(shown))
        if path.parent.name == "wenzel-chilblain-lupus":
            first_screen = next(i for i, line in enumerate(shown) if line.startswith("1. "))
            wenzel = len(shown)
    hooks = yaml.safe_load((args.cases / "hooks" / "cards.yaml").read_text())
    service = Service(ev, Settings("http://127.0.0.1", None, as_of=hooks["as_of"]))
    cards = {}
    for name, wanted in sorted(hooks["requests"].items()):
        request = HookRequest.model_validate(json.loads((args.cases / "hooks" / name).read_text()))
        cards[name] = len(service.call(wanted["service"], request, asyncio.run(service.gather(request))))
    print(f"patients: {len(prompts)}, candidates: {len(per_candidate)}")
    print(f"cautions per candidate: median {statistics.median(per_candidate):g}, max {max(per_candidate)}")
    print(f"before-starting prompts per result: median {statistics.median(prompts):g}, max {max(prompts)}")
    print(f"duplicate prompts: {dups}")
    print(f"text lines at 80 columns: median {statistics.median(lines):g}, max {max(lines)}; "
          f"Wenzel case {wenzel}, its first screen {first_screen}")
    print("cards per hook request: " + ", ".join(f"{name} {n}" for name, n in cards.items()))


if __name__ == "__main__":
    main()
