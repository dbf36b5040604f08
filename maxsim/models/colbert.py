"""The late-interaction model: token ids -> backbone -> projection head -> normalised token vectors."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from maxsim.errors import InputWarning, InvalidArgumentError, InvalidTypeError
from maxsim.scoring.rerank import ScoreScale, check_top_n, rerank_vectors, scale_scores
from maxsim.text.clean import InputError, validate_texts
from maxsim.tokens.late_interaction import LateInteractionTokenizer, TokenizedText
from maxsim.types import SUPPORTED_DIMS, RerankResult, TokenVectors

# Inputs above this many tokens in one call show a progress bar unless told otherwise.
_PROGRESS_TOKENS = 50_000


@dataclass(frozen=True)
class EncodeOptions:
    """How inputs are batched. Batches hold texts of similar length (sorted) up to a token budget."""

    batch_tokens: int = 16384  # padded tokens per forward pass
    max_batch_size: int = 64
    window_overlap: int = 64  # tokens shared by neighbouring windows of a long document
    # Documents longer than document_length: "truncate" (as Jina and PyLate do) or "window"
    # (every token kept; windows of min(document_length, max_positions) tokens).
    long_documents: Literal["truncate", "window"] = "truncate"


@dataclass
class _Segment:
    """A slice of one input that fits the backbone's positions, and where its rows go."""

    item: int
    ids: np.ndarray
    attention: np.ndarray
    src: slice  # rows of this segment's output that are kept
    dst: slice  # where they go in the item's output


