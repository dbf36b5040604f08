"""The one contract every maxsim store keeps: :class:`VectorStore`.

``maxsim.index.Index`` (on-disk PLAID-class index) and
``maxsim.integrations.qdrant.QdrantStore`` (Qdrant multivector collection) both implement it with
the same method names, argument order, return types and errors, and one conformance suite
(``tests/stores``) runs against both.

The storage half works on token vectors only (``*_embeddings``). The text half (``add``,
``update``, ``upsert``, ``search``) is :class:`TextMethods`: it encodes with the store's
``model`` (any object with ``encode_documents`` / ``encode_queries``) and calls the storage half.
A store never loads a model itself; ``maxsim.collection`` is the layer that picks the default one.

Contract, for every store:

============================  =================================================================
``add_embeddings(embeddings, ids=None, texts=None, metadata=None) -> list[str]``
                              new documents; ids default to fresh uuid4 hex strings.
                              :class:`~maxsim.errors.DuplicateIdError` if an id is already
                              stored; nothing is written then.
``update_embeddings(ids, embeddings=None, texts=None, metadata=None) -> None``
                              replace documents that exist; a ``None`` text or metadata entry
                              keeps the stored value (``{}`` clears metadata); ``embeddings=None``
                              changes metadata only. :class:`~maxsim.errors.UnknownIdError`
                              (a ``KeyError``) for unknown ids; nothing is changed then.
``upsert_embeddings(embeddings, ids, texts=None, metadata=None) -> list[str]``
                              add the new ids, replace the known ones (``None`` keeps, as above).
``delete(ids, missing_ok=False) -> int``
                              the number deleted; unknown ids raise ``UnknownIdError`` (nothing
                              deleted) unless ``missing_ok``.
``get(ids) -> list[StoredDocument]``
                              ``{"id", "text", "metadata"}`` in the order asked; unknown ids
                              raise ``UnknownIdError``.
``count(filter=None) -> int`` documents, or those matching ``filter``.
``search_embeddings(queries, k=10, filter=None, **options) -> list[list[SearchHit]]``
                              one hit list per query, best first; ``queries`` is a list of
                              [n_tokens, dim] arrays (a single 2-D array is one query).
``add(texts, ids=None, metadata=None)``, ``update(ids, texts=None, metadata=None)``,
``upsert(texts, ids, metadata=None)``, ``search(queries, k=10, filter=None, **options)``
                              the same, from text (one string is one query).
============================  =================================================================

``filter`` is a mapping of metadata key to a value (equality) or a list of values (any of);
stores may accept more (the index also takes an SQL expression, Qdrant ranges).
"""

from __future__ import annotations

import json
import numbers
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from maxsim.errors import InvalidArgumentError, InvalidTypeError, MissingModelError
from maxsim.types import SearchHit, TokenVectors


class StoredDocument(TypedDict):
    """What :meth:`VectorStore.get` returns for one id."""

    id: str
    text: str | None
    metadata: dict | None


@runtime_checkable
class Encoder(Protocol):
    """What a store needs of a model for its text methods (``maxsim.Model`` is one)."""

    name: str

    def encode_queries(self, texts: Sequence[str], dim: int | None = None) -> list[TokenVectors]: ...

    def encode_documents(self, texts: Sequence[str], dim: int | None = None) -> list[TokenVectors]: ...


