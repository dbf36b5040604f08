"""Run BM25, the dense baseline and a late-interaction model on BEIR collections; score with ranx.

One backbone pass per text serves every ColBERT ``dim`` and the dense documents (see
:mod:`maxsim.evaluation.encoding`). Runs keep each query's top ``k`` documents (k = 100).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from maxsim.errors import InvalidArgumentError
from maxsim.evaluation.datasets import Collection
from maxsim.evaluation.metrics import METRICS, evaluate_run

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]


@dataclass(frozen=True)
class EvalConfig:
    """What one evaluation measures."""

    dims: tuple[int, ...] = (128, 96, 64)
    baselines: tuple[str, ...] = ("bm25", "dense")
    k: int = 100
    metrics: tuple[str, ...] = METRICS
    cache_dir: str | None = None
    colbert: bool = True
    hybrid: bool = True  # BM25 + late-interaction fusion rows (when both run)
    show_progress: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.baselines) - {"bm25", "dense"}
        if unknown:
            raise InvalidArgumentError(f"unknown baseline(s) {sorted(unknown)}; choose from bm25, dense")
        if self.k < 10:
            raise InvalidArgumentError(f"k must be >= 10 for nDCG@10, got {self.k}")


@dataclass
class CollectionResult:
    name: str
    language: str
    n_queries: int
    n_docs: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # system -> metric -> value
    seconds: dict[str, float] = field(default_factory=dict)
    query_language: str | None = None  # differs from ``language`` on a cross-lingual collection

    @property
    def cross_lingual(self) -> bool:
        return self.query_language is not None and self.query_language != self.language


def colbert_system(dim: int) -> str:
    return f"colbert-{dim}"


#: Hybrid rows (the BM25 baseline fused with the widest late-interaction run): system -> (fusion,
#: lexical weight). The baseline stems words when the collection's language has a stemmer; the
#: index's lexical half does not (an index mixes languages), which these rows do not measure.
#: The index's default fusion (maxsim.scoring.fusion) is the best of these on the dev collections.
HYBRID_SYSTEMS = {
    "hybrid-rank": ("rank", 0.5),
    "hybrid-score-0.1": ("score", 0.1),
    "hybrid-score-0.2": ("score", 0.2),
    "hybrid-score-0.3": ("score", 0.3),
    "hybrid-score-0.5": ("score", 0.5),
}


def hybrid_runs(bm25: Run, late: Run, k: int) -> dict[str, Run]:
    """Every :data:`HYBRID_SYSTEMS` fusion of two runs, each query cut to its top ``k``."""
    from maxsim.scoring.fusion import fuse

    out: dict[str, Run] = {}
    for system, (method, weight) in HYBRID_SYSTEMS.items():
        out[system] = {q: dict(fuse(bm25.get(q, {}), late[q], weight, method)[:k]) for q in late}
    return out


def late_interaction_topk(
    queries: Sequence[np.ndarray],
    documents: Sequence[np.ndarray],
    k: int,
    doc_chunk_tokens: int = 1 << 14,
    max_block_floats: int = 1 << 25,
    dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact MaxSim of every query against every document; the top ``k`` (indices, scores) per query.

    queries: each [n_q, dim]; documents: each [n_d, dim] (rows L2-normalised). Documents are padded
    in length-sorted blocks and scored against as many queries at a time as keep the similarity
    block under ``max_block_floats``, so memory does not grow with the number of queries. Padding
    rows get an extra coordinate that scores -1e4 against every query row, so a plain max skips
    them without a mask pass (the mask pass cost more than the matrix product). ``dtype=bfloat16``
    runs the products in bfloat16 (fast on AMX / AVX512-BF16 CPUs; sums stay float32).
    """
    nq, nd = len(queries), len(documents)
    dim = queries[0].shape[1]
    qlen = max(len(q) for q in queries)
    Q = torch.zeros(nq, qlen, dim + 1)
    qmask = torch.zeros(nq, qlen, dtype=torch.bool)
    for i, q in enumerate(queries):
        Q[i, : len(q), :dim] = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32))
        qmask[i, : len(q)] = True
    Q[:, :, dim] = 1.0
    Qflat = Q.reshape(nq * qlen, dim + 1).to(dtype)
    scores = torch.zeros(nq, nd)
    lengths = np.array([len(d) for d in documents])
    order = np.argsort(lengths, kind="stable")
    start = 0
    with torch.no_grad():
        while start < nd:
            stop, longest = start, 0
            while stop < nd and (
                stop == start or max(longest, lengths[order[stop]]) * (stop - start + 1) <= doc_chunk_tokens
            ):
                longest = max(longest, int(lengths[order[stop]]))
                stop += 1
            idx = order[start:stop]
            width = max(longest, 1)
            D = torch.zeros(len(idx), width, dim + 1)
            D[:, :, dim] = -1e4  # padding: never the max
            for r, j in enumerate(idx):
                D[r, : lengths[j], :dim] = torch.from_numpy(np.ascontiguousarray(documents[j], dtype=np.float32))
                D[r, : lengths[j], dim] = 0.0
            Dflat = D.reshape(-1, dim + 1).T.contiguous().to(dtype)
            empty = torch.from_numpy(lengths[idx] == 0)
            step = max(1, max_block_floats // max(1, qlen * Dflat.shape[1]))
            cols = torch.from_numpy(idx)
            for q0 in range(0, nq, step):
                q1 = min(nq, q0 + step)
                sims = (Qflat[q0 * qlen : q1 * qlen] @ Dflat).reshape(q1 - q0, qlen, len(idx), width)
                best = sims.amax(dim=3).float()  # [nq, qlen, nb]
                best[:, :, empty] = 0.0  # empty documents score 0
                scores[q0:q1, cols] = (best * qmask[q0:q1, :, None]).sum(dim=1)
            start = stop
    top = torch.topk(scores, min(k, nd), dim=1)
    return top.indices.numpy(), top.values.numpy()


def _to_run(qids: Sequence[str], doc_ids: Sequence[str], idx: np.ndarray, vals: np.ndarray) -> Run:
    return {q: {doc_ids[int(j)]: float(s) for j, s in zip(idx[i], vals[i])} for i, q in enumerate(qids)}


def evaluate_collection(
    collection: Collection,
    model,
    config: EvalConfig,
    head: torch.nn.Linear | None = None,
    fingerprint: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    dense_model=None,
    memo: dict | None = None,
) -> CollectionResult:
    """All systems on one collection. ``head`` overrides the model's 128-wide head (e.g. a trained one).

    ``dense_model`` is the backbone the dense baseline mean-pools (default: ``model``). It must be
    given when ``model``'s encoder carries merged adapters, so the baseline stays the plain backbone.
    ``memo``: states of inputs already encoded in this run (see :func:`backbone_states`).
    """
    from maxsim.evaluation.bm25 import BM25Retriever
    from maxsim.evaluation.crosslingual import is_cross_lingual, query_language
    from maxsim.evaluation.encoding import backbone_states, mean_pooled, project
    from maxsim.models.dense import DOCUMENT_PREFIX, QUERY_PREFIX, dense_items

    say = on_stage or (lambda s: None)
    qids = list(collection.queries)
    qtexts = [collection.queries[q] for q in qids]
    doc_ids = list(collection.corpus)
    dtexts = [collection.corpus[d] for d in doc_ids]
    # BM25 stems with one language's rules; a cross-lingual set gets plain tokens
    lang = collection.languages[0] if len(collection.languages) == 1 and not is_cross_lingual(collection) else None
    res = CollectionResult(
        collection.name, collection.language, len(qids), len(doc_ids), query_language=query_language(collection)
    )
    runs: dict[str, Run] = {}

    if "bm25" in config.baselines:
        t = time.perf_counter()
        say("bm25")
        bm = BM25Retriever(language=lang)
        bm.index(doc_ids, dtexts)
        hits = bm.search(qtexts, k=config.k)
        runs["bm25"] = dict(zip(qids, hits))
        res.seconds["bm25"] = time.perf_counter() - t

    need_docs = config.colbert or "dense" in config.baselines
    if model is not None and need_docs:
        t = time.perf_counter()
        say("encoding documents")
        doc_items = model.tokenizer.documents(dtexts)
        doc_states = backbone_states(model, doc_items, config.cache_dir, fingerprint, config.show_progress, memo)
        res.seconds["encode_documents"] = time.perf_counter() - t

        if config.colbert:
            t = time.perf_counter()
            say("encoding queries")
            q_states = backbone_states(
                model, model.tokenizer.queries(qtexts), config.cache_dir, fingerprint, config.show_progress, memo
            )
            res.seconds["encode_queries"] = time.perf_counter() - t
            t = time.perf_counter()
            h = head if head is not None else model.heads[max(model.heads)]
            # a bfloat16 model is scored in bfloat16 too (products on AMX); float32 stays exact
            score_dtype = torch.bfloat16 if getattr(model, "dtype", None) == torch.bfloat16 else torch.float32
            q_vecs = project(q_states, h, list(config.dims))
            d_vecs = project(doc_states, h, list(config.dims))
            for dim in config.dims:
                say(f"colbert {dim}")
                idx, vals = late_interaction_topk(q_vecs[dim], d_vecs[dim], config.k, dtype=score_dtype)
                runs[colbert_system(dim)] = _to_run(qids, doc_ids, idx, vals)
            res.seconds["colbert_scoring"] = time.perf_counter() - t

        if "dense" in config.baselines:
            t = time.perf_counter()
            say("dense")
            dm = model if dense_model is None else dense_model
            dfp = fingerprint if dm is model else None
            d_items = dense_items(dm, dtexts, DOCUMENT_PREFIX)
            if dm is model:
                d_dense = mean_pooled(doc_states)
                redo = [i for i, (a, b) in enumerate(zip(d_items, doc_items)) if not np.array_equal(a.ids, b.ids)]
            else:  # adapted ColBERT encoder: the baseline runs the plain backbone
                d_dense = np.zeros((len(d_items), dm._hidden_size()), dtype=np.float32)
                redo = list(range(len(d_items)))
            if redo:  # inputs that differ from the ColBERT ones get their own pass
                d_dense[redo] = mean_pooled(
                    backbone_states(dm, [d_items[i] for i in redo], config.cache_dir, dfp, config.show_progress, memo)
                )
            q_dense = mean_pooled(
                backbone_states(
                    dm, dense_items(dm, qtexts, QUERY_PREFIX), config.cache_dir, dfp, config.show_progress, memo
                )
            )
            s = torch.from_numpy(q_dense @ d_dense.T)  # dot products of unit vectors
            top = torch.topk(s, min(config.k, len(doc_ids)), dim=1)
            runs["dense"] = _to_run(qids, doc_ids, top.indices.numpy(), top.values.numpy())
            res.seconds["dense"] = time.perf_counter() - t

    if config.hybrid and "bm25" in runs and config.colbert and model is not None:
        runs.update(hybrid_runs(runs["bm25"], runs[colbert_system(max(config.dims))], config.k))

    for system, run in runs.items():
        res.metrics[system] = evaluate_run(collection.qrels, run, config.metrics)
    return res


def average(results: Sequence[CollectionResult], metrics: Sequence[str]) -> dict[str, dict[str, float]]:
    """Unweighted mean over collections, per system (systems present in every collection only)."""
    if not results:
        return {}
    systems = [s for s in results[0].metrics if all(s in r.metrics for r in results)]
    return {s: {m: float(np.mean([r.metrics[s][m] for r in results])) for m in metrics} for s in systems}


def language_label(r: CollectionResult) -> str:
    """``es`` for a monolingual collection, ``es>en`` for Spanish questions on English passages."""
    return f"{r.query_language}>{r.language}" if r.cross_lingual else r.language


def by_language(results: Sequence[CollectionResult], metrics: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    groups: dict[str, list[CollectionResult]] = {}
    for r in results:
        groups.setdefault(language_label(r), []).append(r)
    return {lang: average(rs, metrics) for lang, rs in sorted(groups.items())}


def halves(results: Sequence[CollectionResult], metrics: Sequence[str]) -> dict[str, dict]:
    """Monolingual and cross-lingual collections averaged apart (a half with no collection is left out)."""
    out = {}
    for half, members in (
        ("monolingual", [r for r in results if not r.cross_lingual]),
        ("cross_lingual", [r for r in results if r.cross_lingual]),
    ):
        if members:
            out[half] = {
                "collections": [r.name for r in members],
                "n_queries": sum(r.n_queries for r in members),
                "average": average(members, metrics),
            }
    return out


def results_to_json(results: Sequence[CollectionResult], config: EvalConfig, extra: dict | None = None) -> dict:
    rows = []
    for r in results:
        row = asdict(r)
        row["cross_lingual"] = r.cross_lingual
        rows.append(row)
    return {
        "config": {**asdict(config), "dims": list(config.dims), "baselines": list(config.baselines)},
        **(extra or {}),
        "collections": rows,
        "average": average(results, config.metrics),
        "halves": halves(results, config.metrics),
        "by_language": by_language(results, config.metrics),
    }


def save_json(data: dict, path: Path) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")


def evaluate(
    paths: Sequence[str | Path],
    model=None,
    config: EvalConfig | None = None,
    *,
    head: torch.nn.Linear | None = None,
    split: str = "dev",
    max_queries: int | None = None,
    max_docs: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    log_fn: Callable[[str], None] | None = print,
    dense_model=None,
) -> dict:
    """Evaluate on every collection under ``paths``; return the results dict (and write a report to ``out``).

    ``model`` is a loaded :class:`maxsim.Model` (``None`` loads the default one unless the config
    asks for BM25 only). ``dense_model``: the plain backbone for the dense baseline, found
    automatically for the default model when its encoder carries a trained adapter.
    """
    from maxsim.evaluation.datasets import find_collections, load_collection, sample_collection
    from maxsim.evaluation.encoding import model_fingerprint

    config = config or EvalConfig()
    say = log_fn or (lambda s: None)
    if dense_model is None and model is not None and "dense" in config.baselines and model.info.get("adapter"):
        dense_model = plain_backbone_model(model)
    folders = find_collections(list(paths), split)
    needs_model = config.colbert or "dense" in config.baselines
    if model is None and needs_model:
        from maxsim.models.loading import load

        model = load()
    if model is not None and config.colbert:
        top = max(model.heads) if head is None else head.out_features
        bad = [d for d in config.dims if d > top or d < 1]
        if bad:
            raise InvalidArgumentError(f"dims {bad} are not served by a {top}-wide head")
    fingerprint = model_fingerprint(model) if model is not None else None
    t0 = time.perf_counter()
    results = []
    memo: dict = {}  # states by (model, input): cross-lingual sets reuse their monolingual inputs
    for n, folder in enumerate(folders, 1):
        col = load_collection(folder, split)
        if max_queries or max_docs:
            col = sample_collection(col, max_queries, max_docs, seed)
        say(f"[{n}/{len(folders)}] {col.name} ({col.language}): {len(col.queries)} queries, {len(col.corpus)} docs")
        r = evaluate_collection(
            col,
            model,
            config,
            head=head,
            fingerprint=fingerprint,
            on_stage=(lambda s: say(f"    {s}")) if config.show_progress else None,
            dense_model=dense_model,
            memo=memo,
        )
        line = "  ".join(f"{s} {100 * m['ndcg@10']:.1f}" for s, m in r.metrics.items() if "ndcg@10" in m)
        say(f"    nDCG@10: {line}")
        results.append(r)
    extra = {
        "model": getattr(model, "name", None),
        "head": getattr(head, "_maxsim_source", None),
        "adapter": _adapter_source(model),
        "split": split,
        "sample": {"max_queries": max_queries, "max_docs": max_docs, "seed": seed}
        if (max_queries or max_docs)
        else None,
        "seconds": time.perf_counter() - t0,
        "dtype": str(getattr(model, "dtype", None)).replace("torch.", "") if model is not None else None,
    }
    data = results_to_json(results, config, extra)
    if out is not None:
        from maxsim.evaluation.report import write_report

        paths_out = write_report(data, Path(out))
        say("wrote " + ", ".join(str(p) for p in paths_out.values()))
    return data


def _adapter_source(model) -> str | None:
    if model is None:
        return None
    source = model.info.get("adapter_file") or model.info.get("adapter")
    return str(source) if source else None


def plain_backbone_model(model):
    """The same model without its trained adapter (for the dense baseline of the same backbone)."""
    from maxsim.models.default_model import DEFAULT_MODEL_NAME, load_default_model

    if model.name != DEFAULT_MODEL_NAME:
        raise InvalidArgumentError(
            f"{model.name} carries an adapter; pass dense_model= (its plain backbone) for the dense baseline"
        )
    return load_default_model(adapter=False, dtype=model.dtype)


def run_from_args(args) -> int:
    from maxsim.errors import MaxsimError

    config = EvalConfig(
        dims=tuple(args.dims),
        baselines=tuple(args.baselines),
        cache_dir=args.cache_dir,
        colbert=not args.no_colbert,
        show_progress=not args.quiet,
    )
    model = None
    if config.colbert or "dense" in config.baselines:
        from maxsim.models.loading import load

        model = load(args.model, num_threads=args.threads, dtype=args.dtype)
    dense_model = None
    if args.head and model is not None:
        from maxsim.models.adapter import AdapterError, apply_adapter, read_adapter

        try:
            _, lora, _, _ = read_adapter(args.head)
            # the file replaces the model's own adapter: start from the plain backbone
            plain = plain_backbone_model(model) if model.info.get("adapter") else model
            if lora and "dense" in config.baselines:
                dense_model = (
                    plain_backbone_model(model)
                    if model.info.get("adapter")
                    else load(args.model, num_threads=args.threads, dtype=args.dtype)
                )
            apply_adapter(plain, args.head)
        except (OSError, AdapterError, ValueError) as exc:
            raise MaxsimError(f"--head {args.head}: {exc}") from None
        plain.info["adapter_file"] = str(args.head)
        if lora:
            plain.info["adapter"] = str(args.head)  # its encoder differs from the plain backbone
        model = plain
    try:
        evaluate(
            args.datasets,
            model,
            config,
            dense_model=dense_model,
            split=args.split,
            max_queries=args.max_queries,
            max_docs=args.max_docs,
            seed=args.seed,
            out=args.out,
            log_fn=None if args.quiet else print,
        )
    except ValueError as exc:
        raise MaxsimError(str(exc)) from None
    return 0
