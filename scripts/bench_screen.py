"""Benchmark of `jakcds screen`: prints measured numbers (no assertions).

    python scripts/bench_screen.py [--copies 60]

Builds an export of the shipped fixture (cases/screening/export: Synthea patients and the added
JAK patients) repeated COPIES times under new ids (60 copies: ~123,000 resources, 420 patients),
then screens it in one process, with the local process scheduler at 2 workers, and on a Dask
LocalCluster of 2 worker processes: patients/s, peak RSS (this process and its children), and
whether the three give byte-identical files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
from pathlib import Path

from make_bulk_export import renamed

from jakcds.ehr.screen import screen

FIXTURE = Path(__file__).resolve().parents[1] / "cases" / "screening" / "export"
OUTPUTS = ("results.ndjson", "summary.csv", "summary.parquet", "bad_lines.ndjson", "counts.json")


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


def peak_mib() -> tuple[float, float]:
    """Peak RSS of this process and of its largest child (MiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=60)
    args = parser.parse_args()
    as_of = datetime.date(2026, 11, 23)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        resources = build(export, args.copies)
        size = sum(p.stat().st_size for p in export.glob("*.ndjson")) / 2**20
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"export: {resources:,} resources, {size:.0f} MiB")
        runs = {}
        single = screen(export, Path(tmp) / "single", as_of=as_of, workers=1)
        runs["one process"] = single
        print(f"one process: {single['patients']:,} patients in {single['seconds']:.1f} s = {single['patients_per_second']:.1f} patients/s; "
              f"peak RSS {peak_mib()[0]:.0f} MiB")
        local = screen(export, Path(tmp) / "local", as_of=as_of, workers=2)
        print(f"local processes, 2 workers: {local['patients_per_second']:.1f} patients/s "
              f"({local['patients_per_second'] / single['patients_per_second']:.2f}x); peak RSS of a worker {peak_mib()[1]:.0f} MiB")
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            clustered = screen(export, Path(tmp) / "cluster", as_of=as_of, scheduler=client)
        print(f"Dask LocalCluster, 2 worker processes: {clustered['patients_per_second']:.1f} patients/s "
              f"({clustered['patients_per_second'] / single['patients_per_second']:.2f}x)")
        same = all((Path(tmp) / "single" / n).read_bytes() == (Path(tmp) / other / n).read_bytes()
                   for n in OUTPUTS for other in ("local", "cluster"))
        print(f"byte-identical outputs across the three runs: {same}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
