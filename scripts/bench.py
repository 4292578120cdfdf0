"""Benchmark: prints measured numbers (no assertions). Run: python scripts/bench.py [--evaluations N]

1. library evaluations per second over the golden cases;
2. where the time goes: durable-rules (session, assert, actions, delete) versus our own code
   (validation, fact building, result assembly), and end-to-end / engine-only;
3. CLI wall time for one `jakcds evaluate` versus `python -c "import durable.engine"`;
4. RSS before and after N evaluations (default 100,000);
5. scale: evaluations/s with the pack's rules copied up to 1,000 and 3,000 rules, and `explain`;
6. robustness: exceptions other than InputError / PackError / EngineError over N fuzzed JSON
   profiles and N mutated FHIR charts (default 10,000 each).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import jakcds
from jakcds.decision.facts import build_fact, observed
from jakcds.decision.result import Result, assemble

CASES = Path(__file__).resolve().parents[1] / "cases"
FLOOR = "import durable_rules_engine, typer, pydantic\nclass M(pydantic.BaseModel):\n    a: int\nM(a=1).model_dump_json()"


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


def validation_floor(ev: jakcds.Evaluator, cases: list[dict], rounds: int) -> float:
    """Seconds that Result.model_validate alone takes over rounds x cases, given the data
    `assemble` hands it (plain data; the items it shares already models, so not re-validated)."""
    results = [ev.evaluate(data) for data in cases]
    assembled = [
        {**dict(r), "candidates": [{**dict(c), "confirm": [x.model_dump() for x in c.confirm]} for c in r.candidates],
         "before_starting": [dict(p) for p in r.before_starting], "excluded": [dict(x) for x in r.excluded],
         "trace": [t.model_dump() for t in r.trace]}
        for r in results
    ]
    start = time.perf_counter()
    for _ in range(rounds):
        for data in assembled:
            Result.model_validate(data)
    return time.perf_counter() - start


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
    parser.add_argument("--fuzz", type=int, default=10_000, help="fuzzed profiles, and as many FHIR charts")
    parser.add_argument("--fuzz-only", action="store_true", help="only the robustness fuzz (6.)")
    args = parser.parse_args()
    if args.fuzz_only:
        return print_fuzz(jakcds.evaluator(), patients(), args.fuzz)
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
    print(f"  end-to-end / engine-only: {total / spent['engine']:.2f}x (target <= 1.5x); "
          f"own code / engine: {(total - spent['engine']) / spent['engine']:.2f}")
    floor = validation_floor(ev, cases, rounds) + spent["validate"] + spent["facts"]
    print(f"  the contracts' floor: validating the input and the result's data alone, with the facts: "
          f"{floor / n * 1e6:.1f} µs, so end-to-end / engine-only >= {1 + floor / spent['engine']:.2f}x before any assembly")

    jakcds_cli = shutil.which("jakcds") or str(Path(sys.executable).with_name("jakcds"))
    patient = str(CASES / "wenzel-chilblain-lupus" / "patient.json")
    cli = median_wall([jakcds_cli, "evaluate", patient, "--format", "json"])
    baseline = median_wall([sys.executable, "-c", "import durable.engine"])
    bare = median_wall([sys.executable, "-c", "pass"])
    print(f"CLI: one evaluate {cli * 1000:.0f} ms; python -c 'import durable.engine' {baseline * 1000:.0f} ms "
          f"(ratio {cli / baseline:.1f}x, target <= 4x); python -c pass {bare * 1000:.0f} ms")
    # what a start costs before it evaluates anything: the libraries alone, then with our modules
    for label, code in (("pydantic + typer + durable imported, one model", FLOOR), ("import jakcds.cli", "import jakcds.cli")):
        wall = median_wall([sys.executable, "-c", code])
        print(f"  {label}: {wall * 1000:.0f} ms ({wall / baseline:.1f}x)")

    before = rss_mib()
    for i in range(args.evaluations):
        ev.evaluate(cases[i % len(cases)])
    after = rss_mib()
    print(f"RSS: {before:.1f} MiB before, {after:.1f} MiB after {args.evaluations:,} evaluations "
          f"({(after - before) / before:+.1%}, target < 5%)")

    from jakcds.review.explain import explain

    for size in (len(ev.rules), 1000, 3000):
        big = ev if size == len(ev.rules) else scaled(ev, size)
        start = time.perf_counter()
        explain(big, cases[0], "ruxolitinib")
        first_explain = time.perf_counter() - start
        print(f"scale: {len(big.rules):>5} rules, {len(big.engine._handles)} durable ruleset(s): "
              f"{rate(big, cases):,.0f} evaluations/s; first explain {first_explain * 1000:,.0f} ms")

    print_fuzz(ev, cases, args.fuzz)


def print_fuzz(ev: jakcds.Evaluator, cases: list[dict], n: int) -> None:
    profiles, charts, others = fuzz(ev, cases, n)
    print(f"fuzz: {profiles:,} mutated profiles and {charts:,} mutated FHIR charts: "
          f"{sum(others.values())} exceptions other than InputError/PackError/EngineError {others or ''}")


def scaled(ev: jakcds.Evaluator, size: int) -> jakcds.Evaluator:
    """The pack with its active rules copied (new ids) up to `size` rules."""
    rules = list(ev.rules)
    copies = [rule.model_copy(update={"id": f"SCALE{chr(65 + i // 1000)}-{i % 1000:03d}"})
              for i, rule in zip(range(size - len(rules)), [r for _ in range(size // len(rules) + 1) for r in ev.rules])]
    return jakcds.Evaluator(dataclasses.replace(ev.pack, rules=sorted(rules + copies, key=lambda r: r.id)))


def rate(ev: jakcds.Evaluator, cases: list[dict], seconds: float = 2.0) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for data in cases:
            ev.evaluate(data)
        done += len(cases)
    return done / (time.perf_counter() - start)


def nested(depth: int, leaf: object = 1) -> object:
    """A value nested `depth` lists (or dicts) deep: near and past the JSON and recursion limits."""
    for level in range(depth):
        leaf = [leaf] if level % 2 else {"value": leaf}
    return leaf


def junk(rng: random.Random) -> object:
    return rng.choice([None, True, -1, 10**40, 10**400, -(10**400), 10**5000, 1e-05, 1e308, float("inf"), float("nan"), "",
                       "x" * rng.randint(1, 50), [], {}, [1, "a"], {"value": "85"}, {"value": 10**400, "unit": "10^3/uL"},
                       nested(rng.choice([50, 990, 1000, 3000])), "\udcff\x00"])


def mutate(rng: random.Random, document: object) -> object:
    """One random change deep inside a JSON document: a value replaced or a key removed."""
    paths: list[list] = []
    stack: list[tuple[object, list]] = [(document, [])]
    while stack:  # not recursive: a junk value may be nested thousands deep
        node, path = stack.pop()
        paths.append(path)
        if len(path) < 50:
            items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
            stack.extend((child, path + [key]) for key, child in items)
    path = rng.choice(paths[1:])
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk(rng)
    return document


def fuzz(ev: jakcds.Evaluator, cases: list[dict], n: int) -> tuple[int, int, dict[str, int]]:
    """(profiles, charts, {exception type: count}) of the exceptions that are not ours."""
    from jakcds.ehr.chart import evaluate_chart

    rng = random.Random(2026)
    others: dict[str, int] = {}
    ours = (jakcds.InputError, jakcds.PackError, jakcds.EngineError)
    fields = sorted(jakcds.Patient.model_fields)
    charts = [json.loads(p.read_text()) for p in sorted(CASES.glob("*/bundle.json"))]
    for i in range(n):
        profile = copy.deepcopy(cases[i % len(cases)])
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                profile[rng.choice(fields)] = junk(rng)
            else:
                mutate(rng, profile)
        chart = copy.deepcopy(charts[i % len(charts)])
        for _ in range(rng.randint(1, 3)):
            chart = mutate(rng, chart)
        if rng.random() < 0.05:  # not a JSON object at the top
            chart = junk(rng)
        for attempt in (lambda: ev.evaluate(profile), lambda: evaluate_chart(ev, chart)):
            try:
                attempt()
            except ours:
                pass
            except Exception as error:  # noqa: BLE001 - counted: what the library must never raise
                where = traceback.extract_tb(error.__traceback__)[-1]
                name = f"{type(error).__name__} at {Path(where.filename).name}:{where.lineno}"
                others[name] = others.get(name, 0) + 1
    return n, n, others


if __name__ == "__main__":
    main()
