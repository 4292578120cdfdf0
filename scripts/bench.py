"""Benchmark: prints measured numbers (no assertions). Run: python scripts/bench.py [--evaluations N]

1. library evaluations per second over the golden cases;
2. where the time goes: durable-rules (session, assert, actions, delete) versus our own code
   (validation, fact building, result assembly), and end-to-end / engine-only;
3. CLI wall time for one `jakcds evaluate` versus `python -c "import durable.engine"`;
4. RSS before and after N evaluations (default 100,000).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jakcds
from jakcds.decision.facts import build_fact, observed
from jakcds.decision.result import assemble

CASES = Path(__file__).resolve().parents[1] / "cases"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def patients() -> list[dict]:
    found = []
    for path in sorted(CASES.glob("*/patient.json")):
        data = json.loads(path.read_text())
        try:
            jakcds.evaluate(data)
            found.append(data)
        except jakcds.InputError:
            pass  # the bad-input cases
    return found


def stages(ev: jakcds.Evaluator, cases: list[dict], rounds: int) -> dict[str, float]:
    """Seconds spent per stage over rounds x cases evaluations, the same steps as Evaluator.evaluate."""
    spent = dict.fromkeys(("validate", "facts", "engine", "assemble", "json"), 0.0)
    clock = time.perf_counter
    for _ in range(rounds):
        for data in cases:
            t0 = clock()
            patient = ev.parse(data)
            t1 = clock()
            fact = build_fact(patient, ev.pack)
            t2 = clock()
            fired = ev.engine.run(fact)
            t3 = clock()
            result = assemble(ev.pack, ev.plan, fired, patient.model_dump(mode="json"), observed(patient, ev.pack), ev.covered, ev.info)
            t4 = clock()
            result.model_dump_json()
            t5 = clock()
            for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                spent[key] += seconds
    return spent


def median_wall(command: list[str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluations", type=int, default=100_000, help="for the RSS measurement")
    args = parser.parse_args()
    ev = jakcds.evaluator()
    cases = patients()
    print(f"machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{len(ev.rules)} active rules, {len(cases)} golden patients")

    stages(ev, cases, 20)  # warm-up
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        for data in cases:
            ev.evaluate(data)
    elapsed = time.perf_counter() - start
    n = rounds * len(cases)
    print(f"library: {n / elapsed:,.0f} evaluations/s ({elapsed / n * 1e6:,.0f} µs each, evaluate() without JSON)")

    spent = stages(ev, cases, rounds)
    total = sum(spent.values()) - spent["json"]
    for key, seconds in spent.items():
        print(f"  {key:<9} {seconds / n * 1e6:7.1f} µs  {seconds / total:6.1%}" + ("  (serialising, outside evaluate)" if key == "json" else ""))
    print(f"  end-to-end / engine-only: {total / spent['engine']:.2f}x (target <= 2x); "
          f"own code / engine: {(total - spent['engine']) / spent['engine']:.2f}")

    jakcds_cli = shutil.which("jakcds") or str(Path(sys.executable).with_name("jakcds"))
    patient = str(CASES / "wenzel-chilblain-lupus" / "patient.json")
    cli = median_wall([jakcds_cli, "evaluate", patient, "--format", "json"])
    baseline = median_wall([sys.executable, "-c", "import durable.engine"])
    bare = median_wall([sys.executable, "-c", "pass"])
    print(f"CLI: one evaluate {cli * 1000:.0f} ms; python -c 'import durable.engine' {baseline * 1000:.0f} ms "
          f"(ratio {cli / baseline:.1f}x, target <= 3x); python -c pass {bare * 1000:.0f} ms")

    before = rss_mib()
    for i in range(args.evaluations):
        ev.evaluate(cases[i % len(cases)])
    after = rss_mib()
    print(f"RSS: {before:.1f} MiB before, {after:.1f} MiB after {args.evaluations:,} evaluations "
          f"({(after - before) / before:+.1%}, target < 5%)")


if __name__ == "__main__":
    main()