class Model:
    """A ColBERT-style late-interaction model.

    ``encode_queries`` and ``encode_documents`` return one float32 array per text, each row an
    L2-normalised token vector of size ``dim`` (128, 96 or 64). ``rerank`` orders documents by
    MaxSim against a query.
    """

    def __init__(
        self,
        encoder: nn.Module,
        heads: dict[int, nn.Linear],
        tokenizer: LateInteractionTokenizer,
        *,
        name: str,
        max_positions: int,
        dtype: torch.dtype = torch.float32,
        num_threads: int | None = None,
        options: EncodeOptions | None = None,
        info: dict | None = None,
    ) -> None:
        if not heads:
            raise InvalidArgumentError("a model needs at least one projection head")
        self.encoder = encoder.eval().to(dtype)
        self.heads = {int(k): h.eval().float() for k, h in sorted(heads.items(), reverse=True)}
        self.tokenizer = tokenizer
        self.name = name
        self.max_positions = int(max_positions)
        self.dtype = dtype
        self.options = options or EncodeOptions()
        self.info = dict(info or {})
        # One forward pass at a time: concurrent callers (server threads) would only oversubscribe
        # the cores; batching them is the caller's job (see maxsim.api.batching).
        self._lock = threading.Lock()
        if num_threads is not None:
            self.set_num_threads(num_threads)
        for p in list(self.encoder.parameters()) + [p for h in self.heads.values() for p in h.parameters()]:
            p.requires_grad_(False)

    # ------------------------------------------------------------------ public API
    @property
    def dims(self) -> tuple[int, ...]:
        """Output sizes this model serves."""
        top = max(self.heads)
        return tuple(d for d in SUPPORTED_DIMS if d <= top) or (top,)

    @property
    def query_length(self) -> int:
        return self.tokenizer.settings.query_length

    @property
    def document_length(self) -> int:
        return self.tokenizer.settings.document_length

    @staticmethod
    def set_num_threads(n: int) -> None:
        if int(n) < 1:
            raise InputError(f"num_threads must be >= 1, got {n}")
        torch.set_num_threads(int(n))

    def encode_queries(
        self, texts: str | Sequence[str], dim: int | None = None, show_progress: bool | None = None
    ) -> list[TokenVectors]:
        """Each query -> [query_length, dim] float32 (query_length is 32 unless the checkpoint says otherwise).

        ``dim`` None means the largest the model serves (128, or a -96/-64 checkpoint's own size).
        """
        texts = validate_texts(texts, "queries")
        dim = self._check_dim(dim)
        self._warn_about_queries(texts)
        return self._encode(self.tokenizer.queries(texts), dim, show_progress)

    def encode_documents(
        self,
        texts: str | Sequence[str],
        dim: int | None = None,
        show_progress: bool | None = None,
        long_documents: Literal["truncate", "window"] | None = None,
    ) -> list[TokenVectors]:
        """Each document -> [n_tokens, dim] float32, padding and punctuation rows dropped.

        ``long_documents`` (default ``self.options.long_documents``, "truncate"): what happens to
        documents longer than ``document_length``: cut there, or encoded whole in overlapping windows.
        """
        texts = validate_texts(texts, "documents")
        dim = self._check_dim(dim)
        mode = long_documents or self.options.long_documents
        if mode not in ("truncate", "window"):
            raise InputError(f"long_documents must be 'truncate' or 'window', got {mode!r}")
        if mode == "truncate":
            items = self.tokenizer.documents(texts)
            cut = [i for i, item in enumerate(items) if item.truncated]
            if cut:
                warnings.warn(
                    f"{len(cut)} of {len(texts)} documents (first: documents[{cut[0]}]) are longer than "
                    f"{self.document_length} tokens and were cut there; pass long_documents='window' "
                    "to keep every token",
                    InputWarning,
                    stacklevel=2,
                )
            return self._encode(items, dim, show_progress)
        limit = min(self.max_positions, self.document_length)
        return self._encode(self.tokenizer.documents(texts, truncate=False), dim, show_progress, limit)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        dim: int | None = None,
        return_documents: bool = True,
        scale: ScoreScale = "maxsim",
    ) -> list[RerankResult]:
        """Documents sorted by MaxSim against the query, best first, with the fields of Jina's
        /v1/rerank results (``document`` is the text itself here, ``{"text": ...}`` over HTTP).

        ``scale="unit"``: scores in [0, 1] (see ``maxsim.scoring.rerank``); the order is the same.
        """
        if isinstance(documents, (str, bytes)):  # a str is a sequence of characters: refuse, do not echo "o"
            raise InvalidTypeError(
                f"documents must be a list of str, not a single {type(documents).__name__}; wrap it: [document]"
            )
        if not isinstance(query, str):
            raise InputError(f"query must be a str, not {type(query).__name__}")
        docs = validate_texts(documents, "documents")
        check_top_n(top_n)
        scale_scores(np.zeros(0), 1, scale)  # an unknown scale fails before any encoding
        if not docs:
            return []
        q = self.encode_queries([query], dim=dim)[0]
        returned = list(documents) if return_documents else None
        return rerank_vectors(q, self.encode_documents(docs, dim=dim), top_n=top_n, scale=scale, returned=returned)  # type: ignore[return-value]

    def document_tokens(self, text: str) -> list[str]:
        """The token strings of a document's kept rows, aligned with ``encode_documents`` output."""
        item = self.tokenizer.documents(validate_texts([text]))[0]
        return self.tokenizer.tokens(item.ids[item.keep])

    def query_tokens(self, text: str) -> list[str]:
        item = self.tokenizer.queries(validate_texts([text]))[0]
        return self.tokenizer.tokens(item.ids)

    def hidden_states(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """The backbone's last hidden state at every input position (no head, nothing dropped)."""
        texts = validate_texts(texts)
        items = self.tokenizer.queries(texts) if is_query else self.tokenizer.documents(texts)
        full = [TokenizedText(t.ids, t.attention, np.ones(len(t), dtype=bool)) for t in items]
        return self._run(full, head=None, show_progress=False)

    # ------------------------------------------------------------------ internals
    def _warn_about_queries(self, texts: list[str]) -> None:
        """Queries that encode but match on little: empty ones and ones of mostly unknown pieces."""
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            warnings.warn(
                f"queries[{empty[0]}] is empty ({len(empty)} of {len(texts)} empty): it matches on "
                "nothing but the query markers",
                InputWarning,
                stacklevel=3,
            )
        shares = self.tokenizer.unknown_token_shares(texts)
        unknown = [i for i, share in enumerate(shares) if share > 0.5]
        if unknown:
            warnings.warn(
                f"queries[{unknown[0]}] is mostly tokens the model's vocabulary does not know "
                f"({shares[unknown[0]]:.0%} unknown; {len(unknown)} of {len(texts)} queries like that): "
                "it will match poorly",
                InputWarning,
                stacklevel=3,
            )

    def _check_dim(self, dim: int | None) -> int:
        if dim is None:
            return self.dims[0]
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or int(dim) not in self.dims:
            raise InputError(f"dim must be one of {list(self.dims)}, got {dim!r}")
        return int(dim)

    def _head_for(self, dim: int) -> nn.Linear:
        """The checkpoint's own head of that size, else the smallest larger one (truncated later)."""
        if dim in self.heads:
            return self.heads[dim]
        return self.heads[min(k for k in self.heads if k > dim)]

    def _encode(
        self, items: list[TokenizedText], dim: int, show_progress: bool | None, limit: int | None = None
    ) -> list[TokenVectors]:
        head = self._head_for(int(dim))
        raw = self._run(items, head=head, show_progress=show_progress, limit=limit)
        out = []
        for vectors in raw:
            # Matryoshka: keep the first `dim` raw coordinates, then normalise.
            v = vectors[:, :dim]
            norms = np.linalg.norm(v, axis=1, keepdims=True)
            out.append((v / np.maximum(norms, 1e-12)).astype(np.float32, copy=False))
        return out

    def _segments(self, items: list[TokenizedText], limit: int | None = None) -> list[_Segment]:
        limit = limit or self.max_positions
        segments: list[_Segment] = []
        for index, item in enumerate(items):
            n = len(item)
            if n <= limit:
                segments.append(_Segment(index, item.ids, item.attention, slice(0, n), slice(0, n)))
                continue
            segments.extend(self._windows(index, item, limit))
        return segments

    def _windows(self, index: int, item: TokenizedText, limit: int | None = None) -> list[_Segment]:
        """Overlapping windows over a long document; each content token's vector comes from the
        window in which it sits furthest from an edge (the overlap is split in the middle)."""
        n_marker = len(self.tokenizer.settings.document_marker_ids)
        prefix = 1 + n_marker
        content = len(item) - prefix - 1
        width = (limit or self.max_positions) - prefix - 1
        overlap = min(self.options.window_overlap, width // 2)
        stride = width - overlap
        starts = list(range(0, max(content - overlap, 1), stride))
        segments = []
        for k, a in enumerate(starts):
            b = min(a + width, content)
            last = k == len(starts) - 1
            own_lo = a if k == 0 else a + overlap // 2
            own_hi = b if last else b - (overlap - overlap // 2)
            ids = np.concatenate([item.ids[:prefix], item.ids[prefix + a : prefix + b], item.ids[-1:]])
            att = np.concatenate(
                [item.attention[:prefix], item.attention[prefix + a : prefix + b], item.attention[-1:]]
            )
            seg_lo = prefix + (own_lo - a) if k else 0
            seg_hi = prefix + (own_hi - a) + (1 if last else 0)
            dst_lo = prefix + own_lo if k else 0
            dst_hi = prefix + own_hi + (1 if last else 0)
            segments.append(_Segment(index, ids, att, slice(seg_lo, seg_hi), slice(dst_lo, dst_hi)))
        return segments

    def _batches(self, segments: list[_Segment]) -> list[list[int]]:
        order = sorted(range(len(segments)), key=lambda i: len(segments[i].ids))
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            length = len(segments[i].ids)
            grown = max(longest, length) * (len(current) + 1)
            if current and (grown > self.options.batch_tokens or len(current) >= self.options.max_batch_size):
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, length)
        if current:
            batches.append(current)
        return batches

    @torch.inference_mode()
    def _run(
        self, items: list[TokenizedText], head: nn.Linear | None, show_progress: bool | None, limit: int | None = None
    ) -> list[np.ndarray]:
        width = head.out_features if head is not None else self._hidden_size()
        outputs = [np.zeros((len(it), width), dtype=np.float32) for it in items]
        segments = self._segments(items, limit)
        batches = self._batches(segments)
        total = sum(len(s.ids) for s in segments)
        if show_progress is None:
            show_progress = total > _PROGRESS_TOKENS
        pad = self.tokenizer.settings.pad_token_id
        # Our own encoder computes real positions only (see TransformerEncoder.forward_packed).
        packed = hasattr(self.encoder, "forward_packed")
        bar = tqdm(total=total, unit="tok", desc="encoding", disable=not show_progress, leave=False)
        try:
            for batch in batches:
                segs = [segments[i] for i in batch]
                longest = max(len(s.ids) for s in segs)
                ids = np.full((len(segs), longest), pad, dtype=np.int64)
                mask = np.zeros((len(segs), longest), dtype=np.int64)
                for row, s in enumerate(segs):
                    ids[row, : len(s.ids)] = s.ids
                    mask[row, : len(s.ids)] = s.attention
                with self._lock:
                    if packed:
                        lengths = torch.tensor([len(s.ids) for s in segs])
                        forward_packed = getattr(self.encoder, "forward_packed")
                        hidden = forward_packed(torch.from_numpy(ids), torch.from_numpy(mask), lengths)
                    else:
                        hidden = self.encoder(torch.from_numpy(ids), torch.from_numpy(mask))
                    result = head(hidden.float()) if head is not None else hidden.float()
                result_np = result.numpy()
                start = 0
                for row, s in enumerate(segs):
                    # packed: row after row, each its own length; else [B, L, width]
                    rows = result_np[start : start + len(s.ids)] if packed else result_np[row]
                    start += len(s.ids)
                    outputs[s.item][s.dst] = rows[s.src]
                bar.update(sum(len(s.ids) for s in segs))
        finally:
            bar.close()
        return [out[it.keep] for out, it in zip(outputs, items)]

    def _hidden_size(self) -> int:
        return int(next(iter(self.heads.values())).in_features)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, dims={self.dims}, max_positions={self.max_positions}, dtype={self.dtype})"


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
