"""MUVERA: fixed dimensional encodings (FDEs) of multi-vector sets.

Dhulipala et al., "MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings" (2024).
An FDE turns a set of token vectors into one vector whose inner product approximates MaxSim,
so an ordinary single-vector index can find candidates that MaxSim then reranks.

Steps, for each of ``repetitions`` independent repetitions ``r``:

1. **Partition** (SimHash): ``k_sim`` random Gaussian hyperplanes split the space into
   ``B = 2**k_sim`` buckets; a token's bucket is the bit pattern of the signs of its projections.
2. **Project** every token to ``dim_proj`` dimensions with a random +-1/sqrt(dim_proj) matrix
   (skipped when ``dim_proj == dim``).
3. **Aggregate** per bucket: a *document* stores the mean of its projected tokens in each bucket;
   a *query* stores the sum. With ``fill_empty_partitions`` a document bucket that no token
   fell into takes the projected token whose bit pattern is nearest in Hamming distance, so
   every query bucket finds something to match (the paper's "fill empty clusters").
4. Concatenate the ``B`` buckets: ``B * dim_proj`` values for repetition ``r``.

All repetitions are concatenated (``repetitions * B * dim_proj`` values); an optional
**final projection** (a count sketch with random signs) reduces that to ``final_dim``.

Then ``<fde_query(Q), fde_doc(D)>`` is, per repetition, sum over query tokens of the
(projected) similarity to the mean of the document tokens in the same bucket: a proxy for
``sum_i max_j <q_i, d_j>`` that gets sharper with more buckets and more repetitions.

Attributes of :class:`Muvera` (all drawn from one ``numpy.random.Generator`` seeded by
``MuveraConfig.seed``; the same seed and dim always give the same encodings):

- ``simhash``: float32 [repetitions, dim, k_sim], the Gaussian hyperplanes.
- ``projections``: float32 [repetitions, dim, dim_proj], or None when ``dim_proj == dim``.
- ``final_index``: int64 [raw_dim] target coordinate of each raw coordinate, or None.
- ``final_sign``: float32 [raw_dim] +-1 sign of each raw coordinate, or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from maxsim.errors import InvalidArgumentError
from maxsim.types import TokenVectors

#: Qdrant (and most single-vector stores) cap a dense vector at 65,536 dimensions.
MAX_OUTPUT_DIM = 65_536


@dataclass(frozen=True)
class MuveraConfig:
    """Parameters of a MUVERA encoder.

    Parameters
    ----------
    k_sim:
        SimHash bits per repetition; each repetition has ``2**k_sim`` partitions (buckets).
    dim_proj:
        Dimension each token is projected to inside a partition (<= the token dim).
    repetitions:
        Independent repetitions, concatenated.
    fill_empty_partitions:
        For documents, fill a partition no token fell into with the nearest token (Hamming
        distance between SimHash bit patterns). Queries are never filled.
    final_dim:
        If set, a final count-sketch projection of the concatenated encoding to this size.
    seed:
        Seed of the random generator that draws every random matrix.

    The defaults (4 partitions, 64-dim projections, 20 repetitions: 5,120 values, valid for
    every supported dim) were chosen on held-out SQuAD queries with the default maxsim model,
    where they find MaxSim's top 10 among 100 candidates far more often than the paper's
    ``k_sim=5, dim_proj=16, repetitions=20`` (10,240 values): these small-model token vectors
    are concentrated, so fewer, wider partitions work better (see ``bench/qdrant.py``).
    """

    k_sim: int = 2
    dim_proj: int = 64
    repetitions: int = 20
    fill_empty_partitions: bool = True
    final_dim: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        if not isinstance(self.k_sim, int) or not 0 <= self.k_sim <= 12:
            raise InvalidArgumentError(f"k_sim must be an integer in [0, 12] (2**k_sim partitions); got {self.k_sim!r}")
        if not isinstance(self.dim_proj, int) or self.dim_proj < 1:
            raise InvalidArgumentError(f"dim_proj must be a positive integer; got {self.dim_proj!r}")
        if not isinstance(self.repetitions, int) or self.repetitions < 1:
            raise InvalidArgumentError(f"repetitions must be a positive integer; got {self.repetitions!r}")
        if self.final_dim is not None and (not isinstance(self.final_dim, int) or self.final_dim < 1):
            raise InvalidArgumentError(f"final_dim must be None or a positive integer; got {self.final_dim!r}")
        if not isinstance(self.seed, int):
            raise InvalidArgumentError(f"seed must be an integer; got {self.seed!r}")

    @property
    def raw_dim(self) -> int:
        """Size of the concatenated encoding before any final projection."""
        return self.repetitions * (1 << self.k_sim) * self.dim_proj

    @property
    def output_dim(self) -> int:
        """Size of the encodings this config produces."""
        return self.final_dim if self.final_dim is not None else self.raw_dim

    def to_dict(self) -> dict:
        """Plain-JSON form (stored alongside a collection so queries use the same matrices)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MuveraConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgumentError(f"unknown MuveraConfig keys: {sorted(unknown)}")
        return cls(**data)


