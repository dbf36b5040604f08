"""Training data: pairs and triplets from JSONL or BEIR qrels, dev carving, hard-negative mining.

JSONL rows: ``{"query": str, "positive": str, "negative": str | "negatives": [str, ...],
"scores": [teacher score of positive, of each negative], "lang": str}``; only ``query`` and
``positive`` are required.
"""

from __future__ import annotations

import json
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from maxsim.errors import InvalidArgumentError, MaxsimError


class TrainDataError(MaxsimError, ValueError):
    """Training data that cannot be read; the message names the file and line."""


@dataclass
class Pair:
    """One training example: a query, its positive document, optional hard negatives and teacher scores."""

    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    scores: list[float] | None = None  # teacher scores for [positive, *negatives]
    lang: str | None = None
    source: str | None = None  # collection or file it came from


def read_pairs(path: str | Path, source: str | None = None, limit: int | None = None) -> list[Pair]:
    """Pairs/triplets from a JSONL file (see the module docstring for the fields)."""
    path = Path(path)
    if not path.is_file():
        raise TrainDataError(f"{path} does not exist")
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainDataError(f"{path}:{n}: not valid JSON ({exc})") from None
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("query"), str)
                or not isinstance(row.get("positive"), str)
            ):
                raise TrainDataError(f"{path}:{n}: a row needs string fields 'query' and 'positive'")
            negs = row.get("negatives", [])
            if "negative" in row:
                negs = [row["negative"], *negs]
            if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
                raise TrainDataError(f"{path}:{n}: 'negative(s)' must be a string or a list of strings")
            scores = row.get("scores")
            if scores is not None:
                if not isinstance(scores, list) or len(scores) != 1 + len(negs):
                    raise TrainDataError(
                        f"{path}:{n}: 'scores' needs {1 + len(negs)} numbers (positive, then each negative)"
                    )
                scores = [float(s) for s in scores]
            pairs.append(
                Pair(row["query"], row["positive"], list(negs), scores, row.get("lang"), source or path.parent.name)
            )
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


def pairs_from_beir(folder: str | Path, split: str = "train") -> list[Pair]:
    """One pair per (query, relevant document) in ``qrels/<split>.tsv`` of a BEIR collection."""
    from maxsim.evaluation.datasets import load_collection

    col = load_collection(folder, split)
    lang = col.languages[0] if len(col.languages) == 1 else None
    out = []
    for qid, rels in col.qrels.items():
        for did, rel in rels.items():
            if rel > 0:
                out.append(Pair(col.queries[qid], col.corpus[did], lang=lang, source=col.name))
    return out


def split_by_document(pairs: Sequence[Pair], dev_fraction: float, seed: int = 0) -> tuple[list[Pair], list[Pair]]:
    """(train, dev) with no positive document on both sides (queries on one paragraph stay together)."""
    if not 0 <= dev_fraction < 1:
        raise InvalidArgumentError(f"dev_fraction must be in [0, 1), got {dev_fraction}")
    rng = random.Random(seed)
    docs = sorted({p.positive for p in pairs})
    rng.shuffle(docs)
    dev_docs = set(docs[: int(round(dev_fraction * len(docs)))])
    train = [p for p in pairs if p.positive not in dev_docs]
    dev = [p for p in pairs if p.positive in dev_docs]
    return train, dev


