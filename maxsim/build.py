"""Build an index from text files in bounded memory: read, encode, compress, commit chunk by chunk.

Inputs (:func:`iter_documents`):

* a JSONL file of ``{"id", "text", "metadata"?}`` (the format of ``maxsim index add``);
* a Parquet file with columns ``id`` (optional), ``text`` and ``metadata`` (optional: a JSON
  string or a struct);
* a BEIR folder (``corpus.jsonl`` of ``{"_id", "title", "text"}``; the text indexed is
  "title text", as ``maxsim eval`` does, and the title is kept in the metadata).

A document without an id gets ``content_id(text)``, so a resumed or repeated build gives it the
same id. :func:`build` (``maxsim index build PATH INPUT``) encodes a sample (``sample_docs``
documents drawn over the whole input, whose vectors the build then reuses) to train the
centroids, then streams the documents through
:func:`maxsim.index.build.build_from_vectors`; a killed build resumes at its last committed
chunk. The distributed version on Ray is :mod:`maxsim.distributed`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from maxsim.collection import Index, load_encoder
from maxsim.documents import DocumentFileError, content_id, read_documents
from maxsim.errors import InvalidArgumentError
from maxsim.index import storage
from maxsim.index.build import (
    CHUNK_DOCS,
    VectorDoc,
    at_positions,
    batched,
    build_from_vectors,
    build_progress,
    sample_positions,
)
from maxsim.store import Encoder

#: Documents encoded for the centroid sample, drawn over the whole input (their vectors are reused).
SAMPLE_DOCS = 4096
#: Documents per call of the encoder.
ENCODE_BATCH = 64


def input_kind(path: str | os.PathLike) -> str:
    """``jsonl``, ``parquet`` or ``beir`` (a folder with corpus.jsonl); InvalidArgumentError otherwise."""
    p = Path(path)
    if p.is_dir():
        if (p / "corpus.jsonl").is_file():
            return "beir"
        raise InvalidArgumentError(f"{p} is a folder without corpus.jsonl (expected a BEIR collection)")
    if not p.is_file():
        raise InvalidArgumentError(f"input not found: {p}")
    if p.suffix == ".parquet":
        return "parquet"
    return "jsonl"


def iter_documents(path: str | os.PathLike, skip: int = 0) -> Iterator[dict[str, Any]]:
    """``{"id", "text", "metadata"}`` records of a JSONL file, Parquet file or BEIR folder, from ``skip`` on."""
    kind = input_kind(path)
    p = Path(path)
    if kind == "jsonl":
        with open(p, encoding="utf-8") as f:
            yield from islice(read_documents(f, str(p), content_ids=True), skip, None)
    elif kind == "beir":
        with open(p / "corpus.jsonl", encoding="utf-8") as f:
            for lineno, line in islice(enumerate(f, 1), skip, None):
                yield beir_record(line, f"{p / 'corpus.jsonl'}:{lineno}")
    else:
        import pyarrow.parquet as pq

        seen = 0
        for batch in pq.ParquetFile(p).iter_batches(batch_size=1024):
            rows = batch.to_pylist()
            if seen + len(rows) <= skip:
                seen += len(rows)
                continue
            for row in rows[max(0, skip - seen) :]:
                yield parquet_record(row, str(p))
            seen += len(rows)


def beir_record(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
        doc_id, text = str(row["_id"]), str(row["text"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DocumentFileError(f"{where}: not a BEIR corpus record with _id and text ({e})") from None
    title = (row.get("title") or "").strip()
    return {"id": doc_id, "text": f"{title} {text}" if title else text, "metadata": {"title": title} if title else None}


def parquet_record(row: dict[str, Any], where: str) -> dict[str, Any]:
    text = row.get("text")
    if not isinstance(text, str):
        raise DocumentFileError(f"{where}: every row needs a string 'text' column")
    meta = row.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta)
    elif isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if v is not None}
    if meta is not None and not isinstance(meta, dict):
        raise DocumentFileError(f"{where}: 'metadata' must be a JSON object or a struct")
    return {"id": row.get("id") or content_id(text), "text": text, "metadata": meta}


def count_documents(path: str | os.PathLike) -> int:
    """Number of documents in the input (a line count for JSONL; Parquet metadata)."""
    kind = input_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    f = Path(path) / "corpus.jsonl" if kind == "beir" else Path(path)
    with open(f, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def encoded_docs(
    model: Encoder, records: Iterator[dict[str, Any]], dim: int, batch_size: int = ENCODE_BATCH
) -> Iterator[VectorDoc]:
    for batch in batched(records, batch_size):
        vectors = model.encode_documents([r["text"] for r in batch], dim=dim)
        for r, v in zip(batch, vectors, strict=True):
            yield VectorDoc(r["id"], np.asarray(v, dtype=np.float32), r["text"], r["metadata"])


def encode_sample(
    model: Encoder,
    input: str | os.PathLike,  # noqa: A002
    total: int,
    sample_docs: int,
    dim: int,
    batch_size: int = ENCODE_BATCH,
) -> tuple[dict[int, VectorDoc], np.ndarray, int]:
    """Encode ``sample_docs`` documents drawn over the input of ``total`` documents: (the encoded
    documents by position, their token vectors stacked, the collection's estimated token count)."""
    positions = sample_positions(total, sample_docs)
    encoded = encoded_docs(model, at_positions(iter_documents(input), positions), dim, batch_size)
    docs = dict(zip((int(p) for p in positions), encoded, strict=True))
    sample = np.concatenate([d.vectors for d in docs.values()])
    return docs, sample, int(len(sample) / len(docs) * total)


def build(
    path: str | os.PathLike,
    input: str | os.PathLike,
    *,
    model: Encoder | str | None = None,  # noqa: A002
    dim: int = 128,
    nbits: int = 2,
    refine_bits: int = 0,
    sample_docs: int = SAMPLE_DOCS,
    chunk_docs: int = CHUNK_DOCS,
    batch_size: int = ENCODE_BATCH,
    progress: bool = True,
) -> Index:
    """Build (or resume) an index at ``path`` from ``input`` in bounded memory; returns it open
    (``maxsim.Index``). See the module docstring."""
    total = count_documents(input)  # bad input fails before the model loads
    if total == 0:
        raise InvalidArgumentError(f"{input} holds no documents")
    if model is None or isinstance(model, str):
        model = load_encoder(model or _recorded_model(path))
    root = Path(path)
    resuming = (root / storage.MANIFEST).exists()
    cache: dict[int, VectorDoc] = {}  # the sample's documents by position, encoded once
    sample = None
    expected = None
    if not resuming:
        cache, sample, expected = encode_sample(model, input, total, sample_docs, dim, batch_size)

    def source(skip: int) -> Iterator[VectorDoc]:
        # documents in input order; the sampled ones are taken from the cache, not encoded again
        for batch in batched(enumerate(iter_documents(input, skip), skip), batch_size):
            todo = [r for i, r in batch if i not in cache]
            fresh = iter(encoded_docs(model, iter(todo), dim, batch_size))
            for i, _ in batch:
                yield cache.pop(i) if i in cache else next(fresh)

    vec_index = build_from_vectors(
        root,
        source,
        dim=dim,
        nbits=nbits,
        refine_bits=refine_bits,
        sample=sample,
        expected_tokens=expected,
        chunk_docs=chunk_docs,
        progress=progress,
        total_docs=total,
    )
    with vec_index:
        vec_index._encoded_with(model)
    return Index.open(root, model=model)


def _recorded_model(path: str | os.PathLike) -> str | None:
    manifest = Path(path) / storage.MANIFEST
    return json.loads(manifest.read_text()).get("model") if manifest.exists() else None


__all__ = ["build", "build_progress", "count_documents", "input_kind", "iter_documents"]
