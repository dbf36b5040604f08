"""Scale benchmark: streaming builds of 100k, 300k and 1M synthetic documents, one machine vs Ray.

    python bench/scale.py                                # all sizes, every stage; resumes
    python bench/scale.py --sizes 100000 --stages build,truth,search
    python bench/scale.py --stages encode                # encoder throughput: 1 process vs Ray 1 and 2 workers
    python bench/scale.py --stages report                # table + plots from what is stored
    python bench/scale.py --shape heaps --sizes 100000,1000000 --stages build,truth,search,report
    python bench/scale.py --sizes 20000 --centroids 8192 --stages build,truth,search,report   # codec ceiling

The documents are generated block by block from a seed (never stored): each mixes 3-6 topic
directions plus noise (rows of a fixed Gaussian pool), 30-300 tokens of dim 128 (the distribution
of bench/index.py's synthetic sets). ``--shape`` says how many topics there are:

* linear  n_docs/4 topics, so every topic is shared by ~18 documents at every size and, past the
          centroid cap, there are about as many topics as centroids (adversarial: a 4-bit residual
          must then carry the whole token noise).
* heaps   2 * sqrt(tokens) topics, growing like a vocabulary (Heaps' law) as real token
          embeddings do (PLAID sizes its centroids by the same sqrt rule).

``--centroids K`` fixes the codec's centroid count, so a small collection can be given the
topics-per-centroid ratio of a large one; collections of at most 50k documents are also searched
with exact MaxSim over every stored vector ("ceiling": the recall no search setting can pass).
Stages, each checkpointed under --work (default /work/bench-data/scale[-SHAPE][/centroids-K],
outside the repository):

* build   ``maxsim.index.build.build_from_vectors`` in a child process (peak RSS of that process,
          wall time summed over resumed attempts); a killed run resumes from its last chunk.
* truth   brute-force MaxSim of the sampled queries over the original vectors (regenerated),
          checkpointed every few blocks.
* search  p50/p95 latency (one query at a time, one thread) and recall@10 against the truth.
* diagnose  each search stage taken apart (bench/scale_diagnose.py): its time, and the recall of
          the documents it keeps, down to an oracle re-rank of the short list with the originals.
* ray     the same collection built by ``maxsim.distributed`` on a 2-node local Ray cluster
          (``ray.cluster_utils.Cluster``) into a 2-shard index, and searched.
* encode  document tokens/s of the default model: one process vs Ray with 1 and 2 workers.
* report  write the results file and plot (without it a run only prints its table).

``--refine-bits R`` (= ``--nbits``) builds two-plane indexes: search keeps the ``nbits`` plane
resident and reads the second plane only for the short list it re-ranks exactly.

Results: bench/results/scale-<nbits>[+R]bit[-SHAPE][-kK].json (+ .png), a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DIM = 128
N_QUERY_TOKENS = 32
BLOCK = 1024
NOISE = 0.6 / np.sqrt(DIM)
NOISE_POOL = 1 << 18


SHAPE_ENV = "MAXSIM_SCALE_SHAPE"
#: how the number of topic directions grows with the collection (see the module docstring)
SHAPES = ("linear", "heaps")


def n_topics(shape: str, n_docs: int) -> int:
    if shape == "linear":
        return max(64, n_docs // 4)
    if shape == "heaps":
        # Heaps-like: distinct directions grow like sqrt(tokens), as a vocabulary does
        return max(64, round(2 * np.sqrt(165 * n_docs)))
    raise SystemExit(f"unknown shape {shape!r}: expected one of {', '.join(SHAPES)}")


# ------------------------------------------------------------------------------------------
# synthetic collection, regenerated from its seed


class Synthetic:
    def __init__(self, n_docs: int, seed: int = 0, shape: str | None = None):
        self.n_docs, self.seed = n_docs, seed
        # the environment carries --shape into build children and Ray workers
        self.shape = shape or os.environ.get(SHAPE_ENV, "linear")
        rng = np.random.default_rng([seed, n_docs])
        self.n_topics = n_topics(self.shape, n_docs)
        t = rng.standard_normal((self.n_topics, DIM), dtype=np.float32)
        self.topics = t / np.linalg.norm(t, axis=1, keepdims=True)
        # token noise is drawn from a fixed pool of Gaussian rows: generating 165M x 128 fresh
        # normals would cost as much as the build itself
        self.noise = NOISE * rng.standard_normal((NOISE_POOL, DIM), dtype=np.float32)

    def block(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens float32 [n, DIM] unit rows, offsets [docs + 1]) of block b."""
        rng = np.random.default_rng([self.seed, self.n_docs, b + 1])
        n = min(BLOCK, self.n_docs - b * BLOCK)
        lengths = rng.integers(30, 301, size=n)
        n_mine = rng.integers(3, 7, size=n)
        mine = rng.integers(0, self.n_topics, size=(n, 6))
        doc_of = np.repeat(np.arange(n), lengths)
        pick = (rng.random(len(doc_of)) * n_mine[doc_of]).astype(np.int64)
        x = self.topics[mine[doc_of, pick]]
        x += self.noise[rng.integers(0, NOISE_POOL, size=len(doc_of))]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return x, offsets

    @property
    def n_blocks(self) -> int:
        return -(-self.n_docs // BLOCK)

    def expected_tokens(self) -> int:
        return int(self.n_docs * 165)

    def docs(self, skip: int = 0):
        from maxsim.index.build import VectorDoc

        for b in range(skip // BLOCK, self.n_blocks):
            x, off = self.block(b)
            for j in range(len(off) - 1):
                i = b * BLOCK + j
                if i >= skip:
                    yield VectorDoc(f"doc{i:08d}", x[off[j] : off[j + 1]])

    def queries(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.n_docs, 0])
        src = np.sort(rng.choice(self.n_docs, size=n, replace=False))
        out = np.empty((n, N_QUERY_TOKENS, DIM), dtype=np.float32)
        for i, d in enumerate(src):
            x, off = self.block(int(d) // BLOCK)
            j = int(d) % BLOCK
            doc = x[off[j] : off[j + 1]]
            q = doc[rng.integers(0, len(doc), size=N_QUERY_TOKENS)] + NOISE * rng.standard_normal((N_QUERY_TOKENS, DIM))
            out[i] = q / np.linalg.norm(q, axis=1, keepdims=True)
        return out, src


# ------------------------------------------------------------------------------------------
# stages


def load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def bits_tag(nbits: int, refine_bits: int = 0) -> str:
    """How result files name a codec: "4" (one plane) or "4+4" (a second, refinement plane)."""
    return f"{nbits}+{refine_bits}" if refine_bits else f"{nbits}"


def stage_build(n: int, work: Path, nbits: int, n_centroids: int | None = None, refine_bits: int = 0) -> dict:
    """Run the streaming build in a child process (resumable); wall time and peak RSS."""
    bits = bits_tag(nbits, refine_bits)
    out = work / f"{n}" / f"single-{bits}bit"
    rec_path = work / f"{n}" / f"build-{bits}bit.json"
    rec = load_json(rec_path)
    if rec.get("done"):
        return rec
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "_build", str(n), str(out), str(nbits), str(n_centroids or 0), str(refine_bits)]
    t0 = time.time()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.time() - t0
    rec["attempts"] = rec.get("attempts", []) + [
        {
            "seconds": elapsed,
            "peak_rss_bytes": usage.ru_maxrss * 1024,
            "exit": os.waitstatus_to_exitcode(status),
            "load_avg": os.getloadavg(),
        }
    ]
    ok = os.waitstatus_to_exitcode(status) == 0
    if ok:
        from maxsim.index import Index

        with Index.open(out, readonly=True) as idx:
            info = idx.info()
        rec.update(
            done=True,
            build_s=sum(a["seconds"] for a in rec["attempts"]),
            peak_rss_bytes=max(a["peak_rss_bytes"] for a in rec["attempts"]),
            tokens=info["tokens"],
            docs=info["documents"],
            centroids=info["centroids"],
            segments=info["segments"],
            bytes_on_disk=dir_bytes(out),
            bytes_per_token=dir_bytes(out) / info["tokens"],
            nbits=nbits,
            refine_bits=refine_bits,
            resident_bytes_per_token=(dir_bytes(out) - refine_bits * DIM // 8 * info["tokens"]) / info["tokens"],
        )
    save_json(rec_path, rec)
    if not ok:
        raise SystemExit(f"build of {n} failed with exit {os.waitstatus_to_exitcode(status)}")
    return rec


def child_build(n: int, out: Path, nbits: int, n_centroids: int, refine_bits: int = 0) -> None:
    from maxsim.index.build import build_from_vectors

    corpus = Synthetic(n)
    idx = build_from_vectors(
        out,
        corpus.docs,
        dim=DIM,
        nbits=nbits,
        expected_tokens=corpus.expected_tokens(),
        total_docs=n,
        n_centroids=n_centroids or None,
        refine_bits=refine_bits,
    )
    idx.close()


def stage_truth(n: int, work: Path, n_queries: int) -> np.ndarray:
    """Exact top-10 MaxSim over the original vectors for the sampled queries (checkpointed)."""
    d = work / f"{n}"
    d.mkdir(parents=True, exist_ok=True)
    final = d / f"truth-{n_queries}.npy"
    if final.exists():
        return np.load(final)
    corpus = Synthetic(n)
    queries, _ = corpus.queries(n_queries)
    part = d / f"truth-{n_queries}.partial.npz"
    scores = np.full((n_queries, n), -np.inf, dtype=np.float32)
    start = 0
    if part.exists():
        z = np.load(part)
        scores, start = z["scores"], int(z["next_block"])
    qflat = queries.reshape(-1, DIM)
    last = time.time()
    for b in tqdm(
        range(start, corpus.n_blocks), initial=start, total=corpus.n_blocks, desc=f"truth {n}", mininterval=5
    ):
        x, off = corpus.block(b)
        sims = qflat @ x.T
        best = np.maximum.reduceat(sims, off[:-1], axis=1)
        scores[:, b * BLOCK : b * BLOCK + len(off) - 1] = best.reshape(n_queries, N_QUERY_TOKENS, -1).sum(axis=1)
        if time.time() - last > 60:
            np.savez(d / "truth.tmp.npz", scores=scores, next_block=b + 1)
            os.replace(d / "truth.tmp.npz", part)
            last = time.time()
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.save(final, top)
    part.unlink(missing_ok=True)
    return top


#: One fixed ladder at every size (not chosen per size): budgets are for the whole index.
#: Unless a setting says otherwise: one thread, and centroid scores as SearchConfig picks them
#: ("auto": bfloat16 at 65,536+ centroids on CPUs with native bfloat16); "wide-f32" is the
#: float32 baseline of "wide" in the same run, "wide-2t" the same search on both cores,
#: "wide-1plane" without the second residual plane (the same as "wide" for one-plane indexes).
SETTINGS = {
    "fast": dict(nprobe=2, n_candidates=200, n_exact=30),
    "default": {},
    "mid": dict(nprobe=8, n_candidates=1000, n_exact=100),
    "wide": dict(nprobe=8, n_candidates=2000, n_exact=200),
    "wide-120": dict(nprobe=8, n_candidates=2000, n_exact=120),
    "wide-f32": dict(nprobe=8, n_candidates=2000, n_exact=200, centroid_scores="float32"),
    "wide-2t": dict(nprobe=8, n_candidates=2000, n_exact=200, threads=2),
    # a two-plane index re-ranking from its first plane only: the plain nbits index's result
    "wide-1plane": dict(nprobe=8, n_candidates=2000, n_exact=200, refine=False),
    "deep": dict(nprobe=16, n_candidates=4000, n_exact=400),
}
#: Settings the diagnose stage takes apart stage by stage.
DIAGNOSE_SETTINGS = {k: SETTINGS[k] for k in ("default", "mid", "wide", "wide-f32", "wide-1plane", "deep")}
#: Exact MaxSim over every stored (compressed) vector: the recall no setting of this index can
#: pass. Seconds per query, so only for small collections.
CEILING = {"ceiling": dict(exact=True)}
CEILING_MAX_DOCS = 50_000


def search_inputs(n: int, work: Path, n_queries: int):
    """(exact top-10 [n_queries, 10], the collection, its sampled queries [n_queries, nq, dim])."""
    truth = stage_truth(n, work, n_queries)
    corpus = Synthetic(n)
    queries, _ = corpus.queries(n_queries)
    return truth, corpus, queries


def stage_search(
    n: int, work: Path, bits: str, n_queries: int, index_dir: Path | None = None, label: str = "single"
) -> dict:
    from maxsim.index import SearchConfig

    rec_path = work / f"{n}" / f"search-{label}-{bits}bit.json"
    rec = load_json(rec_path)
    if rec.get("done"):
        return rec
    truth, _, queries = search_inputs(n, work, n_queries)
    store = open_store(index_dir or work / f"{n}" / f"single-{bits}bit")
    settings = SETTINGS | (CEILING if n <= CEILING_MAX_DOCS else {})
    # Warm: every query once at the deepest setting first, so the page cache holds what search
    # reads and no setting pays for being timed first (a 1M index is 11-22 GB on disk).
    for q in tqdm(queries, desc=f"warm {label} {n}", mininterval=5):
        store.search_embeddings([q], k=10, config=SearchConfig(threads=1, **SETTINGS["deep"]))
    rec["warmed"] = True
    for name, kw in settings.items():
        cfg = SearchConfig(**({"threads": 1} | kw))
        for q in queries[:5]:
            store.search_embeddings([q], k=10, config=cfg)
        times, found = [], []
        for q in tqdm(queries, desc=f"search {label} {n} {name}", mininterval=5):
            t0 = time.perf_counter()
            hits = store.search_embeddings([q], k=10, config=cfg)[0]
            times.append(time.perf_counter() - t0)
            found.append([int(h["id"][3:]) for h in hits])
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth.tolist(), strict=True)]))
        rec[name] = {
            "p50_ms": 1e3 * float(np.percentile(times, 50)),
            "p95_ms": 1e3 * float(np.percentile(times, 95)),
            "recall_at_10": recall,
            "queries": n_queries,
            "load_avg": os.getloadavg(),
            "settings": kw,
        }
    store.close()
    rec["done"] = True
    save_json(rec_path, rec)
    return rec