def carve_by_article(
    collection,
    train_fraction: float,
    article_of: Callable[[str], str] | None = None,
    block: int = 40,
    seed: int = 0,
):
    """Split a dev collection into training pairs and a smaller dev collection, article-disjoint.

    ``article_of(doc_id)`` names each document's article. Without it, the corpus order stands in
    for articles (these QA collections list an article's paragraphs one after another): documents
    are cut into consecutive blocks of ``block``, and whole blocks go to training. The block
    sitting right after a training block is dropped from both sides, so a paragraph's
    neighbours never land on the other side. Returns (train pairs, dev Collection).
    """
    if not 0 < train_fraction < 1:
        raise InvalidArgumentError(f"train_fraction must be in (0, 1), got {train_fraction}")
    ids = list(collection.corpus)
    if article_of is not None:
        groups: dict[str, list[str]] = {}
        for d in ids:
            groups.setdefault(article_of(d), []).append(d)
        units = list(groups.values())
        guard_after = False
    else:
        units = [ids[i : i + block] for i in range(0, len(ids), block)]
        guard_after = True
    rng = random.Random(seed * 7919 + zlib.crc32(collection.name.encode()))
    order = list(range(len(units)))
    rng.shuffle(order)
    n_train = max(1, int(round(train_fraction * len(units))))
    train_units = set(order[:n_train])
    dropped = {u + 1 for u in train_units if u + 1 not in train_units} if guard_after else set()
    dropped |= {u - 1 for u in train_units if u - 1 >= 0 and u - 1 not in train_units} if guard_after else set()
    train_docs = {d for u in train_units for d in units[u]}
    dev_docs = {d for u, docs in enumerate(units) if u not in train_units and u not in dropped for d in docs}
    carve = {"train_fraction": train_fraction, "block": None if article_of else block, "seed": seed}
    return split_by_documents(collection, train_docs, dev_docs, carve)


def carve_like(collection, reference_train_queries: set[str], reference_dev_queries: set[str], reference: str):
    """Carve a translation of an already carved collection so both sides match across languages.

    Translated QA sets (SQuAD-es, SQuAD-it) keep the original's question ids: a paragraph goes to
    training only if every one of its questions went to training in the reference carve, to dev
    only if every one stayed dev there; anything else (mixed, or unknown to the reference) is
    dropped. So no paragraph trained on in one language is evaluated in another.
    """
    questions_of: dict[str, set[str]] = {}
    for qid, rels in collection.qrels.items():
        for d, r in rels.items():
            if r > 0:
                questions_of.setdefault(d, set()).add(qid)
    train_docs = {d for d, qs in questions_of.items() if qs <= reference_train_queries}
    dev_docs = {d for d, qs in questions_of.items() if qs <= reference_dev_queries}
    return split_by_documents(collection, train_docs, dev_docs, {"like": reference})


def split_by_documents(collection, train_docs: set[str], dev_docs: set[str], carve: dict):
    """(training pairs, dev Collection) for disjoint document sets; other documents are dropped.

    A query whose relevant documents all sit in ``train_docs`` becomes training pairs, one whose
    relevant documents all sit in ``dev_docs`` stays dev; a query across both is dropped.
    """
    from maxsim.evaluation.datasets import Collection

    if train_docs & dev_docs:
        raise InvalidArgumentError(
            f"{collection.name}: {len(train_docs & dev_docs)} documents on both sides of the carve"
        )
    lang = collection.languages[0] if len(collection.languages) == 1 else None
    pairs: list[Pair] = []
    dev_qrels: dict[str, dict[str, int]] = {}
    for qid, rels in collection.qrels.items():
        pos = [d for d, r in rels.items() if r > 0]
        if pos and all(d in train_docs for d in pos):
            pairs.extend(
                Pair(collection.queries[qid], collection.corpus[d], lang=lang, source=collection.name) for d in pos
            )
        elif pos and all(d in dev_docs for d in pos):
            dev_qrels[qid] = rels
    dev = Collection(
        collection.name,
        {d: t for d, t in collection.corpus.items() if d in dev_docs},
        {q: collection.queries[q] for q in dev_qrels},
        dev_qrels,
        collection.languages,
        {**collection.meta, "carved": carve},
    )
    return pairs, dev


