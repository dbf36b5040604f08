"""Rewriting segments: merge small ones, drop deleted documents, re-encode under a new codec.

New segment directories are written and fsynced first; one catalog commit then swaps them in for
the old ones. A crash before the commit leaves the old index intact and only unreferenced
directories, which the next writer removes.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from maxsim.compression.residual import ResidualCodec
from maxsim.index import kernels, storage
from maxsim.index.catalog import Catalog
from maxsim.index.errors import IndexLockedError
from maxsim.index.snapshot import Snapshot

#: Documents gathered from one segment at a time while rewriting.
RUN_DOCS = 8192


def rewrite_segments(
    root: Path,
    catalog: Catalog,
    snap: Snapshot,
    segs: list[storage.Segment],
    *,
    format_version: int,
    pack_ids: bool,
    new_codec: ResidualCodec | None,
    trained_tokens: int | None = None,
) -> None:
    """Rewrite ``segs`` without their deleted documents (all segments, re-encoded, if ``new_codec``),
    then swap them in with one commit."""
    new_dirs: list[str] = []
    try:
        codec_name, codec = snap.codec_name, snap.codec
        if new_codec is not None:
            codec = new_codec
            codec_name = storage.write_codec(root, codec, trained_tokens or 0, format_version)
            new_dirs.append(codec_name)
            segs = list(snap.segments)  # a new codec re-encodes everything
        assert codec is not None and codec_name is not None
        live_of = {s.name: m for s, m in zip(snap.segments, snap.live, strict=True)}
        pieces = _live_pieces(snap, segs, live_of, codec if new_codec is not None else None)
        seg_rows: list[tuple[str, str, int, int]] = []
        buf: list[Piece] = []

        def flush() -> None:
            if not buf:
                return
            lens = np.concatenate([p.lengths for p in buf])
            offsets = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            codes = np.concatenate([p.codes for p in buf]).astype(codec.code_dtype)
            refine = [p.refine for p in buf if p.refine is not None]
            name = storage.write_segment(
                root,
                codec_name,
                codec.n_centroids,
                codes,
                np.concatenate([p.residuals for p in buf]),
                offsets,
                np.concatenate([p.docnos for p in buf]),
                pack=pack_ids,
                refine=np.concatenate(refine) if refine else None,
            )
            new_dirs.append(name)
            seg_rows.append((name, codec_name, len(lens), int(offsets[-1])))
            buf.clear()

        n_buf = 0
        for piece in pieces:
            if n_buf + len(piece.lengths) > storage.MAX_SEGMENT_DOCS:
                flush()
                n_buf = 0
            buf.append(piece)
            n_buf += len(piece.lengths)
        flush()
        with catalog.transaction() as conn:
            if int(Catalog.get_state(conn)["version"]) != snap.version:
                raise IndexLockedError(
                    "the catalog changed under the writer lock: another writer committed to this index"
                )
            for seg in segs:
                conn.execute("DELETE FROM segments WHERE name = ?", (seg.name,))
                dead = seg.docnos[live_of[seg.name] == 0]
                conn.executemany("DELETE FROM tombstones WHERE docno = ?", [(int(d),) for d in dead])
            conn.executemany("INSERT INTO segments(name, codec, n_docs, n_tokens) VALUES (?, ?, ?, ?)", seg_rows)
            if new_codec is not None:
                Catalog.set_state(conn, codec=codec_name, tokens_trained=int(trained_tokens or 0))
            Catalog.bump_version(conn)
    except BaseException:
        for name in new_dirs:
            storage.remove_dir(root / name)
        raise


class Piece(NamedTuple):
    """Live documents of one segment, ready to be written into a new one."""

    codes: np.ndarray
    residuals: np.ndarray
    refine: np.ndarray | None  # the refinement plane, in an index that has one
    lengths: np.ndarray
    docnos: np.ndarray


def _live_pieces(
    snap: Snapshot, segs: list[storage.Segment], live_of: dict[str, np.ndarray], reencode: ResidualCodec | None
) -> list[Piece]:
    """The live documents of ``segs``, in global docno order, in runs of at most RUN_DOCS
    documents from one segment; both residual planes are carried (or re-encoded) together."""
    if not segs:
        return []
    seg_idx = np.concatenate([np.full(int(live_of[seg.name].sum()), j, dtype=np.int64) for j, seg in enumerate(segs)])
    local = [np.flatnonzero(live_of[seg.name]) for seg in segs]
    all_local = np.concatenate(local)
    all_docno = np.concatenate([seg.docnos[loc] for seg, loc in zip(segs, local, strict=True)])
    order = np.argsort(all_docno, kind="stable")
    seg_idx, all_local = seg_idx[order], all_local[order]
    breaks = np.flatnonzero(np.diff(seg_idx)) + 1
    pieces = []
    for run_start, run_end in zip(np.r_[0, breaks], np.r_[breaks, len(seg_idx)], strict=True):
        if run_end <= run_start:
            continue
        seg = segs[int(seg_idx[run_start])]
        for s in range(int(run_start), int(run_end), RUN_DOCS):
            chunk = all_local[s : min(s + RUN_DOCS, int(run_end))]
            lens = np.diff(seg.offsets)[chunk]
            if reencode is not None:  # from the best stored vectors: both planes where there are two
                c, r, fine = reencode.encode_planes(snap.decode(seg, chunk, refine=True))
            else:
                take = np.concatenate([np.arange(seg.offsets[d], seg.offsets[d + 1]) for d in chunk])
                c = kernels.gather_codes(seg.codes, seg.code_bits, take.astype(np.int64))
                r = np.asarray(seg.residuals[take])
                fine = None if seg.refine is None else np.asarray(seg.refine[take])
            pieces.append(Piece(c, r, fine, lens, seg.docnos[chunk]))
    return pieces
