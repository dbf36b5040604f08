# mypy: disable-error-code="attr-defined"
# (a mixin of maxsim.index.Index: the attributes it uses are the index's own)
"""Keeping an index in shape: automatic maintenance after writes, ``optimize()``, ``info()`` and
``verify()``, as a mixin of :class:`maxsim.index.Index`.

Small segments are merged and deleted documents dropped by copying codes; the codec is re-trained
(and every document re-encoded from its decompressed vectors) only when the collection has drifted
from what the centroids were trained on. Both swap their result in with one catalog commit.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

from maxsim.compression.residual import train_codec
from maxsim.index import storage
from maxsim.index.compaction import rewrite_segments
from maxsim.index.errors import IndexCorruptedError, MaintenanceWarning
from maxsim.index.snapshot import Snapshot

#: Re-train the codec automatically once the collection holds this many times the tokens it
#: was trained on (an index whose first add was small re-clusters as it grows).
AUTO_RETRAIN_GROWTH = 4.0
#: Merge the small segments that adds create once there are more than this many.
MAX_SEGMENTS = 16
#: Compact (drop deleted documents from the segments) once this fraction of them is deleted.
MAX_DELETED_FRACTION = 0.25
#: optimize() re-trains the centroids when the live tokens changed by more than this fraction
#: since the last training (else it only compacts).
OPTIMIZE_RETRAIN_CHANGE = 0.25
#: Tokens decoded for re-training in optimize(): at most this many per centroid.
TRAIN_TOKENS_PER_CENTROID = 64
#: ...and at most this many in all (float32, 2 GB at dim 128): past 65,536 centroids the sample
#: would otherwise dominate a build's memory (262,144 centroids x 64 tokens: 8.6 GB); faiss
#: k-means still gets 16 tokens per centroid there.
MAX_TRAIN_TOKENS = 1 << 22

log = logging.getLogger("maxsim.index.index")


class Maintenance:
    """Mixin of :class:`maxsim.index.Index`: maintenance, optimize, info and verify."""

    #: The error of the last failed automatic maintenance (None once one succeeds).
    last_maintenance_error: Exception | None = None

    def _maintain_after_commit(self, ids: list[str]) -> None:
        """Automatic maintenance after a committed write: its failure must not look like a failed
        write (the caller would retry a write that is already durable), so it is logged and warned."""
        try:
            self._maintain()
        except Exception as e:  # noqa: BLE001 - any failure here leaves the committed write intact
            self.last_maintenance_error = e
            message = (
                f"index {self.path}: the write of {len(ids)} document(s) is committed, but the automatic "
                f"maintenance after it failed ({type(e).__name__}: {e}); it runs again after the next write, "
                "or call optimize()"
            )
            log.warning(message)
            warnings.warn(MaintenanceWarning(message, ids, e), stacklevel=3)
        else:
            self.last_maintenance_error = None

    def _maintain(self) -> None:
        if not self.auto_optimize:
            return
        snap = self._refresh()
        if snap.codec is None or not snap.segments:
            return
        trained = int(self._catalog.query("SELECT value FROM state WHERE key='tokens_trained'")[0][0])
        if snap.live_tokens() > AUTO_RETRAIN_GROWTH * max(trained, 1):
            self.optimize(force=True)
            return
        in_segments = sum(s.n_docs for s in snap.segments)
        deleted = in_segments - sum(int(m.sum()) for m in snap.live)
        small = [s for s in snap.segments if s.n_docs < storage.MAX_SEGMENT_DOCS // 2]
        if deleted > MAX_DELETED_FRACTION * in_segments:
            self._rewrite(snap, list(snap.segments))
        elif len(snap.segments) > MAX_SEGMENTS and len(small) > 1:
            self._rewrite(snap, small)

    def optimize(self, force: bool = False) -> bool:
        """Re-cluster if the centroids no longer fit the data, and compact every segment.

        The centroids are re-trained (and every document re-encoded) when the live tokens
        differ from those the codec was trained on by more than OPTIMIZE_RETRAIN_CHANGE (25 %),
        or when ``force``; otherwise the segments are only merged and purged of deleted
        documents, which copies codes without re-encoding. Re-encoding starts from the
        decompressed vectors (the index keeps no originals), so each re-training adds a little
        quantisation noise: that is why it is not done when nothing changed. Atomic: a crash
        leaves the previous index intact. Returns True if the centroids were re-trained.
        Runs automatically when the collection has grown AUTO_RETRAIN_GROWTH times past the
        tokens the codec was trained on.
        """
        with self._write_mutex:
            self._acquire_writer()
            snap = self._refresh()
            if snap.codec is None:
                return False
            live_docs = [np.flatnonzero(m) for m in snap.live]
            n_tokens = snap.live_tokens()
            trained = int(self._catalog.query("SELECT value FROM state WHERE key='tokens_trained'")[0][0])
            fits = abs(n_tokens - trained) <= OPTIMIZE_RETRAIN_CHANGE * max(trained, 1)
            if n_tokens == 0 or (fits and not force):
                self._rewrite(snap, list(snap.segments))
                return False
            k = self._n_centroids(n_tokens)
            budget = min(TRAIN_TOKENS_PER_CENTROID * k, MAX_TRAIN_TOKENS)
            rng = np.random.default_rng(snap.version)
            sample = []
            for seg, docs in zip(snap.segments, live_docs, strict=True):
                if len(docs) == 0:
                    continue
                share = max(1, math.ceil(len(docs) * min(1.0, budget / n_tokens)))
                pick = np.sort(rng.choice(docs, size=min(share, len(docs)), replace=False))
                sample.append(snap.decode(seg, pick, refine=True))
            codec = train_codec(
                np.concatenate(sample),
                k,
                self.nbits,
                seed=int(snap.version),
                table_bits=self._table_bits,
                refine_bits=self.refine_bits,
            )
            self._rewrite(snap, list(snap.segments), new_codec=codec, trained_tokens=n_tokens)
            return True

    def _rewrite(
        self, snap: Snapshot, segs: list[storage.Segment], *, new_codec: Any = None, trained_tokens: int | None = None
    ) -> None:
        rewrite_segments(
            self.path,
            self._catalog,
            snap,
            segs,
            format_version=self._format_version,
            pack_ids=self._pack_ids,
            new_codec=new_codec,
            trained_tokens=trained_tokens,
        )
        self._refresh()
        self._collect_garbage()

    def info(self) -> dict:
        """Sizes and settings of the index."""
        snap = self._refresh()
        stored_tokens = sum(s.n_tokens for s in snap.segments)
        size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        arrays = sum(
            f.stat().st_size
            for d in [snap.codec_name, *(s.name for s in snap.segments)]
            if d
            for f in (self.path / d).glob("*.npy")
        )
        refine = sum(
            (self.path / s.name / f"{storage.REFINE_ARRAY}.npy").stat().st_size
            for s in snap.segments
            if s.refine is not None
        )
        return {
            "path": str(self.path),
            "format_version": self._manifest["format_version"],
            "dim": self.dim,
            "nbits": self.nbits,
            "model": self.model_name,
            "documents": snap.n_live,
            "tokens": snap.live_tokens(),
            "deleted_pending": int(sum(s.n_docs for s in snap.segments) - sum(int(m.sum()) for m in snap.live)),
            "segments": len(snap.segments),
            "centroids": snap.codec.n_centroids if snap.codec else 0,
            "bytes_on_disk": size,
            "array_bytes_per_token": arrays / stored_tokens if stored_tokens else 0.0,
            "refine_bits": self.refine_bits,
            # the second residual plane is read per query for the short list only
            "refine_bytes_per_token": refine / stored_tokens if stored_tokens else 0.0,
            "version": snap.version,
        }

    def verify(self) -> None:
        """Checksum every array file, run SQLite's integrity check, check every catalog row against
        its checksum and the live documents of the segments against the catalog; raise
        IndexCorruptedError naming the damage."""
        with self._view() as (snap, conn):
            if snap.codec_name:
                storage.load_codec(self.path, snap.codec_name, verify_all=True)
            for seg in snap.segments:
                assert snap.codec is not None  # segments exist only under a codec
                storage.load_segment(self.path, seg.name, snap.codec, verify_all=True)
            live = np.concatenate(
                [s.docnos[m.astype(bool)] for s, m in zip(snap.segments, snap.live, strict=True)]
                or [np.zeros(0, np.int64)]
            )
            rows = np.fromiter((r[0] for r in conn.execute("SELECT docno FROM docs")), dtype=np.int64)
        res = self._catalog.query("PRAGMA integrity_check")
        if res != [("ok",)]:
            raise IndexCorruptedError(f"index catalog failed its integrity check: {res[:3]}")
        self._catalog.check_rows()
        if len(live) != len(rows) or not np.array_equal(np.sort(live), np.sort(rows)):
            odd = np.setxor1d(live, rows)[:5].tolist()
            raise IndexCorruptedError(
                f"index catalog and segments disagree on the live documents (docnos {odd}): {self._catalog.path}"
            )