class Muvera:
    """A seeded MUVERA encoder for token vectors of one dimension.

    >>> enc = Muvera(dim=8, config=MuveraConfig(k_sim=2, dim_proj=4, repetitions=3, seed=0))
    >>> enc.output_dim  # 3 repetitions * 2**2 partitions * 4
    48
    >>> x = np.eye(8, dtype=np.float32)[:5]
    >>> enc.encode_document(x).shape, enc.encode_query(x).shape
    ((48,), (48,))
    """

    def __init__(self, dim: int, config: MuveraConfig | None = None) -> None:
        config = config if config is not None else MuveraConfig()
        if not isinstance(dim, int) or dim < 1:
            raise InvalidArgumentError(f"dim must be a positive integer; got {dim!r}")
        if config.dim_proj > dim:
            raise InvalidArgumentError(f"dim_proj ({config.dim_proj}) cannot exceed the token dim ({dim})")
        if config.output_dim > MAX_OUTPUT_DIM:
            raise InvalidArgumentError(
                f"MUVERA output dim {config.output_dim} exceeds {MAX_OUTPUT_DIM}; lower repetitions, k_sim or "
                "dim_proj, or set final_dim"
            )
        self.dim = dim
        self.config = config
        rng = np.random.default_rng(config.seed)
        r, k, p = config.repetitions, config.k_sim, config.dim_proj
        self.simhash = rng.standard_normal((r, dim, k)).astype(np.float32)
        if p == dim:
            self.projections: np.ndarray | None = None
        else:
            signs = rng.integers(0, 2, size=(r, dim, p)).astype(np.float32) * 2.0 - 1.0
            self.projections = (signs / np.sqrt(p)).astype(np.float32)
        if config.final_dim is not None:
            self.final_index: np.ndarray | None = rng.integers(0, config.final_dim, size=config.raw_dim)
            self.final_sign: np.ndarray | None = rng.integers(0, 2, size=config.raw_dim).astype(np.float32) * 2.0 - 1.0
        else:
            self.final_index = None
            self.final_sign = None
        # the same matrices laid side by side, [dim, r*k] and [dim, r*p], for one matmul per text
        self._simhash_flat = np.ascontiguousarray(self.simhash.transpose(1, 0, 2).reshape(dim, r * k))
        self._projections_flat = (
            None
            if self.projections is None
            else np.ascontiguousarray(self.projections.transpose(1, 0, 2).reshape(dim, r * p))
        )
        # bit pattern of each partition, [B, k]: used for the Hamming-nearest fill
        self._codes = ((np.arange(1 << k)[:, None] >> np.arange(k)[None, :]) & 1).astype(np.int8)
        self._weights = (1 << np.arange(k)).astype(np.int64)

    @property
    def output_dim(self) -> int:
        """Size of one encoding."""
        return self.config.output_dim

    def encode_query(self, vectors: TokenVectors) -> np.ndarray:
        """FDE of one query's token vectors [n_tokens, dim] -> float32 [output_dim] (bucket sums)."""
        return self._encode(vectors, is_query=True)

    def encode_document(self, vectors: TokenVectors) -> np.ndarray:
        """FDE of one document's token vectors [n_tokens, dim] -> float32 [output_dim] (bucket means)."""
        return self._encode(vectors, is_query=False)

    def encode_queries(self, batch: Sequence[TokenVectors]) -> np.ndarray:
        """FDEs of many queries -> float32 [n, output_dim]."""
        return _stack([self.encode_query(v) for v in batch], self.output_dim)

    def encode_documents(self, batch: Sequence[TokenVectors]) -> np.ndarray:
        """FDEs of many documents -> float32 [n, output_dim]."""
        return _stack([self.encode_document(v) for v in batch], self.output_dim)

    def _encode(self, vectors: TokenVectors, *, is_query: bool) -> np.ndarray:
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidArgumentError(f"MUVERA expects token vectors of shape [n_tokens, {self.dim}]; got {x.shape}")
        cfg = self.config
        r, b, p = cfg.repetitions, 1 << cfg.k_sim, cfg.dim_proj
        out = np.zeros((r, b, p), dtype=np.float32)
        n = len(x)
        if n > 0:
            # one matmul for every repetition's hyperplanes: [n, r*k] -> bits [r, n, k]
            bits = (x @ self._simhash_flat > 0).reshape(n, r, cfg.k_sim).transpose(1, 0, 2).astype(np.int8)
            buckets = bits.astype(np.int64) @ self._weights  # [r, n]
            if self._projections_flat is None:
                proj = np.broadcast_to(x, (r, n, p))
            else:
                proj = (x @ self._projections_flat).reshape(n, r, p).transpose(1, 0, 2)  # [r, n, p]
            onehot = np.zeros((r, n, b), dtype=np.float32)
            np.put_along_axis(onehot, buckets[:, :, None], 1.0, axis=2)
            sums = np.matmul(onehot.transpose(0, 2, 1), proj)  # [r, b, p]
            counts = onehot.sum(axis=1)  # [r, b]
            if is_query:
                out = sums.astype(np.float32, copy=False)
            else:
                filled = counts > 0
                out[filled] = sums[filled] / counts[filled][:, None]
                if cfg.fill_empty_partitions and not filled.all():
                    for rep in np.flatnonzero(~filled.all(axis=1)):
                        empty = np.flatnonzero(~filled[rep])
                        # Hamming distance [n_empty, n] between empty buckets' codes and tokens' bits
                        dist = (self._codes[empty][:, None, :] != bits[rep][None, :, :]).sum(axis=2)
                        out[rep, empty] = proj[rep][dist.argmin(axis=1)]
        raw = out.reshape(-1)
        if self.final_index is None or self.final_sign is None:
            return raw
        weights = raw.astype(np.float64) * self.final_sign
        return np.bincount(self.final_index, weights=weights, minlength=self.output_dim).astype(np.float32)


def pooled_vector(vectors: TokenVectors) -> np.ndarray:
    """Mean of the token vectors, L2-normalised: the simple single-vector alternative to MUVERA.

    >>> [round(float(v), 4) for v in pooled_vector(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))]
    [0.7071, 0.7071]
    """
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise InvalidArgumentError(f"pooled_vector expects [n_tokens, dim]; got shape {x.shape}")
    if len(x) == 0:
        return np.zeros(x.shape[1], dtype=np.float32)
    mean = x.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else mean.astype(np.float32)


def _stack(rows: list[np.ndarray], dim: int) -> np.ndarray:
    return np.stack(rows).astype(np.float32, copy=False) if rows else np.zeros((0, dim), dtype=np.float32)
