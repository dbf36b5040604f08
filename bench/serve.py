"""Load test of `maxsim serve` on loopback: batching on vs off, in one run.

Two real servers run as subprocesses on free loopback ports, one with batching on and one with
it off; only the one being measured gets requests. For 1, 4 and 16 concurrent clients, each
client sends a fixed number of requests back to back. Both modes send the same requests, cut
into chunks measured on-off, off-on, on-off, off-on, so that noisy neighbours on shared cores
weigh on both modes alike; ratios are only ever taken within a run. Prints a table and writes bench/results/serve.json.

Workloads (texts from ../shared/data, a real multilingual QA collection kit; no request repeats
another's texts unless the workload says so):

- ``embed``: 3 short texts per request (questions from 12 languages' query sets, each used once
  per mode), like the API's seed example ``embed_documents``.
- ``rerank-distinct``: one SQuAD v1.1 question and 8 SQuAD passages per request; every passage
  is used once per mode, so concurrent requests never share a passage (no overlap at all).
- ``rerank-corpus``: RAG-style: a fixed corpus (the 1,827 SQuAD v1.1 dev passages), questions
  drawn at random (without repetition) from its 9,380 dev questions, and as candidates the
  top 8 passages of a BM25 first stage over that corpus. Concurrent users ask about the same
  popular articles, so their candidates overlap as they do in the data; the run reports how
  many candidate texts the model actually encoded.

Per cell the server's /metrics give the model calls, texts requested and encoded (identical
texts in one call are encoded once), real and padded token positions, and model seconds.

    .venv/bin/python bench/serve.py [--requests-embed 8] [--requests-rerank 4] [--clients 1 4 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "serve.json"
MODEL = "jina-colbert-v2"
CANDIDATES = 8
#: One-client cells send this many times more requests per client (they are short and noisy).
ONE_CLIENT_FACTOR = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    batching: bool, threads: int | None, dtype: str | None = None, extra: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "maxsim.cli",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-queue",
        "4096",
    ]
    if not batching:
        cmd.append("--no-batching")
    if threads:
        cmd += ["--threads", str(threads)]
    if dtype:
        cmd += ["--dtype", dtype]
    cmd += extra or []
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


# ---- workloads ------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


_WORD = re.compile(r"\w+", re.UNICODE)


class BM25:
    """Okapi BM25 (k1=0.9, b=0.4) over lower-cased word tokens: the first stage of the RAG workload."""

    def __init__(self, texts: list[str], k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.lengths = []
        for i, t in enumerate(texts):
            tf = Counter(_WORD.findall(t.lower()))
            self.lengths.append(sum(tf.values()))
            for w, c in tf.items():
                self.postings[w].append((i, c))
        self.avg = statistics.fmean(self.lengths)
        n = len(texts)
        self.idf = {w: math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5)) for w, p in self.postings.items()}

    def top(self, query: str, k: int) -> list[int]:
        scores: dict[int, float] = defaultdict(float)
        for w in set(_WORD.findall(query.lower())):
            idf = self.idf.get(w)
            if idf is None:
                continue
            for i, c in self.postings[w]:
                norm = c + self.k1 * (1 - self.b + self.b * self.lengths[i] / self.avg)
                scores[i] += idf * c * (self.k1 + 1) / norm
        return sorted(scores, key=lambda i: (-scores[i], i))[:k]


def build_workloads(data: Path, needed: dict[str, int], seed: int = 0) -> dict[str, tuple[str, list[dict]]]:
    """Request bodies for each workload, in the order they are sent; ``needed`` = requests per workload."""
    rng = random.Random(seed)
    squad = data / "squad-v1.1-en"
    passages = [p["text"] for p in read_jsonl(squad / "corpus.jsonl")]
    questions = [q["text"] for q in read_jsonl(squad / "queries.jsonl")]

    short = []
    for sub in sorted(p for p in data.iterdir() if (p / "queries.jsonl").exists()):
        short += [q["text"] for q in read_jsonl(sub / "queries.jsonl")]
    rng.shuffle(short)
    n = needed["embed"]
    if 3 * n > len(short):
        raise SystemExit(f"embed needs {3 * n} distinct texts, the data has {len(short)}")
    embed = [
        {"model": MODEL, "input": short[3 * i : 3 * i + 3], "input_type": "document", "dimensions": 128}
        for i in range(n)
    ]

    order = list(range(len(passages)))
    rng.shuffle(order)
    qs = questions[:]
    rng.shuffle(qs)
    n = needed["rerank-distinct"]
    if CANDIDATES * n > len(passages):
        raise SystemExit(f"rerank-distinct needs {CANDIDATES * n} distinct passages, the corpus has {len(passages)}")
    distinct = [
        {
            "model": MODEL,
            "query": qs[i],
            "top_n": 3,
            "documents": [passages[j] for j in order[CANDIDATES * i : CANDIDATES * (i + 1)]],
        }
        for i in range(n)
    ]

    bm25 = BM25(passages)
    n = needed["rerank-corpus"]
    asked = rng.sample(questions, n)
    corpus = [
        {"model": MODEL, "query": q, "top_n": 3, "documents": [passages[j] for j in bm25.top(q, CANDIDATES)]}
        for q in asked
    ]
    return {
        "embed": ("/v1/multi-vector", embed),
        "rerank-distinct": ("/v1/rerank", distinct),
        "rerank-corpus": ("/v1/rerank", corpus),
    }


# ---- load -----------------------------------------------------------------------------------
async def run_load(url: str, path: str, per_client: list[list[dict]]) -> tuple[list[float], int, float]:
    """Each client sends its own list of bodies back to back; returns latencies, errors, wall seconds."""
    latencies: list[float] = []
    errors = 0

    async def one_client(c: httpx.AsyncClient, bodies: list[dict]) -> None:
        nonlocal errors
        for body in bodies:
            payload = json.dumps(body).encode()
            t0 = time.perf_counter()
            try:
                r = await c.post(path, content=payload, headers={"content-type": "application/json"})
                r.read()
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    clients = len(per_client)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[one_client(c, bodies) for bodies in per_client])
        wall = time.perf_counter() - t0
    return latencies, errors, wall


_COUNTERS = {
    "model_calls": ("maxsim_batch_jobs_count", ""),
    "jobs": ("maxsim_batch_jobs_sum", ""),
    "texts_requested": ("maxsim_model_inputs_total", 'kind="requested"'),
    "texts_encoded": ("maxsim_model_inputs_total", 'kind="encoded"'),
    "tokens_encoded": ("maxsim_model_tokens_total", 'kind="encoded"'),
    "tokens_padded": ("maxsim_model_tokens_total", 'kind="padded"'),
    "model_seconds": ("maxsim_model_seconds_total", ""),
    "waits": ("maxsim_batch_waits_total", ""),
}


def counters(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out = dict.fromkeys(_COUNTERS, 0.0)
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for key, (metric, labels) in _COUNTERS.items():
            if (name == metric or name.startswith(metric + "{")) and labels in name:
                out[key] += float(value)
    return out


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def gauge(url: str, name: str) -> float | None:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def summary(latencies: list[float], errors: int, wall: float, d: dict) -> dict:
    n = len(latencies)
    return {
        "requests": n,
        "seconds": round(wall, 3),
        "req_per_s": round(n / wall, 2),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
        "errors": errors,
        "model_calls": int(d["model_calls"]),
        "calls_that_waited": int(d["waits"]),
        "requests_per_call": round(d["jobs"] / max(d["model_calls"], 1), 2),
        "texts_requested": int(d["texts_requested"]),
        "texts_encoded": int(d["texts_encoded"]),
        "tokens_encoded": int(d["tokens_encoded"]),
        "tokens_padded": int(d["tokens_padded"]),
        "padding_share": round(1 - d["tokens_encoded"] / max(d["tokens_padded"], 1), 3),
        "model_seconds": round(d["model_seconds"], 3),
        "model_ms_per_request": round(d["model_seconds"] / max(n, 1) * 1000, 1),
        "model_us_per_padded_token": round(d["model_seconds"] / max(d["tokens_padded"], 1) * 1e6, 1),
        "model_busy_share": round(d["model_seconds"] / wall, 3),
        "server_cpu_ms_per_request": round(d["cpu_seconds"] / max(n, 1) * 1000, 1),
    }


def measure_cell(servers: dict, path: str, bodies: list[dict], clients: int) -> dict[bool, dict]:
    """Both modes send the same requests, in chunks measured on-off, off-on, on-off, ... (ABBA), so
    that the neighbours' load, which comes and goes in bursts, weighs on both modes alike."""
    per = len(bodies) // clients
    k = 4 if per % 4 == 0 else 2
    size = per // k
    chunks = [[bodies[c * per + i * size : c * per + (i + 1) * size] for c in range(clients)] for i in range(k)]
    lat: dict[bool, list[float]] = {True: [], False: []}
    err = {True: 0, False: 0}
    wall = {True: 0.0, False: 0.0}
    delta = {b: dict.fromkeys([*_COUNTERS, "cpu_seconds"], 0.0) for b in (True, False)}
    for i, chunk in enumerate(chunks):
        for batching in (True, False) if i % 2 == 0 else (False, True):
            proc, url = servers[batching]
            before = {**counters(url), "cpu_seconds": cpu_seconds(proc.pid)}
            latencies, errors, seconds = asyncio.run(run_load(url, path, chunk))
            after = {**counters(url), "cpu_seconds": cpu_seconds(proc.pid)}
            lat[batching] += latencies
            err[batching] += errors
            wall[batching] += seconds
            for key in delta[batching]:
                delta[batching][key] += after[key] - before[key]
    return {b: summary(lat[b], err[b], wall[b], delta[b]) for b in (True, False)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests-embed", type=int, default=8, help="requests per client, embed (default 8)")
    ap.add_argument("--requests-rerank", type=int, default=4, help="requests per client, rerank (default 4)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--workloads", nargs="+", default=["embed", "rerank-distinct", "rerank-corpus"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the servers")
    ap.add_argument(
        "--batch-wait-ms", type=float, default=None, help="the batching server's --batch-wait-ms (default: its default)"
    )
    ap.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "auto"],
        help="servers' compute dtype (default: the server's default, auto)",
    )
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data kit (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    def per_client(workload: str, clients: int) -> int:
        r = args.requests_embed if workload == "embed" else args.requests_rerank
        r = r * ONE_CLIENT_FACTOR if clients == 1 else r
        return r + r % 2  # an even number: chunks for on-off-off-on

    needed = {w: sum(c * per_client(w, c) for c in args.clients) for w in ("embed", "rerank-distinct", "rerank-corpus")}
    all_bodies = build_workloads(args.data, needed)
    workloads = {w: all_bodies[w] for w in args.workloads}
    rows = []
    wait = ["--batch-wait-ms", str(args.batch_wait_ms)] if args.batch_wait_ms is not None else []
    servers = {b: start(b, args.threads, args.dtype, wait if b else None) for b in (True, False)}
    try:
        for name, (path, bodies) in workloads.items():
            for url in (s[1] for s in servers.values()):  # warm-up, not measured
                httpx.post(url + path, json=bodies[-1], timeout=300)
            pos = 0
            for clients in args.clients:
                n = clients * per_client(name, clients)
                cell, pos = bodies[pos : pos + n], pos + n
                results = measure_cell(servers, path, cell, clients)
                for batching in (True, False):
                    res = results[batching]
                    res["pass_overhead_positions"] = gauge(servers[batching][1], "maxsim_pass_overhead_positions")
                    rows.append({"workload": name, "batching": batching, "clients": clients, **res})
                    print(
                        f"  {name:15s} batching={'on ' if batching else 'off'} clients={clients:3d}  "
                        f"{res['req_per_s']:8.2f} req/s  p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms  "
                        f"errors {res['errors']}  calls {res['model_calls']} (waited {res['calls_that_waited']})  texts {res['texts_encoded']}/"
                        f"{res['texts_requested']}  padding {res['padding_share']:.0%}  "
                        f"{res['model_us_per_padded_token']} us/slot  cpu {res['server_cpu_ms_per_request']} ms/req  "
                        f"pass cost {res['pass_overhead_positions']} positions",
                        flush=True,
                    )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)

    def find(w: str, b: bool, c: int) -> dict | None:
        return next((r for r in rows if r["workload"] == w and r["batching"] == b and r["clients"] == c), None)

    speedups, cpu_ratios = {}, {}
    for w in workloads:
        for c in args.clients:
            on, off = find(w, True, c), find(w, False, c)
            if on and off:
                speedups[f"{w}@{c}"] = round(on["req_per_s"] / off["req_per_s"], 2)
                cpu_ratios[f"{w}@{c}"] = round(
                    off["server_cpu_ms_per_request"] / max(on["server_cpu_ms_per_request"], 1e-9), 2
                )

    header = (
        f"{'workload':15s} {'batching':8s} {'clients':>7s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'p99 ms':>8s} {'errors':>6s} {'calls':>6s} {'texts enc/req':>13s} {'padding':>7s} {'us/slot':>7s} {'cpu ms/req':>10s}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in sorted(rows, key=lambda r: (list(workloads).index(r["workload"]), r["clients"], not r["batching"])):
        print(
            f"{r['workload']:15s} {'on' if r['batching'] else 'off':8s} {r['clients']:7d} {r['req_per_s']:8.2f} "
            f"{r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:6d} {r['model_calls']:6d} "
            f"{r['texts_encoded']:>6d}/{r['texts_requested']:<6d} {r['padding_share']:7.0%} "
            f"{r['model_us_per_padded_token']:7.1f} {r['server_cpu_ms_per_request']:10.1f}"
        )
    print("\nbatching speed-up (req/s on / off): " + ", ".join(f"{k} {v}x" for k, v in speedups.items()))
    print("server CPU per request, off / on:    " + ", ".join(f"{k} {v}x" for k, v in cpu_ratios.items()))
    total_errors = sum(r["errors"] for r in rows)
    result = {
        "benchmark": "maxsim serve, loopback, real HTTP; each cell measured in chunks on-off, off-on, ...",
        "requests_per_client": {
            "embed": args.requests_embed,
            "rerank": args.requests_rerank,
            "one_client_factor": ONE_CLIENT_FACTOR,
        },
        "clients": args.clients,
        "dtype": args.dtype or "server default (auto)",
        "batch_wait_ms": args.batch_wait_ms if args.batch_wait_ms is not None else "server default",
        "workloads": {
            "embed": "3 distinct short texts per request (questions of 16 collections, 12 languages), no repeats",
            "rerank-distinct": "1 SQuAD v1.1 question + 8 SQuAD passages, every passage used once per mode (no overlap)",
            "rerank-corpus": "1 random SQuAD v1.1 dev question + top-8 BM25 candidates from the 1,827 dev passages",
        },
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_end": os.getloadavg(),
        },
        "rows": rows,
        "speedup_batching": speedups,
        "cpu_per_request_ratio_off_over_on": cpu_ratios,
        "errors": total_errors,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
