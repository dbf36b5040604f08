"""Where search loses recall and time: the scale benchmark's ``diagnose`` stage.

For each sampled query and search setting it re-runs the index's search pipeline
(``maxsim.index.search``) one stage at a time, timing each, and measures recall@10 against
exact MaxSim over the original vectors of the documents each stage keeps:

* probed      every document stage 1 finds in the probed inverted lists
* candidates  the ``n_candidates`` best of those by the stage-1 approximation
* short list  the ``n_exact`` best of those by centroid interaction (stage 2)
* final       the top 10 by exact MaxSim over the stored (compressed) vectors (stage 3)
* oracle      the top 10 of the short list by MaxSim over the *original* vectors: what stage 3
              would give with a lossless codec (regenerated from the collection's seed)

A stage's loss is the drop from the row above; final vs oracle is the codec's share.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maxsim.index import kernels
from maxsim.index.search import SearchConfig, _top, exact_maxsim, prepare_query


def diagnose(store, corpus, queries: np.ndarray, truth: np.ndarray, settings: dict, block: int) -> dict:
    """Per-setting stage recalls and mean stage times (ms) over ``queries`` [n, nq, dim]."""
    with store._view() as (snap, conn):
        codec, lut = snap.codec, snap.lut
        truth_docnos = store._docnos([f"doc{int(i):08d}" for i in np.unique(truth)], conn)
        out: dict = {}
        lists: dict[str, list[np.ndarray]] = {}
        for name, kw in settings.items():
            cfg = SearchConfig(**({"threads": 1} | kw))
            nprobe, n_cand, n_exact = cfg.resolved(10, codec.n_centroids)
            rows, shortlists = [], []
            for qi, q in enumerate(tqdm(queries, desc=f"diagnose {name}", mininterval=5)):
                want = {truth_docnos[f"doc{int(i):08d}"] for i in truth[qi]}
                t0 = time.perf_counter()
                pq = prepare_query(q, codec, nprobe, cfg.threads, cfg.centroid_scores)
                t1 = time.perf_counter()
                found = [
                    (si, *kernels.ivf_candidates(seg.ivf_offsets, seg.ivf_docs, pq.probe_c, pq.probe_s, pq.impute, m))
                    for si, (seg, m) in enumerate(zip(snap.segments, snap.live, strict=True))
                ]
                seg_of = np.concatenate([np.full(len(d), si, dtype=np.int64) for si, d, _ in found])
                docs = np.concatenate([d for _, d, _ in found]).astype(np.int64)
                approx = np.concatenate([a for _, _, a in found])
                t2 = time.perf_counter()
                docnos = _docnos(snap, seg_of, docs)
                probed = len(want & set(docnos.tolist())) / 10
                keep = _top(approx, min(n_cand, len(docs)))
                seg_of, docs, docnos = seg_of[keep], docs[keep], docnos[keep]
                cand = len(want & set(docnos.tolist())) / 10
                t3 = time.perf_counter()
                ci = _per_segment(snap, seg_of, docs, pq.centroid_interaction)
                keep = _top(ci, min(n_exact, len(docs)))
                seg_of, docs, docnos = seg_of[keep], docs[keep], docnos[keep]
                t4 = time.perf_counter()
                short = len(want & set(docnos.tolist())) / 10
                scores = _per_segment(
                    snap, seg_of, docs, lambda seg, d: exact_maxsim(seg, codec, lut, pq.q, d, refine=cfg.refine)
                )
                best = _top(scores, 10)
                t5 = time.perf_counter()
                final = len(want & set(docnos[best].tolist())) / 10
                rows.append(
                    dict(
                        probed=probed,
                        candidates=cand,
                        short_list=short,
                        final=final,
                        n_probed=len(approx),
                        ms_prepare=1e3 * (t1 - t0),
                        ms_stage1=1e3 * (t2 - t1),
                        ms_stage2=1e3 * (t4 - t3),
                        ms_stage3=1e3 * (t5 - t4),
                    )
                )
                shortlists.append((docnos, want))
            ids = store._catalog.hydrate(sorted({int(d) for s, _ in shortlists for d in s}), conn)
            lists[name] = [np.array([int(ids[int(d)][0][3:]) for d in s]) for s, _ in shortlists]
            out[name] = {
                "settings": dict(
                    nprobe=nprobe,
                    n_candidates=n_cand,
                    n_exact=n_exact,
                    refine=cfg.refine,
                    centroid_scores=cfg.centroid_scores,
                ),
                "rows": rows,
            }
    # one pass over the collection for every setting's short lists (at 1M documents they touch
    # nearly every block, and regenerating a block is the cost)
    oracle = _oracle(corpus, queries, lists, truth, block)
    for name, rec in out.items():
        rows = rec.pop("rows")
        for r, o in zip(rows, oracle[name], strict=True):
            r["oracle"] = o
        rec["recall_at_10"] = {
            k: float(np.mean([r[k] for r in rows])) for k in ("probed", "candidates", "short_list", "oracle", "final")
        }
        rec["mean_ms"] = {
            k: float(np.mean([r[k] for r in rows])) for k in ("ms_prepare", "ms_stage1", "ms_stage2", "ms_stage3")
        }
        rec["median_probed_docs"] = float(np.median([r["n_probed"] for r in rows]))
        rec["queries"] = len(rows)
    return out


def _per_segment(snap, seg_of: np.ndarray, local: np.ndarray, fn, dtype=np.float32) -> np.ndarray:
    """fn(segment, its local doc ids) for each segment in ``seg_of``, gathered in input order."""
    out = np.empty(len(local), dtype=dtype)
    for si in np.unique(seg_of):
        sel = np.flatnonzero(seg_of == si)
        out[sel] = fn(snap.segments[si], local[sel])
    return out


def _docnos(snap, seg_of: np.ndarray, local: np.ndarray) -> np.ndarray:
    return _per_segment(snap, seg_of, local, lambda seg, d: seg.docnos[d], np.int64)


def _oracle(corpus, queries: np.ndarray, lists: dict[str, list[np.ndarray]], truth: np.ndarray, block: int) -> dict:
    """Per setting, the recall@10 of each query's short list (collection positions) re-ranked by
    MaxSim over the original vectors; each needed block of the collection regenerated once."""
    need: dict[int, set[tuple[int, int]]] = {}
    for shortlists in lists.values():
        for qi, ids in enumerate(shortlists):
            for i in ids.tolist():
                need.setdefault(i // block, set()).add((qi, i))
    score: dict[tuple[int, int], float] = {}
    for b, pairs in tqdm(sorted(need.items()), desc="oracle", mininterval=5):
        x, off = corpus.block(b)
        for qi, i in pairs:
            j = i % block
            score[qi, i] = float((queries[qi] @ x[off[j] : off[j + 1]].T).max(axis=1).sum())
    out = {}
    for name, shortlists in lists.items():
        out[name] = []
        for qi, ids in enumerate(shortlists):
            s = np.array([score[qi, int(i)] for i in ids])
            top = set(ids[np.argsort(-s, kind="stable")[:10]].tolist())
            out[name].append(len(top & set(truth[qi].tolist())) / 10)
    return out


def stage_diagnose(n: int, work: Path, bits: str, n_queries: int) -> dict:
    """Checkpointed: ``diagnose-<bits>bit.json`` under the size's work folder."""
    from bench.scale import BLOCK, DIAGNOSE_SETTINGS, load_json, open_store, save_json, search_inputs  # noqa: PLC0415

    rec_path = work / f"{n}" / f"diagnose-{bits}bit.json"
    rec = load_json(rec_path)
    if rec.get("done"):
        return rec
    truth, corpus, queries = search_inputs(n, work, n_queries)
    store = open_store(work / f"{n}" / f"single-{bits}bit")
    rec = diagnose(store, corpus, queries, truth, DIAGNOSE_SETTINGS, BLOCK)
    store.close()
    rec["done"] = True
    save_json(rec_path, rec)
    return rec