def open_store(path: Path):
    from maxsim.index import Index

    if (path / "shards.json").exists():
        from maxsim.index.sharded import ShardedIndex

        return ShardedIndex.open(path, readonly=True)
    return Index.open(path, readonly=True)


# ------------------------------------------------------------------------------------------
# report


#: The records of one system at one size: a build (the first key) and the searches of that very
#: index. They are stored, replaced and kept together, never mixed with another build's.
SYSTEMS = {
    "single": {"build": "build", "search": "search-single", "diagnose": "diagnose"},
    "ray": {"ray_build": "ray-build", "ray_search": "search-ray"},
}


def gather(work: Path, sizes: list[int], bits: str) -> dict:
    out: dict = {
        "sizes": {},
        "nbits": int(bits.split("+")[0]),
        "refine_bits": int(bits.split("+")[1] if "+" in bits else 0),
    }
    for n in sizes:
        row = {}
        for keys in SYSTEMS.values():
            for key, stem in keys.items():
                path = work / f"{n}" / f"{stem}-{bits}bit.json"
                rec = load_json(path)
                if rec.get("done"):
                    # when it was measured, so a table mixing stored runs can say which is which
                    rec.setdefault(
                        "finished_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))
                    )
                    row[key] = rec
        out["sizes"][str(n)] = row
    enc = load_json(work / "encode.json")
    if enc.get("done"):
        out["encode"] = enc
    return out


