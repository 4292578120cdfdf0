"""Load test of the CDS Hooks service: prints latency percentiles, throughput and errors.

    python scripts/load.py [--clients 20] [--requests 3000]

Starts `jakcds serve` (JWT on, a dev issuer) as a second process on loopback, then drives it
from this process with N concurrent clients (asyncio + httpx), alternating the shipped
patient-view and order-sign requests, each with its own pre-minted token (minting is not
timed; each client's connection is opened with one untimed request first). It prints the
service's HTTP limits (as `jakcds serve` prints them), the server's CPU per request and its
own. Both processes share this machine's cores, so compare figures from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev_issuer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HOOKS = {"jak-options": REPO / "cases/hooks/patient-view.json", "jak-order-sign": REPO / "cases/hooks/order-sign.json"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (the service's worker
    processes), from Linux /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    return own + sum(cpu_seconds(child) for child in children)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(keys: Path, port: int, log: Path, workers: int, processes: int) -> subprocess.Popen:
    jakcds = Path(sys.executable).with_name("jakcds")
    args = [str(jakcds), "serve", "--port", str(port), "--issuers", str(dev_issuer.init(keys)), "--store", str(log.with_name("store.sqlite3")),
            "--workers", str(workers), "--processes", str(processes)]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit(f"the service did not start; see {log}")


async def drive(base: str, keys: Path, clients: int, total: int) -> tuple[list[float], dict[int, int], float, float]:
    """Latencies, statuses, wall time and this process's CPU time of the timed requests."""
    bodies = {sid: path.read_bytes() for sid, path in HOOKS.items()}
    plan = [list(HOOKS)[i % len(HOOKS)] for i in range(total)]
    tokens = [dev_issuer.token(keys, f"{base}/cds-services/{sid}", lifetime=900) for sid in plan]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(range(total))
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients), timeout=30) as client:
        async def post(sid: str, token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            return await client.post(f"{base}/cds-services/{sid}", content=bodies[sid], headers=headers)

        async def warm(sid: str) -> None:
            (await post(sid, dev_issuer.token(keys, f"{base}/cds-services/{sid}"))).raise_for_status()

        # warm up outside the timing: each client's connection opened, each hook's first evaluation done
        await asyncio.gather(*(warm(plan[i]) for i in range(clients)))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                started = time.perf_counter()
                try:
                    status = (await post(plan[i], tokens[i])).status_code
                except httpx.HTTPError:
                    status = 0
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, statuses, time.perf_counter() - started, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=1, help="jakcds serve --workers")
    parser.add_argument("--processes", type=int, default=1, help="jakcds serve --processes")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        keys, log = Path(tmp) / "keys", Path(tmp) / "decisions.log"
        server = start(keys, port, log, args.workers, args.processes)
        try:
            cpu = cpu_seconds(server.pid)
            latencies, statuses, elapsed, own = asyncio.run(drive(f"http://127.0.0.1:{port}", keys, args.clients, args.requests))
            cpu = cpu_seconds(server.pid) - cpu
        finally:
            server.terminate()
            server.wait(10)
        lines = log.read_text().splitlines()
        timings = [json.loads(line[line.index("{"):])["ms"] for line in lines if "\"ms\"" in line]
        limits = next((line for line in lines if line.startswith("limits per server process")), "limits: not printed by serve")
    ms = sorted(x * 1000 for x in latencies)
    cut = statistics.quantiles(ms, n=100)
    errors = sum(n for status, n in statuses.items() if status != 200)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{args.requests} requests, {args.clients} concurrent clients, patient-view and order-sign alternating; "
          f"serve --workers {args.workers} --processes {args.processes}")
    print(f"service {limits}")
    print(f"latency ms: p50 {cut[49]:.1f}  p95 {cut[94]:.1f}  p99 {cut[98]:.1f}  max {ms[-1]:.1f}")
    print(f"throughput: {len(ms) / elapsed:.0f} requests/s; errors: {errors} (statuses {dict(sorted(statuses.items()))})")
    print(f"server-side handling (decision log), ms: median {statistics.median(timings):.1f}, p99 {statistics.quantiles(timings, n=100)[98]:.1f}")
    print(f"server CPU per request: {cpu * 1000 / (len(ms) + args.clients):.1f} ms (HTTP, JWT, FHIR parsing, rules, cards); "
          f"this load generator's: {own * 1000 / len(ms):.1f} ms")


if __name__ == "__main__":
    main()
