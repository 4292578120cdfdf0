"""Benchmark: prints measured numbers (no assertions). Run: python scripts/bench.py [--evaluations N]

1. library evaluations per second over the golden cases, and µs CPU per evaluation with the
   result's JSON (`--vs DIR`: the same figure for another checkout, e.g. main, measured in the
   same run, each checkout in its own fresh process, alternated);
2. where the time goes: durable-rules (assert, actions, retract) versus our own code
   (validation, fact building, result assembly, JSON), and end-to-end / engine-only;
3. CLI wall time for one `jakcds evaluate` versus `python -c "import durable.engine"`;
4. RSS before and after N evaluations (default 100,000);
5. scale: evaluations/s with the pack's rules copied up to 1,000 and 3,000 rules, and `explain`;
6. limits: a generated varied pack of 3,000 rules (scripts/generate.py) over N random profiles
   (default 10,000): `EngineError`s (durable-rules' limits: error 303) are failures, counted;
7. robustness: exceptions other than InputError / PackError over N fuzzed JSON profiles and N
   mutated FHIR charts (default 10,000 each); EngineErrors counted apart, as failures.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import jakcds
from jakcds.decision.facts import build_fact, observed
from jakcds.decision.result import Result, assemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import random_profiles, varied_pack  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "cases"
# µs of CPU per evaluation with the result's JSON, over the golden patients of the checkout
# whose jakcds is imported; a checkout without Evaluator.evaluate_json (before plain-data JSON)
# writes it as it did, with model_dump_json.
PER_EVALUATION = """
import json, pathlib, sys, time
import jakcds
ev = jakcds.evaluator()
cases = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/patient.json")):
    try:
        ev.evaluate(data := json.loads(path.read_text()))
        cases.append(data)
    except jakcds.InputError:
        pass
write = getattr(ev, "evaluate_json", None) or (lambda data: ev.evaluate(data).model_dump_json())
for data in cases * 20:
    write(data)
start = time.process_time()
for data in cases * int(sys.argv[2]):
    write(data)
print((time.process_time() - start) / (len(cases) * int(sys.argv[2])) * 1e6)
"""
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
    """Seconds spent per stage over rounds x cases evaluations, the steps of Evaluator.evaluate_json."""
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
            document = assemble(ev.pack, ev.plan, fired, patient.model_dump(mode="json"), observed(patient, ev.pack), ev.covered, ev.info)
            t4 = clock()
            ev.plan.json(document)
            t5 = clock()
            for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                spent[key] += seconds
    return spent


def validation_floor(ev: jakcds.Evaluator, cases: list[dict], rounds: int) -> float:
    """Seconds that Result.model_validate alone takes over rounds x cases, given the document
    `assemble` builds (what evaluate() adds to evaluate_json's data)."""
    documents = [ev.document(ev.parse(data)) for data in cases]
    start = time.perf_counter()
    for _ in range(rounds):
        for document in documents:
            Result.model_validate(document)
    return time.perf_counter() - start


def layout(checkout: Path) -> Path:
    """A folder holding `jakcds` as the wheel lays it out, made of links into a checkout."""
    root = Path(tempfile.mkdtemp(prefix="jakcds-bench-"))
    package = root / "jakcds"
    package.mkdir()
    for entry in (checkout / "engine").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "cli.py").symlink_to(checkout / "cli.py")
    (package / "rules").symlink_to(checkout / "rules")
    return root


def per_evaluation(checkout: Path, rounds: int) -> float:
    """µs CPU per evaluation with JSON for a checkout, in a fresh process importing its jakcds."""
    root = layout(checkout)
    try:
        done = subprocess.run([sys.executable, "-c", PER_EVALUATION, str(checkout / "cases"), str(rounds)],
                              env={**os.environ, "PYTHONPATH": str(root)}, check=True, capture_output=True, text=True)
    finally:
        shutil.rmtree(root)
    return float(done.stdout)


