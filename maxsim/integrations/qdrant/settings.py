"""QdrantSettings: how a collection is laid out, fixed at create time and stored with it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from maxsim.errors import InvalidArgumentError
from maxsim.integrations.qdrant.layout import MULTIVECTOR_MAX_FLOATS
from maxsim.postprocess.muvera import MuveraConfig

Storage = Literal["float32", "float16", "uint8"]
LongDocs = Literal["split", "pool"]


@dataclass(frozen=True)
class QdrantSettings:
    """How a collection is laid out. Fixed at create time and stored with the collection.

    Parameters
    ----------
    storage:
        Storage of the ``maxsim`` multivectors: ``"float32"``; ``"float16"`` (half the size);
        or ``"uint8"``: 8-bit scalar-quantised codes kept in RAM with the float32 originals on
        disk (Qdrant's raw ``uint8`` datatype also quantises queries, which cannot hold signed
        ColBERT vectors, so scalar quantisation is the 8-bit option that keeps MaxSim right).
    muvera:
        MUVERA parameters for the ``muvera`` first-stage vector, or None to store no FDE.
    pooled:
        Also store the pooled dense vector (``dim`` floats) as an alternative first stage.
    muvera_hnsw_m:
        HNSW ``m`` on the MUVERA vector (0 = no graph: exact scan of the first stage).
    long_docs:
        ``"split"`` documents over the multivector cap into parts sharing ``doc_id``, or
        ``"pool"`` their tokens (mean of consecutive runs) down to the cap.
    max_tokens:
        Token cap per stored multivector; None = ``1,048,576 // dim`` (Qdrant's limit).
    shard_number, replication_factor:
        Passed to ``create_collection`` on a server or cluster; ignored by embedded engines.
    """

    storage: Storage = "float32"
    muvera: MuveraConfig | None = field(default_factory=MuveraConfig)
    pooled: bool = True
    muvera_hnsw_m: int = 16
    long_docs: LongDocs = "split"
    max_tokens: int | None = None
    shard_number: int | None = None
    replication_factor: int | None = None

    def __post_init__(self) -> None:
        if self.storage not in ("float32", "float16", "uint8"):
            raise InvalidArgumentError(f"storage must be 'float32', 'float16' or 'uint8'; got {self.storage!r}")
        if self.long_docs not in ("split", "pool"):
            raise InvalidArgumentError(f"long_docs must be 'split' or 'pool'; got {self.long_docs!r}")
        if self.muvera is None and not self.pooled:
            raise InvalidArgumentError("a collection needs a first stage: set muvera, pooled=True, or both")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or self.max_tokens < 1):
            raise InvalidArgumentError(f"max_tokens must be None or a positive integer; got {self.max_tokens!r}")
        if not isinstance(self.muvera_hnsw_m, int) or self.muvera_hnsw_m < 0:
            raise InvalidArgumentError(f"muvera_hnsw_m must be a non-negative integer; got {self.muvera_hnsw_m!r}")
        for name in ("shard_number", "replication_factor"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidArgumentError(f"{name} must be None or a positive integer; got {value!r}")

    def token_cap(self, dim: int) -> int:
        """Tokens per stored multivector at ``dim``: ``max_tokens`` bounded by Qdrant's limit."""
        cap = MULTIVECTOR_MAX_FLOATS // dim
        return min(cap, self.max_tokens) if self.max_tokens is not None else cap

    def to_dict(self) -> dict:
        data = asdict(self)
        data["muvera"] = self.muvera.to_dict() if self.muvera is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QdrantSettings:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgumentError(f"unknown QdrantSettings keys: {sorted(unknown)}")
        values = dict(data)
        if values.get("muvera") is not None:
            values["muvera"] = MuveraConfig.from_dict(values["muvera"])
        return cls(**values)
