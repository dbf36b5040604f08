"""Load test of `maxsim serve` on loopback: batching on vs off, in one run.

For each mode (batching on, then off) a real server is started as a subprocess on a free loopback
port; then, for 1, 4 and 16 concurrent clients, each client sends a fixed number of requests
back to back (embedding: the seed's 3-document request; rerank: the seed's 8 Berlin passages).
Prints a table and writes bench/results/serve.json: requests/s, p50/p95/p99 latency, errors.

    .venv/bin/python bench/serve.py [--requests 8] [--clients 1 4 16] [--threads N]
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
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "api" / "seed_examples.json"
OUT = ROOT / "bench" / "results" / "serve.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(batching: bool, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "maxsim.cli", "serve", "--port", str(port), "--log-level", "warning",
           "--max-queue", "4096"]
    if not batching:
        cmd.append("--no-batching")
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("server did not start within 120 s")
        time.sleep(0.3)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run_load(url: str, path: str, body: dict, clients: int, per_client: int) -> dict:
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0

    async def one_client(c: httpx.AsyncClient) -> None:
        nonlocal errors
        for _ in range(per_client):
            t0 = time.perf_counter()
            try:
                r = await c.post(path, content=payload, headers={"content-type": "application/json"})
                r.read()
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
        await c.post(path, content=payload, headers={"content-type": "application/json"})  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*[one_client(c) for _ in range(clients)])
        wall = time.perf_counter() - t0
    n = clients * per_client
    return {
        "requests": n, "seconds": round(wall, 3), "req_per_s": round(n / wall, 2),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1), "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1), "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "errors": errors,
    }


def batch_stats(url: str) -> dict:
    text = httpx.get(url + "/metrics", timeout=10).text
    vals = {}
    for line in text.splitlines():
        for name in ("maxsim_batch_jobs_sum", "maxsim_batch_jobs_count", "maxsim_batch_inputs_sum"):  # noqa: B007
            if line.startswith(name + " "):
                vals[name] = float(line.split()[-1])
    count = vals.get("maxsim_batch_jobs_count", 0) or 1
    return {"model_calls": int(vals.get("maxsim_batch_jobs_count", 0)),
            "mean_requests_per_call": round(vals.get("maxsim_batch_jobs_sum", 0) / count, 2),
            "mean_texts_per_call": round(vals.get("maxsim_batch_inputs_sum", 0) / count, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=8, help="requests per client (default 8)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the server")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    seeds = json.loads(SEEDS.read_text())
    workloads = {"embed": ("/v1/multi-vector", seeds["embed_documents"]), "rerank": ("/v1/rerank", seeds["rerank"])}
    rows = []
    # Both servers run for the whole benchmark and each (workload, clients) cell is measured with
    # batching on and then off back to back, so that noisy neighbours on shared cores affect both
    # sides of a comparison alike. Only the server being measured uses CPU.
    servers = {b: start(b, args.threads) for b in (True, False)}
    try:
        for name, (path, body) in workloads.items():
            for clients in args.clients:
                for batching in (True, False):
                    url = servers[batching][1]
                    before = batch_stats(url)
                    res = asyncio.run(run_load(url, path, body, clients, args.requests))
                    calls = batch_stats(url)["model_calls"] - before["model_calls"]
                    row = {"workload": name, "batching": batching, "clients": clients, **res, "model_calls": calls}
                    rows.append(row)
                    print(f"  {name:7s} batching={'on ' if batching else 'off'} clients={clients:3d}  "
                          f"{res['req_per_s']:8.2f} req/s  p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms  "
                          f"errors {res['errors']}  model calls {calls}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)

    def find(w: str, b: bool, c: int) -> dict | None:
        return next((r for r in rows if r["workload"] == w and r["batching"] == b and r["clients"] == c), None)

    speedups = {}
    for w in workloads:
        for c in args.clients:
            on, off = find(w, True, c), find(w, False, c)
            if on and off:
                speedups[f"{w}@{c}"] = round(on["req_per_s"] / off["req_per_s"], 2)

    header = f"{'workload':8s} {'batching':8s} {'clients':>7s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} {'errors':>6s} {'calls':>6s}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in sorted(rows, key=lambda r: (r["workload"], r["clients"], not r["batching"])):
        print(f"{r['workload']:8s} {'on' if r['batching'] else 'off':8s} {r['clients']:7d} {r['req_per_s']:8.2f} "
              f"{r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:6d} {r['model_calls']:6d}")
    print("\nbatching speed-up (req/s on / off): " + ", ".join(f"{k} {v}x" for k, v in speedups.items()))
    total_errors = sum(r["errors"] for r in rows)
    result = {
        "benchmark": "maxsim serve, loopback, real HTTP",
        "requests_per_client": args.requests,
        "clients": args.clients,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": os.getloadavg()},
        "rows": rows,
        "speedup_batching": speedups,
        "errors": total_errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