def versus(other: Path, pairs: int = 3, rounds: int = 100) -> None:
    """This checkout against another, alternated pair by pair; medians and the ratio per pair."""
    here = Path(__file__).resolve().parents[1]
    ours, theirs = [], []
    for _ in range(pairs):
        theirs.append(per_evaluation(other, rounds))
        ours.append(per_evaluation(here, rounds))
    ratios = sorted(a / b for a, b in zip(ours, theirs))
    print(f"evaluate + JSON, µs CPU per evaluation on the golden patients ({pairs} pairs, fresh processes): "
          f"{other} {statistics.median(theirs):,.0f} ({min(theirs):,.0f}-{max(theirs):,.0f}); this checkout "
          f"{statistics.median(ours):,.0f} ({min(ours):,.0f}-{max(ours):,.0f}); ratio {statistics.median(ratios):.2f}x "
          f"({ratios[0]:.2f}-{ratios[-1]:.2f}; target <= 0.5x)")


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
    parser.add_argument("--limits", type=int, default=10_000, help="random profiles on the 3,000-rule varied pack")
    parser.add_argument("--vs", type=Path, help="another checkout (e.g. main) to measure evaluate + JSON against")
    parser.add_argument("--only-vs", action="store_true", help="measure only evaluate + JSON against --vs")
    args = parser.parse_args()
    if args.fuzz_only:
        return print_fuzz(jakcds.evaluator(), patients(), args.fuzz)
    ev = jakcds.evaluator()
    cases = patients()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"{platform.python_implementation()} {platform.python_version()}, {len(ev.rules)} active rules "
          f"in {len(ev.engine._handles)} durable ruleset(s), {len(cases)} golden patients")
    if args.vs:
        versus(args.vs.resolve())
        if args.only_vs:
            return

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
    total = sum(spent.values())
    for key, seconds in spent.items():
        print(f"  {key:<9} {seconds / n * 1e6:7.1f} µs  {seconds / total:6.1%}")
    print(f"  evaluate + JSON (evaluate_json): {total / n * 1e6:.0f} µs; end-to-end / engine-only: {total / spent['engine']:.2f}x; "
          f"own code / engine: {(total - spent['engine']) / spent['engine']:.2f}")
    floor = validation_floor(ev, cases, rounds)
    print(f"  evaluate() builds the Result from the same data: + {floor / n * 1e6:.1f} µs (Result.model_validate)")

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

    if args.limits:
        limits(ev, args.limits)
    print_fuzz(ev, cases, args.fuzz)


def print_fuzz(ev: jakcds.Evaluator, cases: list[dict], n: int) -> None:
    profiles, charts, others = fuzz(ev, cases, n)
    print(f"fuzz: {profiles:,} mutated profiles and {charts:,} mutated FHIR charts: {sum(others.values())} failures "
          f"(EngineErrors and exceptions other than InputError/PackError; target 0) {others or ''}")


def limits(ev: jakcds.Evaluator, count: int, size: int = 3000) -> None:
    """EngineErrors of a generated varied pack over random profiles (each one a failure)."""
    start = time.perf_counter()
    big = jakcds.Evaluator(varied_pack(ev.pack, size))
    built = time.perf_counter() - start
    errors: dict[str, int] = {}
    start = time.perf_counter()
    for profile in random_profiles(ev, count):
        try:
            big.evaluate(profile)
        except jakcds.EngineError as error:
            errors[str(error)] = errors.get(str(error), 0) + 1
    print(f"limits: a varied pack of {size:,} rules ({len(big.engine._handles)} durable rulesets, built in {built:.1f} s) "
          f"over {count:,} random profiles ({(time.perf_counter() - start) / count * 1e3:.1f} ms each): "
          f"{sum(errors.values())} EngineErrors (target 0) {errors or ''}")


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
    if len(paths) < 2:  # an empty document (or a junk scalar): nothing inside to change
        return document
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
    """(profiles, charts, {exception type: count}) of the failures: EngineErrors (a valid or
    refused profile must never meet the engine's limits) and exceptions that are not ours."""
    from jakcds.ehr.chart import evaluate_chart

    rng = random.Random(2026)
    others: dict[str, int] = {}
    ours = (jakcds.InputError, jakcds.PackError)
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
