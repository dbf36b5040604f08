"""Read retrieval collections in BEIR layout, and sample them reproducibly.

A collection folder holds ``corpus.jsonl`` ({"_id", "title", "text"}), ``queries.jsonl``
({"_id", "text"}) and ``qrels/<split>.tsv`` (header ``query-id corpus-id score``).
"""

from __future__ import annotations

import json
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from maxsim.errors import MaxsimError


class DatasetError(MaxsimError, ValueError):
    """A collection folder or one of its files is missing or malformed."""


@dataclass
class Collection:
    """One BEIR collection (or a sample of it). ``qrels[qid][docid] = relevance``."""

    name: str
    corpus: dict[str, str]  # doc id -> text ("title text" when a title exists)
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, int]]
    languages: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    @property
    def language(self) -> str:
        return "+".join(self.languages) if self.languages else "?"

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, docs={len(self.corpus)}, queries={len(self.queries)})"


def is_collection(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file() and (path / "qrels").is_dir()


def find_collections(paths: list[str | Path], split: str = "dev") -> list[Path]:
    """Collection folders named by ``paths``: each is a collection or a folder of collections.

    Folders without a corpus (train-only sets) are skipped; a path with no collection at all
    is an error naming it.
    """
    found: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if not p.exists():
            raise DatasetError(f"{p} does not exist")
        if is_collection(p):
            found.append(p)
            continue
        subs = sorted(
            c for c in p.iterdir() if c.is_dir() and is_collection(c) and (c / "qrels" / f"{split}.tsv").is_file()
        )
        if not subs:
            raise DatasetError(
                f"{p} is not a BEIR collection (corpus.jsonl, queries.jsonl, qrels/{split}.tsv) and holds none"
            )
        found.extend(subs)
    return found


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{n}: not valid JSON ({exc})") from None
            missing = [k for k in required if k not in row]
            if missing:
                raise DatasetError(f"{path}:{n}: missing field(s) {missing}")
            rows.append(row)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and parts[0] == "query-id":
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}:{n}: expected 3 tab-separated fields, got {len(parts)}")
            try:
                score = int(float(parts[2]))
            except ValueError:
                raise DatasetError(f"{path}:{n}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def load_collection(path: str | Path, split: str = "dev") -> Collection:
    """Read a BEIR collection; queries without a positive judgement are dropped."""
    path = Path(path)
    corpus = {}
    for row in _read_jsonl(path / "corpus.jsonl", ("_id", "text")):
        title = (row.get("title") or "").strip()
        corpus[str(row["_id"])] = f"{title} {row['text']}" if title else str(row["text"])
    queries = {str(r["_id"]): str(r["text"]) for r in _read_jsonl(path / "queries.jsonl", ("_id", "text"))}
    qrels_all = read_qrels(path / "qrels" / f"{split}.tsv")
    qrels = {}
    for qid, rels in qrels_all.items():
        if qid not in queries:
            raise DatasetError(f"{path}: qrels name query {qid!r}, which is not in queries.jsonl")
        unknown = [d for d in rels if d not in corpus]
        if unknown:
            raise DatasetError(f"{path}: qrels of query {qid!r} name documents not in the corpus: {unknown[:3]}")
        if any(s > 0 for s in rels.values()):
            qrels[qid] = rels
    meta = {}
    if (path / "meta.json").is_file():
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    langs = tuple(meta.get("languages") or ())
    return Collection(path.name, corpus, {q: queries[q] for q in qrels}, qrels, langs, meta)


def sample_collection(
    collection: Collection, max_queries: int | None = None, max_docs: int | None = None, seed: int = 0
) -> Collection:
    """A reproducible sample: ``max_queries`` judged queries, and a corpus of at most ``max_docs``.

    The corpus sample keeps every document judged for a sampled query and fills the rest with
    documents drawn at random (NanoBEIR-style); a smaller corpus makes retrieval easier for every
    system alike, so compare systems within one run, not across sample sizes.
    """
    if max_queries is not None and max_queries < 1:
        raise DatasetError(f"max_queries must be >= 1, got {max_queries}")
    if max_docs is not None and max_docs < 1:
        raise DatasetError(f"max_docs must be >= 1, got {max_docs}")
    rng = random.Random(seed * 1_000_003 + zlib.crc32(collection.name.encode()))
    qids = sorted(collection.queries)
    if max_queries is not None and len(qids) > max_queries:
        qids = sorted(rng.sample(qids, max_queries))
    qrels = {q: collection.qrels[q] for q in qids}
    doc_ids = list(collection.corpus)
    if max_docs is not None and len(doc_ids) > max_docs:
        judged = {d for rels in qrels.values() for d in rels}
        others = sorted(d for d in doc_ids if d not in judged)
        fill = rng.sample(others, max(0, min(len(others), max_docs - len(judged))))
        keep = judged | set(fill)
        doc_ids = [d for d in doc_ids if d in keep]
    return Collection(
        collection.name,
        {d: collection.corpus[d] for d in doc_ids},
        {q: collection.queries[q] for q in qids},
        qrels,
        collection.languages,
        {**collection.meta, "sampled": {"max_queries": max_queries, "max_docs": max_docs, "seed": seed}},
    )
