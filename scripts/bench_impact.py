"""Benchmark of `jakcds rules impact` against `jakcds screen` on the same export: prints measured numbers.

    python scripts/bench_impact.py [--copies 290]

Builds the shipped screening fixture repeated COPIES times under new ids (290 copies: 2,030
patients), then, in this one process (one worker, so CPU time is the measure and the machine's
other load cancels out), screens it once and measures the impact of a one-threshold edit of the
pack (tofacitinib's lymphocyte floor 500 -> 800 cells/µL) on it. Target: impact <= 2.2x screen.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import tempfile
from pathlib import Path

from bench_screen import build

from jakcds.ehr.screen import screen
from jakcds.knowledge.pack import default_path
from jakcds.review.impact import impact


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def edited(rules: Path, target: Path) -> Path:
    shutil.copytree(rules, target)
    path = target / "label" / "tofacitinib.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("- id: LABEL-TOF-001")
    block = text[start:text.index("- id: ", start + 1)]
    path.write_text(text.replace(block, block.replace("{fact: lymphocytes, lt: 500}", "{fact: lymphocytes, lt: 800}")), encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=290)
    args = parser.parse_args()
    as_of = datetime.date(2026, 11, 23)
    rules = default_path()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        resources = build(export, args.copies)
        head = edited(rules, Path(tmp) / "head")
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, Python {platform.python_version()}; "
              f"export: {resources:,} resources")
        impact(str(rules), str(head), export, Path(tmp) / "warm", scratch=Path(tmp), as_of=as_of, workers=1)  # both packs compiled once
        started = cpu()
        screened = screen(export, Path(tmp) / "screen", as_of=as_of, workers=1)
        screen_cpu = cpu() - started
        started = cpu()
        summary = impact(str(rules), str(head), export, Path(tmp) / "impact", scratch=Path(tmp), as_of=as_of, workers=1)
        impact_cpu = cpu() - started
        print(f"screen: {screened['patients']:,} patients, {screen_cpu:.1f} CPU s ({screened['patients'] / screen_cpu:.1f} patients per CPU-second)")
        print(f"rules impact: {summary['patients']:,} patients, {summary['changed']:,} changed, {impact_cpu:.1f} CPU s")
        print(f"impact / screen: {impact_cpu / screen_cpu:.2f}x (target <= 2.2x)")


if __name__ == "__main__":
    main()
