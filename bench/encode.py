"""Encoding throughput of the default model against a plain `transformers` forward of the same backbone.

Each configuration runs in its own subprocess so that its peak memory (max RSS) is its own.
Figures are reported as ratios against the baseline measured in the same run (the machine is
noisy). Prints a table and writes bench/results/encode.json.

    python bench/encode.py [--docs 256] [--queries 512] [--threads 2] [--jina]

``--jina`` adds the rows of ``bench/encode_jina.py`` (a Jina-ColBERT-v2-shaped model, 24 layers,
hidden 1024, random weights, at 512 and 8192 tokens, float32 and bfloat16) to the same report.

Baseline ("transformers, plain"): `transformers.BertModel` loaded with the same converted
weights, float32, texts in their given order in batches of 32, each padded to its longest
member (documents truncated at 512 tokens), no length sorting. maxsim: length-sorted batches
under a token budget, inference mode, float32 and bfloat16.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "results"
CONFIGS = ("baseline", "maxsim-fp32", "maxsim-bf16")


def sample_texts(n_docs: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Passages and questions from the shared collections (many languages), else the demo corpus."""
    rng = random.Random(seed)
    docs, queries = [], []
    if SHARED.is_dir():
        for ds in sorted(SHARED.iterdir()):
            if (ds / "corpus.jsonl").is_file():
                with open(ds / "corpus.jsonl", encoding="utf-8") as fh:
                    docs += [json.loads(line)["text"] for line in fh]
                with open(ds / "queries.jsonl", encoding="utf-8") as fh:
                    queries += [json.loads(line)["text"] for line in fh]
    else:
        from maxsim.demo import demo_corpus

        corpus = demo_corpus()
        docs = [p["text"] for p in corpus["passages"]] * 10
        queries = [q["text"] for q in corpus["queries"]] * 60
    rng.shuffle(docs)
    rng.shuffle(queries)
    return docs[:n_docs], queries[:n_queries]


def _baseline_model():
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    from maxsim.models.default_model import ensure_converted

    folder = ensure_converted()
    cfg = json.loads((folder / "encoder_config.json").read_text())
    config = BertConfig(
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_layers"],
        num_attention_heads=cfg["num_heads"],
        intermediate_size=cfg["intermediate_size"],
        max_position_embeddings=cfg["max_positions"],
        type_vocab_size=cfg["type_vocab_size"],
        layer_norm_eps=cfg["layer_norm_eps"],
        hidden_act="gelu",
        pad_token_id=1,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    ours = load_file(str(folder / "encoder.safetensors"))
    h = cfg["hidden_size"]
    sd = {
        "embeddings.word_embeddings.weight": ours["word_embeddings.weight"],
        "embeddings.position_embeddings.weight": ours["position_embeddings.weight"],
        "embeddings.token_type_embeddings.weight": ours["token_type_embeddings.weight"],
        "embeddings.LayerNorm.weight": ours["emb_ln.weight"],
        "embeddings.LayerNorm.bias": ours["emb_ln.bias"],
    }
    for i in range(cfg["num_layers"]):
        p, q = f"layers.{i}.", f"encoder.layer.{i}."
        w, b = ours[p + "Wqkv.weight"], ours[p + "Wqkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            sd[q + f"attention.self.{name}.weight"] = w[j * h : (j + 1) * h]
            sd[q + f"attention.self.{name}.bias"] = b[j * h : (j + 1) * h]
        pairs = {
            "attention.output.dense": "out_proj",
            "attention.output.LayerNorm": "norm1",
            "intermediate.dense": "fc1",
            "output.dense": "fc2",
            "output.LayerNorm": "norm2",
        }
        for theirs, mine in pairs.items():
            sd[q + theirs + ".weight"] = ours[p + mine + ".weight"]
            sd[q + theirs + ".bias"] = ours[p + mine + ".bias"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k and "token_type_ids" not in k]:
        raise RuntimeError(f"baseline weights did not map: missing={missing} unexpected={unexpected}")
    return model, torch


def run_worker(config: str, n_docs: int, n_queries: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    docs, queries = sample_texts(n_docs, n_queries)
    import maxsim

    model = maxsim.load(dtype="bfloat16" if config.endswith("bf16") else "float32")
    tok = model.tokenizer
    doc_tokens = sum(len(t) for t in tok.documents(docs))
    query_tokens = len(queries) * model.query_length
    if config == "baseline":
        bert, torch = _baseline_model()
        t_docs = _plain_forward(bert, torch, [t.ids[:512] for t in tok.documents(docs)], pad=1)
        t_queries = _plain_forward(bert, torch, [t.ids for t in tok.queries(queries)], pad=1)
    else:
        model.encode_documents(docs[:8])  # warm-up
        t0 = time.perf_counter()
        model.encode_documents(docs)
        t_docs = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.encode_queries(queries)
        t_queries = time.perf_counter() - t0
    return {
        "config": config,
        "doc_tokens_per_s": doc_tokens / t_docs,
        "queries_per_s": len(queries) / t_queries,
        "query_tokens_per_s": query_tokens / t_queries,
        "doc_seconds": t_docs,
        "query_seconds": t_queries,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _plain_forward(bert, torch, sequences, pad: int, batch_size: int = 32) -> float:
    """Texts in the given order, batches of 32 padded to their longest member."""

    def batches():
        for i in range(0, len(sequences), batch_size):
            chunk = sequences[i : i + batch_size]
            longest = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), longest), dtype=torch.long)
            for r, s in enumerate(chunk):
                ids[r, : len(s)] = torch.as_tensor(s)
                mask[r, : len(s)] = 1
            yield ids, mask

    with torch.no_grad():
        ids, mask = next(batches())
        bert(input_ids=ids[:8], attention_mask=mask[:8])  # warm-up
        t0 = time.perf_counter()
        for ids, mask in batches():
            bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=256)
    ap.add_argument("--queries", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(RESULTS / "encode.json"))
    ap.add_argument("--jina", action="store_true", help="also run bench/encode_jina.py and merge its rows")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.docs, args.queries, args.threads)))
        return

    from tqdm import tqdm

    rows = []
    for config in tqdm(CONFIGS, desc="configurations"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            config,
            "--docs",
            str(args.docs),
            "--queries",
            str(args.queries),
            "--threads",
            str(args.threads),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"{config} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for r in rows:
        r["doc_speedup_vs_baseline"] = r["doc_tokens_per_s"] / base["doc_tokens_per_s"]
        r["query_speedup_vs_baseline"] = r["queries_per_s"] / base["queries_per_s"]
    print(
        f"\n{'configuration':14s} {'doc tok/s':>10s} {'x base':>7s} {'queries/s':>10s} {'x base':>7s} {'peak MB':>8s}"
    )
    for r in rows:
        print(
            f"{r['config']:14s} {r['doc_tokens_per_s']:10.0f} {r['doc_speedup_vs_baseline']:7.2f} "
            f"{r['queries_per_s']:10.1f} {r['query_speedup_vs_baseline']:7.2f} {r['peak_rss_mb']:8.0f}"
        )
    report = {
        "bench": "encode",
        "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()},
        "docs": args.docs,
        "queries": args.queries,
        "rows": rows,
    }
    if args.jina:
        jina_out = RESULTS / "encode_jina.json"
        subprocess.run(
            [
                sys.executable,
                str(Path(__file__).with_name("encode_jina.py")),
                "--threads",
                str(args.threads),
                "--out",
                str(jina_out),
            ],
            check=True,
        )
        report["jina_shape_rows"] = json.loads(jina_out.read_text())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