def keep_stored_rows(stored: dict, res: dict) -> dict:
    """The stored results with this run's records put in, one system at a time: where the work
    folder holds a system's build at a size (one machine's, or Ray's), that system's records
    there are taken from the work folder whole (its searches belong to that build); any other
    stored system and size is kept, so a run with a fresh or another work folder, or one that
    ran only one of the systems, never drops measured records."""
    for n, old in stored.get("sizes", {}).items():
        row = res["sizes"].setdefault(n, {})
        for keys in SYSTEMS.values():
            build_key = next(iter(keys))
            if build_key not in row:
                row.update({k: old[k] for k in keys if k in old})
    res["sizes"] = dict(sorted(res["sizes"].items(), key=lambda kv: int(kv[0])))
    if "encode" not in res and "encode" in stored:
        res["encode"] = stored["encode"]
    return res


def report(res: dict) -> None:
    print(
        f"{'docs':>9} {'system':>8} {'build s':>8} {'peak RSS GB':>11} {'B/token':>8}  search: setting p50/p95 ms R@10"
    )
    for n, row in res["sizes"].items():
        for sysname, b, s in [("single", "build", "search"), ("ray x2", "ray_build", "ray_search")]:
            if b not in row:
                continue
            br, sr = row[b], row.get(s, {})
            runs = "  ".join(
                f"{name} {r['p50_ms']:.1f}/{r['p95_ms']:.1f} {r['recall_at_10']:.3f}"
                for name, r in sr.items()
                if isinstance(r, dict)
            )
            print(
                f"{n:>9} {sysname:>8} {br['build_s']:8.0f} {br['peak_rss_bytes'] / 1e9:11.2f} "
                f"{br['bytes_per_token']:8.2f}  {runs}"
            )
    for n, row in res["sizes"].items():
        for name, d in row.get("diagnose", {}).items():
            if isinstance(d, dict):
                r, t = d["recall_at_10"], d["mean_ms"]
                print(
                    f"{n:>9} diagnose {name:<8} R@10 probed {r['probed']:.3f} candidates {r['candidates']:.3f} "
                    f"short list {r['short_list']:.3f} oracle {r['oracle']:.3f} final {r['final']:.3f} | ms "
                    + " ".join(f"{k[3:]} {v:.1f}" for k, v in t.items())
                )
    if "encode" in res:
        e = res["encode"]
        print("encode tokens/s: " + ", ".join(f"{k} {v['tokens_per_s']:.0f}" for k, v in e["runs"].items()))


