"""Encoding speed and memory of a Jina-ColBERT-v2-shaped model at 512 and 8192 tokens.

The backbone has the real shape (XLM-RoBERTa with rotary positions: 24 layers, hidden 1024,
16 heads, ffn 4096, vocab 250004, 8194 positions; about 560M parameters) with random weights,
which is all timing needs, plus a 128x1024 ColBERT head. One document of N random token ids
is encoded per measurement (no padding, so attention takes SDPA's fused path). Each
configuration runs in its own subprocess, so its peak memory (max RSS, weights included) is its
own. Prints a table and writes bench/results/encode_jina.json.

    python bench/encode_jina.py [--lengths 512,8192] [--dtypes float32,bfloat16] [--reps 3] [--eager]

``--eager`` adds a float32 row whose attention materialises the [heads, N, N] score matrix and
applies softmax by hand, as the reference implementation's pure-PyTorch path does, to show what
SDPA saves at long lengths.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
JINA_SHAPE = dict(
    vocab_size=250004,
    hidden_size=1024,
    num_layers=24,
    num_heads=16,
    intermediate_size=4096,
    max_positions=8194,
    layer_norm_eps=1e-5,
    position_embedding="rotary",
    rotary_base=10000.0,
)


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since start or since the last reset) from /proc, in MB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs), so build transients don't count."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _eager_attention(q, k, v, attn_mask=None):
    """softmax(q k^T / sqrt(d) + mask) v with the full score matrix in memory."""
    import torch

    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        scores = scores + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def run_worker(dtype_name: str, length: int, reps: int, threads: int, eager: bool) -> dict:
    import torch
    from torch import nn

    import maxsim.models.encoder as enc

    torch.set_num_threads(threads)
    if eager:
        import types

        enc.F = types.SimpleNamespace(scaled_dot_product_attention=_eager_attention, gelu=torch.nn.functional.gelu)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    config = enc.EncoderConfig(**JINA_SHAPE)
    t0 = time.perf_counter()
    # Allocated directly in the target dtype (as a checkpoint load would), then filled at random.
    torch.set_default_dtype(dtype)
    with torch.device("meta"):
        encoder = enc.TransformerEncoder(config)
    encoder = encoder.to_empty(device="cpu")
    torch.set_default_dtype(torch.float32)
    enc.init_weights(encoder, seed=0)
    encoder.eval()
    head = nn.Linear(config.hidden_size, 128, bias=False).eval()
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in encoder.parameters())
    rss_loaded = _status_mb("VmRSS")
    gen = torch.Generator().manual_seed(1)

    def forward(n: int) -> None:
        ids = torch.randint(4, config.vocab_size - 2, (1, n), generator=gen)
        ids[0, 0], ids[0, 1], ids[0, -1] = 0, 250003, 2  # <s> [DocumentMarker] ... </s>
        with torch.inference_mode():
            hidden = encoder(ids, torch.ones_like(ids))
            torch.nn.functional.normalize(head(hidden.float()), dim=-1)

    forward(min(length, 128))  # warm-up (kernels, rotary cache)
    peak_reset = _reset_peak()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        forward(length)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {
        "dtype": dtype_name,
        "attention": "eager" if eager else "sdpa",
        "tokens": length,
        "reps": reps,
        "seconds": times,
        "tokens_per_s": length / best,
        "parameters": params,
        "build_seconds": build_s,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": _status_mb("VmHWM"),
        "peak_over_load_mb": _status_mb("VmHWM") - rss_loaded,
        "peak_is_forward_only": peak_reset,
        "threads": threads,
        "load_average_1m": os.getloadavg()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", default="512,8192")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--reps", type=int, default=3, help="repetitions at lengths <= 1024 (longer ones run once)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--eager", action="store_true", help="also run float32 with materialised attention")
    ap.add_argument("--out", default=str(RESULTS / "encode_jina.json"))
    ap.add_argument("--worker", nargs=3, metavar=("DTYPE", "LENGTH", "ATTENTION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        dtype, length, attention = args.worker
        reps = args.reps if int(length) <= 1024 else 1
        print(json.dumps(run_worker(dtype, int(length), reps, args.threads, attention == "eager")))
        return

    configs = [(d, int(n), "sdpa") for n in args.lengths.split(",") for d in args.dtypes.split(",")]
    if args.eager:
        configs += [("float32", int(n), "eager") for n in args.lengths.split(",")]
    rows = []
    for dtype, length, attention in configs:
        print(f"running {dtype} {attention} {length} tokens ...", file=sys.stderr, flush=True)
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            dtype,
            str(length),
            attention,
            "--reps",
            str(args.reps),
            "--threads",
            str(args.threads),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        if out.returncode != 0:
            rows.append({"dtype": dtype, "tokens": length, "attention": attention, "error": out.stderr[-2000:]})
            print(f"  failed: {out.stderr[-500:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"\n{'dtype':9s} {'attention':9s} {'tokens':>6s} {'tok/s':>8s} {'s/doc':>7s} {'peak MB':>8s} {'over weights MB':>15s}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['dtype']:9s} {r['attention']:9s} {r['tokens']:6d}   failed")
            continue
        print(
            f"{r['dtype']:9s} {r['attention']:9s} {r['tokens']:6d} {r['tokens_per_s']:8.0f} {min(r['seconds']):7.2f} "
            f"{r['peak_rss_mb']:8.0f} {r['peak_over_load_mb']:15.0f}"
        )
    report = {
        "bench": "encode_jina",
        "model": {"shape": JINA_SHAPE, "weights": "random", "head": [128, 1024]},
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
