"""Benchmark of `jakcds screen`: prints measured numbers (no assertions).

    python scripts/bench_screen.py [--copies 60] [--workers 2]

Builds an export of the shipped fixture (cases/screening/export: Synthea patients and the added
JAK patients) repeated COPIES times under new ids (60 copies: ~123,000 resources, 420 patients).
In one run it prints, in CPU time (so the machine's other load mostly cancels out):
- the floor: every line read and parsed with plain `json.loads` (and with orjson), as patients per
  CPU-second of the same files;
- `screen` in one process: patients per CPU-second, its ratio to the floor, the partition pass
  alone (timed), and where the CPU goes (cProfile: the partition pass, the FHIR reader `read_chart`);
- `screen` with the local process scheduler (wall time only: its workers' CPU is not ours to
  read) and whether its files are byte-identical to the one-process run.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

from make_bulk_export import renamed

from jakcds.ehr.screen import export_files, partition, screen

FIXTURE = Path(__file__).resolve().parents[1] / "cases" / "screening" / "export"
OUTPUTS = ("results.ndjson", "summary.csv", "summary.parquet", "bad_lines.ndjson", "counts.json")
AS_OF = datetime.date(2026, 11, 23)


def build(target: Path, copies: int) -> int:
    target.mkdir(parents=True)
    written = 0
    for path in sorted(FIXTURE.glob("*.ndjson")):
        lines = path.read_text(encoding="utf-8").splitlines()
        good = [json.loads(line) for line in lines if line.startswith('{"resourceType"') and line.endswith("}")]
        with open(target / path.name, "w", encoding="utf-8") as out:
            for number in range(copies):
                for item in good if number == 0 else renamed(good, number):
                    out.write(json.dumps(item, separators=(",", ":")) + "\n")
                    written += 1
    return written


def floor(export: Path, loads: object) -> float:
    """CPU seconds to read every line of the export and parse it."""
    started = time.process_time()
    for path in sorted(export.glob("*.ndjson")):
        with open(path, "rb") as lines:
            for line in lines:
                loads(line)  # type: ignore[operator]
    return time.process_time() - started


def shares(stats: pstats.Stats, total: float) -> str:
    """The cumulative CPU share of the partition pass and the reader, from a cProfile run."""
    found = {}
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if (name, Path(file).name) in {("partition", "screen.py"), ("read_chart", "chart.py")}:
            found[name] = found.get(name, 0.0) + cumulative
    return ", ".join(f"{name} {100 * found.get(name, 0.0) / total:.0f}%" for name in ("partition", "read_chart"))


def main() -> None:
    import orjson

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        resources = build(export, args.copies)
        size = sum(p.stat().st_size for p in export.glob("*.ndjson")) / 2**20
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"export: {resources:,} resources, {size:.0f} MiB")
        started = time.process_time()
        single = screen(export, Path(tmp) / "single", as_of=AS_OF, workers=1)
        cpu = time.process_time() - started
        patients = single["patients"]
        plain, fast = floor(export, json.loads), floor(export, orjson.loads)
        print(f"floor, read + json.loads: {resources / plain:,.0f} resources/CPU-s = {patients / plain:,.0f} patients/CPU-s "
              f"(orjson: {patients / fast:,.0f} patients/CPU-s)")
        print(f"screen, one process: {patients:,} patients in {cpu:.1f} CPU-s = {patients / cpu:.1f} patients/CPU-s, "
              f"{plain and (patients / plain) / (patients / cpu):.1f}x below the json.loads floor")
        started = time.process_time()
        partition(export_files(export)[0], Path(tmp) / "buckets")
        alone = time.process_time() - started
        print(f"the partition pass alone: {resources / alone:,.0f} resources/CPU-s ({100 * alone / cpu:.0f}% of the one-process screen)")
        profile = cProfile.Profile()
        profile.enable()
        screen(export, Path(tmp) / "profiled", as_of=AS_OF, workers=1)
        profile.disable()
        stats = pstats.Stats(profile)
        print(f"where one process's CPU goes (cProfile, cumulative): {shares(stats, stats.total_tt)}")  # type: ignore[attr-defined]
        local = screen(export, Path(tmp) / "local", as_of=AS_OF, workers=args.workers)
        same = all((Path(tmp) / "single" / n).read_bytes() == (Path(tmp) / "local" / n).read_bytes() for n in OUTPUTS)
        print(f"local processes, {args.workers} workers: {local['patients_per_second']:.1f} patients/s wall "
              f"(one process: {single['patients_per_second']:.1f}); byte-identical files: {same}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