def trade_off(ax, res: dict) -> None:
    """p50 against recall@10 of every search setting at the largest size searched, with the
    issue's target (under 50 ms at 0.9 or more) shaded."""
    searched = [(int(n), row["search"]) for n, row in res["sizes"].items() if "search" in row]
    if not searched:
        return
    n, search = max(searched, key=lambda t: t[0])
    for name, rec in search.items():
        if isinstance(rec, dict) and "p50_ms" in rec:
            ax.plot(rec["p50_ms"], rec["recall_at_10"], "o", color="tab:blue")
            ax.annotate(
                name, (rec["p50_ms"], rec["recall_at_10"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.fill_between([0, 50], 0.9, 1.0, color="tab:green", alpha=0.1, label="target")
    ax.axhline(0.9, color="tab:green", lw=0.8, ls="--")
    ax.axvline(50, color="tab:green", lw=0.8, ls="--")
    ax.set_xlim(left=0)
    ax.set_xlabel("p50 ms (one thread)")
    ax.set_title(f"recall@10 vs p50 per setting, {n:,} docs", fontsize=9)
    ax.grid(alpha=0.3)


def plot(res: dict, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = [
        ("build_s", "build time (s)"),
        ("peak_rss_bytes", "peak RSS (bytes)"),
        ("bytes_per_token", "bytes/token"),
        ("p50_ms", "p50 search latency (ms, default)"),
        ("recall_at_10", "recall@10 (default)"),
    ]
    fig, axes = plt.subplots(1, len(figures) + 1, figsize=(4 * (len(figures) + 1), 3.6))
    for ax, (key, title) in zip(axes, figures, strict=False):
        for sysname, b, s in [
            ("one machine", "build", "search"),
            ("Ray, 2 nodes, 2 shards", "ray_build", "ray_search"),
        ]:
            xs, ys = [], []
            for n, row in res["sizes"].items():
                src = (
                    row.get(b, {})
                    if key in ("build_s", "peak_rss_bytes", "bytes_per_token")
                    else row.get(s, {}).get("default", {})
                )
                if key in src:
                    xs.append(int(n))
                    ys.append(src[key])
            if xs:
                ax.plot(xs, ys, marker="o", label=sysname)
        ax.set_xscale("log")
        ax.set_xlabel("documents")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    trade_off(axes[-1], res)
    fig.suptitle(f"shape {res.get('shape', 'linear')}, centroids {res.get('centroids', 'rule')}", fontsize=9)
    fig.tight_layout()
    fig.savefig(RESULTS / f"scale-{name}.png", dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        child_build(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_ray":
        from bench.scale_ray import child_ray_build  # noqa: PLC0415

        child_ray_build(int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--stages", default="build,truth,search,ray,encode,report")
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument(
        "--refine-bits", type=int, default=0, help="a second residual plane (= --nbits), read for the short list only"
    )
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--shape", choices=SHAPES, default="linear", help="how the topics grow with the collection")
    ap.add_argument(
        "--centroids", type=int, default=0, help="fix the number of centroids (default: the index's own rule)"
    )
    ap.add_argument("--work", type=Path, help="work folder (default /work/bench-data/scale[-SHAPE][/centroids-K])")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    stages = args.stages.split(",")
    os.environ[SHAPE_ENV] = args.shape  # build children and Ray workers generate the same collection
    suffix = ("" if args.shape == "linear" else f"-{args.shape}") + (f"-k{args.centroids}" if args.centroids else "")
    bits = bits_tag(args.nbits, args.refine_bits)
    if args.refine_bits and ("ray" in stages or "encode" in stages):
        raise SystemExit("--refine-bits: the ray and encode stages run one-plane indexes only")
    if args.work is None:
        args.work = Path("/work/bench-data/scale" + ("" if args.shape == "linear" else f"-{args.shape}"))
        if args.centroids:
            args.work /= f"centroids-{args.centroids}"
    args.work.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        if "build" in stages:
            stage_build(n, args.work, args.nbits, args.centroids or None, args.refine_bits)
        if "truth" in stages:
            stage_truth(n, args.work, args.queries)
        if "search" in stages:
            stage_search(n, args.work, bits, args.queries)
        if "diagnose" in stages:
            from bench.scale_diagnose import stage_diagnose  # noqa: PLC0415

            stage_diagnose(n, args.work, bits, args.queries)
        if "ray" in stages:
            from bench.scale_ray import stage_ray  # noqa: PLC0415

            stage_ray(n, args.work, args.nbits)
            stage_search(n, args.work, bits, args.queries, args.work / f"{n}" / f"ray-{bits}bit", "ray")
    if "encode" in stages:
        from bench.scale_ray import stage_encode  # noqa: PLC0415

        stage_encode(args.work)
    res = gather(args.work, sizes, bits)
    res.update(shape=args.shape, centroids=args.centroids or "rule")
    out = RESULTS / f"scale-{bits}bit{suffix}.json"
    res = keep_stored_rows(load_json(out), res)
    if "report" not in stages:  # a trial run (another --work, a few stages) leaves the stored figures alone
        report(res)
        print(f"not written to {out} (add the report stage)")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    save_json(out, res)
    report(res)
    plot(res, f"{bits}bit{suffix}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