def mine_bm25_negatives(
    pairs: Sequence[Pair], n: int = 1, depth: int = 20, skip_top: int = 0, seed: int = 0
) -> list[Pair]:
    """Add ``n`` hard negatives per pair: BM25 hits for the query among the positives of the same source.

    Hits equal to the pair's positive (or any positive of the same query text) are skipped; the
    first ``skip_top`` other hits are skipped too (they are more often unlabelled positives), and
    negatives are drawn at random from the remaining top ``depth``.
    """
    from maxsim.evaluation.bm25 import BM25Retriever

    rng = random.Random(seed)
    by_source: dict[str | None, list[int]] = {}
    for i, p in enumerate(pairs):
        by_source.setdefault(p.source, []).append(i)
    out = [Pair(p.query, p.positive, list(p.negatives), p.scores, p.lang, p.source) for p in pairs]
    for source, idx in by_source.items():
        docs = sorted({pairs[i].positive for i in idx})
        if len(docs) < 2:
            continue
        langs = {pairs[i].lang for i in idx}
        bm = BM25Retriever(language=langs.pop() if len(langs) == 1 else None)
        bm.index([str(j) for j in range(len(docs))], docs)
        positives_of: dict[str, set[str]] = {}
        for i in idx:
            positives_of.setdefault(pairs[i].query, set()).add(pairs[i].positive)
        hits = bm.search([pairs[i].query for i in idx], k=min(depth + skip_top + 2, len(docs)))
        for i, h in zip(idx, hits):
            cands = [docs[int(j)] for j in sorted(h, key=lambda j: h[j], reverse=True)]
            cands = [c for c in cands if c not in positives_of[pairs[i].query]][skip_top : skip_top + depth]
            out[i].negatives.extend(rng.sample(cands, min(n, len(cands))))
            if out[i].scores is not None:  # teacher scores no longer cover the list
                out[i].scores = None
    return out


def mine_model_negatives(
    model, pairs: Sequence[Pair], n: int = 1, depth: int = 20, dim: int = 128, seed: int = 0
) -> list[Pair]:
    """Like :func:`mine_bm25_negatives`, with the current late-interaction model's MaxSim ranking."""
    from maxsim.evaluation.runner import late_interaction_topk

    rng = random.Random(seed)
    out = [Pair(p.query, p.positive, list(p.negatives), p.scores, p.lang, p.source) for p in pairs]
    by_source: dict[str | None, list[int]] = {}
    for i, p in enumerate(pairs):
        by_source.setdefault(p.source, []).append(i)
    for idx in by_source.values():
        docs = sorted({pairs[i].positive for i in idx})
        if len(docs) < 2:
            continue
        dvec = model.encode_documents(docs, dim=dim)
        qvec = model.encode_queries([pairs[i].query for i in idx], dim=dim)
        top, _ = late_interaction_topk(qvec, dvec, min(depth + 2, len(docs)))
        for i, row in zip(idx, top):
            cands = [docs[int(j)] for j in row if docs[int(j)] != pairs[i].positive][:depth]
            out[i].negatives.extend(rng.sample(cands, min(n, len(cands))))
            out[i].scores = None  # teacher scores no longer cover the list
    return out


def sample_pairs(pairs: Sequence[Pair], per_source: int | None, seed: int = 0) -> list[Pair]:
    """At most ``per_source`` pairs from each source, drawn reproducibly; order kept."""
    if per_source is None:
        return list(pairs)
    rng = random.Random(seed)
    by_source: dict[str | None, list[int]] = {}
    for i, p in enumerate(pairs):
        by_source.setdefault(p.source, []).append(i)
    keep: set[int] = set()
    for idx in by_source.values():
        keep.update(idx if len(idx) <= per_source else rng.sample(idx, per_source))
    return [p for i, p in enumerate(pairs) if i in keep]


def batches(pairs: Sequence[Pair], batch_size: int, epoch: int, seed: int, by_source: bool = True) -> list[list[int]]:
    """The epoch's batches of pair indices: deterministic from (seed, epoch), so a resumed run
    sees exactly the batches it would have seen. With ``by_source`` each batch comes from one
    source (harder in-batch negatives, one language per batch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    groups: dict[str | None, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(p.source if by_source else None, []).append(i)
    out: list[list[int]] = []
    for key in sorted(groups, key=lambda k: str(k)):
        idx = groups[key][:]
        rng.shuffle(idx)
        out.extend(idx[s : s + batch_size] for s in range(0, len(idx), batch_size) if len(idx[s : s + batch_size]) >= 2)
    rng.shuffle(out)
    return out


def unique_texts(texts: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for t in texts:
        seen.setdefault(t, None)
    return list(seen)
