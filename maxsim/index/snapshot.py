"""What one search reads: an immutable view of the index at one catalog version.

A snapshot holds the codec, the memory-mapped segments and a live mask per segment, all read in
one SQLite read transaction; the search keeps that transaction open for its filter and its
hydration (see :mod:`maxsim.index.index`), so it never mixes the segments of one version with the
catalog of another.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maxsim.compression.residual import ResidualCodec
from maxsim.index import storage
from maxsim.index.catalog import Catalog
from maxsim.index.errors import IndexCorruptedError
from maxsim.index.search import decompress_docs


@dataclass(frozen=True, eq=False)
class Snapshot:
    version: int
    codec_name: str | None
    codec: ResidualCodec | None
    lut: np.ndarray | None
    segments: tuple[storage.Segment, ...]
    live: tuple[np.ndarray, ...]  # uint8 [n_docs] per segment: 1 if not deleted
    n_live: int

    def live_tokens(self) -> int:
        return int(
            sum(int(np.diff(s.offsets)[m.astype(bool)].sum()) for s, m in zip(self.segments, self.live, strict=True))
        )

    def decode(self, seg: storage.Segment, docs: np.ndarray, refine: bool = False) -> np.ndarray:
        """Decompressed token vectors of documents ``docs`` (local numbers) of ``seg``, concatenated;
        from the first residual plane, or from both when ``refine`` and the index has two."""
        assert self.codec is not None and self.lut is not None
        docs = docs.astype(np.int64)
        lens = np.diff(seg.offsets)[docs]
        out_offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_offsets[1:])
        out = np.empty((int(out_offsets[-1]), self.codec.dim), dtype=np.float32)
        decompress_docs(seg, self.codec, self.lut, docs, out_offsets, out, refine)
        return out


class SnapshotLoader:
    """Loads snapshots, keeping the codecs and segments already mapped from one version to the next."""

    def __init__(self, root: Path, dim: int, nbits: int, refine_bits: int = 0) -> None:
        self.root = root
        self.dim = dim
        self.nbits = nbits
        self.refine_bits = refine_bits
        self._segments: dict[str, storage.Segment] = {}
        self._codecs: dict[str, tuple[ResidualCodec, np.ndarray]] = {}

    def codec(self, name: str) -> tuple[ResidualCodec, np.ndarray]:
        if name not in self._codecs:
            codec = storage.load_codec(self.root, name)
            if codec.dim != self.dim or codec.nbits != self.nbits or codec.refine_bits != self.refine_bits:
                raise IndexCorruptedError(
                    f"codec {name} has dim {codec.dim}/nbits {codec.nbits}/refine_bits {codec.refine_bits}, "
                    f"manifest says {self.dim}/{self.nbits}/{self.refine_bits}"
                )
            self._codecs[name] = (codec, codec.lookup_table())
        return self._codecs[name]

    def load(self, conn: sqlite3.Connection) -> Snapshot:
        """The snapshot of the version that ``conn``'s open read transaction sees."""
        state = Catalog.get_state(conn)
        seg_rows = conn.execute("SELECT name, codec FROM segments ORDER BY name").fetchall()
        tombs = np.fromiter((r[0] for r in conn.execute("SELECT docno FROM tombstones")), dtype=np.int64)
        n_live = conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        codec_name = state.get("codec")
        codec, lut = self.codec(codec_name) if codec_name else (None, None)
        segments, live = [], []
        for name, seg_codec in seg_rows:
            if seg_codec != codec_name or codec is None:
                raise IndexCorruptedError(f"segment {name} uses codec {seg_codec}, the index uses {codec_name}")
            if name not in self._segments:
                self._segments[name] = storage.load_segment(self.root, name, codec)
            seg = self._segments[name]
            segments.append(seg)
            mask = np.ones(seg.n_docs, dtype=np.uint8)
            if len(tombs):
                mask[np.isin(seg.docnos, tombs)] = 0
            live.append(mask)
        names = {r[0] for r in seg_rows}
        for stale in set(self._segments) - names:
            del self._segments[stale]
        return Snapshot(int(state["version"]), codec_name, codec, lut, tuple(segments), tuple(live), int(n_live))