@runtime_checkable
class VectorStore(Protocol):
    """The contract of the module docstring, checked by ``tests/stores``."""

    dim: int
    model: Encoder | None

    def add_embeddings(
        self,
        embeddings: Sequence[TokenVectors],
        ids: Sequence[str] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]: ...

    def update_embeddings(
        self,
        ids: Sequence[str],
        embeddings: Sequence[TokenVectors] | None = None,
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None: ...

    def upsert_embeddings(
        self,
        embeddings: Sequence[TokenVectors],
        ids: Sequence[str],
        texts: Sequence[str | None] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]: ...

    def delete(self, ids: Sequence[str], missing_ok: bool = False) -> int: ...

    def get(self, ids: Sequence[str]) -> list[StoredDocument]: ...

    def count(self, filter: Mapping[str, Any] | None = None) -> int: ...

    def search_embeddings(
        self,
        queries: Sequence[TokenVectors] | TokenVectors,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> list[list[SearchHit]]: ...

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]: ...

    def update(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None: ...

    def upsert(
        self, texts: Sequence[str], ids: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[str]: ...

    def search(
        self, queries: str | Sequence[str], k: int = 10, filter: Mapping[str, Any] | None = None, **options: Any
    ) -> list[list[SearchHit]]: ...

    def close(self) -> None: ...


class TextMethods:
    """The text half of :class:`VectorStore`, written once on top of the vector half.

    A store sets ``self.model`` (an :class:`Encoder` or None) and ``self.dim``. Subclasses may
    override :meth:`_encoder` (``maxsim.collection`` does, to load the default model) and
    :meth:`_encoded_with` (the index records which model wrote it).
    """

    model: Encoder | None
    dim: int

    def _encoder(self) -> Encoder:
        if self.model is None:
            raise MissingModelError(
                f"{type(self).__name__} has no model for text: pass model=maxsim.load() when creating or opening "
                "it, use maxsim.Index (which loads the default model), or use the *_embeddings methods"
            )
        return self.model

    def _encoded_with(self, model: Encoder) -> None:
        """Called before documents encoded by ``model`` are written."""

    def _encode_documents(self, texts: list[str]) -> list[TokenVectors]:
        model = self._encoder()
        vectors = model.encode_documents(texts, dim=self.dim)
        self._encoded_with(model)
        return vectors

    def add(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Encode and add new documents; returns their ids (see the module docstring)."""
        texts = check_texts(texts)
        return self.add_embeddings(self._encode_documents(texts), ids=ids, texts=texts, metadata=metadata)  # type: ignore[attr-defined]

    def update(
        self,
        ids: Sequence[str],
        texts: Sequence[str] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Replace the text (re-encoded) and/or metadata of stored documents; ids do not change."""
        ids = check_ids(ids)
        if texts is None:
            if metadata is None:
                raise InvalidArgumentError("update: give texts and/or metadata")
            self.update_embeddings(ids, None, metadata=metadata)  # type: ignore[attr-defined]
            return
        texts = check_texts(texts)
        if len(texts) != len(ids):
            raise InvalidArgumentError(f"update: got {len(texts)} texts for {len(ids)} ids")
        self.update_embeddings(ids, self._encode_documents(texts), texts=texts, metadata=metadata)  # type: ignore[attr-defined]

    def upsert(
        self, texts: Sequence[str], ids: Sequence[str], metadata: Sequence[Mapping[str, Any] | None] | None = None
    ) -> list[str]:
        """Add the new ids and replace the known ones (text re-encoded)."""
        texts = check_texts(texts)
        ids = check_ids(ids, len(texts))
        return self.upsert_embeddings(self._encode_documents(texts), ids, texts=texts, metadata=metadata)  # type: ignore[attr-defined]

    def search(
        self,
        queries: str | Sequence[str],
        k: int = 10,
        filter: Mapping[str, Any] | None = None,  # noqa: A002
        **options: Any,
    ) -> list[list[SearchHit]]:
        """Encode the queries and search: one hit list per query (one string is one query)."""
        texts = check_texts([queries] if isinstance(queries, str) else queries, "queries")
        k = check_k(k)
        vectors = self._encoder().encode_queries(texts, dim=self.dim)
        return self.search_embeddings(vectors, k=k, filter=filter, **options)  # type: ignore[attr-defined]


# ---- argument checks shared by the stores -------------------------------------------------------


def check_texts(texts: Any, what: str = "texts") -> list[str]:
    """A non-empty list of strings."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise InvalidTypeError(f"{what}: expected a list of strings")
    if len(texts) == 0:
        raise InvalidArgumentError(f"{what}: the list is empty")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidTypeError(f"{what}[{i}]: expected a string, got {type(t).__name__}")
    return list(texts)


def check_ids(ids: Any, n: int | None = None, what: str = "ids") -> list[str]:
    """A non-empty list of distinct non-empty strings (``n`` of them when given)."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise InvalidTypeError(f"{what}: expected a list of strings")
    ids = list(ids)
    if n is not None and len(ids) != n:
        raise InvalidArgumentError(f"{what}: got {len(ids)} ids for {n} documents")
    if not ids:
        raise InvalidArgumentError(f"{what}: the list is empty")
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise InvalidArgumentError(f"{what}: every id must be a non-empty string, got {bad[:3]!r}")
    for i in ids:
        try:
            i.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"{what}: id {i!r} is not valid Unicode (it contains a lone surrogate)"
            ) from None
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise InvalidArgumentError(f"{what}: duplicate ids in the batch: {dups[:5]!r}")
    return ids


def new_ids(n: int) -> list[str]:
    """Fresh ids for documents added without one."""
    return [uuid.uuid4().hex for _ in range(n)]


def check_k(k: Any) -> int:
    """A positive integer (numpy integers too)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_side(values: Any, n: int, what: str, kind: type | tuple[type, ...]) -> list:
    """texts= or metadata=: None, or one entry (of ``kind`` or None) per document."""
    if values is None:
        return [None] * n
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
        raise InvalidTypeError(f"{what}: expected a list with one entry per document")
    values = list(values)
    if len(values) != n:
        raise InvalidArgumentError(f"{what}: got {len(values)} entries for {n} documents")
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, kind):
            name = getattr(kind, "__name__", str(kind))
            raise InvalidTypeError(f"{what}[{i}]: expected {name} or None, got {type(v).__name__}")
    return values


def query_list(queries: Any) -> list[Any]:
    """search_embeddings' ``queries``: a single 2-D array is one query, else a list of them."""
    if isinstance(queries, np.ndarray) and queries.ndim == 2:
        return [queries]
    if hasattr(queries, "detach") and getattr(queries, "ndim", 0) == 2:  # one torch tensor
        return [queries]
    if queries is None or isinstance(queries, str | bytes) or not hasattr(queries, "__len__"):
        raise InvalidTypeError("queries: expected a list of 2-D float arrays [n_tokens, dim]")
    if len(queries) == 0:
        raise InvalidArgumentError("queries: the list is empty")
    return list(queries)


def check_vectors(arrays: Any, dim: int, what: str) -> list[np.ndarray]:
    """A non-empty list of finite float [n_tokens, dim] arrays (torch tensors too), returned as
    contiguous float32 with every row L2-normalised."""
    if isinstance(arrays, np.ndarray) and arrays.ndim == 2:
        raise InvalidTypeError(f"{what}: pass a list of 2-D arrays (one per item), not a single array")
    if arrays is None or isinstance(arrays, str | bytes) or not hasattr(arrays, "__len__"):
        raise InvalidTypeError(f"{what}: expected a list of 2-D float arrays [n_tokens, {dim}]")
    if len(arrays) == 0:
        raise InvalidArgumentError(f"{what}: the list is empty")
    out = []
    for i, a in enumerate(arrays):
        if hasattr(a, "detach"):  # torch tensor
            a = a.detach().float().cpu().numpy()
        a = np.asarray(a)
        if a.ndim != 2:
            raise InvalidArgumentError(f"{what}[{i}]: expected a 2-D array [n_tokens, {dim}], got shape {a.shape}")
        if a.shape[1] != dim:
            raise InvalidArgumentError(f"{what}[{i}]: wrong dim {a.shape[1]}, expected {dim}")
        if a.shape[0] == 0:
            raise InvalidArgumentError(f"{what}[{i}]: has no token vectors")
        if not np.issubdtype(a.dtype, np.floating):
            raise InvalidArgumentError(f"{what}[{i}]: expected float vectors, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise InvalidArgumentError(f"{what}[{i}]: contains NaN or infinite values")
        a = np.asarray(a, dtype=np.float64)  # float64: rows near 1e30 or 1e-30 normalise without overflow
        scale = np.abs(a).max(axis=1, keepdims=True)
        if (scale == 0).any():
            raise InvalidArgumentError(f"{what}[{i}]: contains an all-zero vector, which cannot be normalised")
        a = a / scale
        out.append(np.ascontiguousarray(a / np.linalg.norm(a, axis=1, keepdims=True), dtype=np.float32))
    return out


# ---- what stores keep beside the vectors: texts and metadata (SQLite text, JSON payloads) ----


def check_metadata(metadata: Any, n: int) -> list[dict | None]:
    """One JSON object (or None) per document: finite numbers only (NaN/Infinity are not JSON and
    would break every SQL filter), integers within SQLite's 64 bits, strings of valid Unicode."""
    values = check_side(metadata, n, "metadata", Mapping)
    out: list[dict | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        try:
            json.dumps(v, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as e:  # UnicodeEncodeError is a ValueError: a lone surrogate
            raise InvalidArgumentError(f"metadata[{i}]: not JSON-serialisable ({e})") from None
        for key, value in v.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"metadata[{i}]: keys must be strings, got {key!r}")
            if isinstance(value, int) and not isinstance(value, bool) and not -(1 << 63) <= value < (1 << 63):
                raise InvalidArgumentError(
                    f"metadata[{i}][{key!r}]: integer {value} is outside the 64-bit range that metadata filters support"
                )
        out.append(dict(v))
    return out


def check_stored_texts(texts: Any, n: int) -> list[str | None]:
    """texts=: None, or one string (or None) per document, valid Unicode (stored as UTF-8)."""
    values = check_side(texts, n, "texts", str)
    for i, t in enumerate(values):
        if t is not None and not _is_utf8(t):
            raise InvalidArgumentError(f"texts[{i}]: not valid Unicode (contains a lone surrogate)")
    return values


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_update(
    ids: Any, embeddings: Any, texts: Any, metadata: Any, dim: int
) -> tuple[list[str], list[np.ndarray] | None, list[dict | None]]:
    """update_embeddings' arguments, checked the same way by every store: the ids, the vectors
    (None for a metadata-only update, which cannot change texts) and one metadata entry per id."""
    ids = check_ids(ids)
    metadata = check_metadata(metadata, len(ids))
    if embeddings is None:
        if texts is not None:
            raise InvalidArgumentError("update_embeddings: texts need their embeddings (the vectors encode the text)")
        return ids, None, metadata
    vectors = check_vectors(embeddings, dim, "embeddings")
    if len(vectors) != len(ids):
        raise InvalidArgumentError(f"update_embeddings: got {len(vectors)} arrays for {len(ids)} ids")
    return ids, vectors, metadata
