"""Backbone passes shared by the late-interaction runs at every dim and the dense baseline.

The expensive part of an evaluation is the backbone. We run it once per text and keep the last
hidden state at every position (float16, optionally cached on disk); then

- ColBERT vectors at any ``dim`` = the head applied to the kept rows, cut to ``dim``, normalised
  (exactly what ``Model.encode_documents(dim=...)`` computes, up to float16 rounding of the states);
- the dense baseline's document vector = the mean of the same states, when the dense input ids
  equal the ColBERT document ids (true for E5: ``<s> passage: text </s>``); other documents get
  their own pass.

The cache key covers the model name, a fingerprint of its weights and the exact input ids, so a
changed model or tokeniser never reads stale states.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maxsim.errors import InvalidArgumentError
from maxsim.tokens.late_interaction import TokenizedText


@dataclass
class States:
    """Hidden states of many inputs, concatenated: ``rows[offsets[i]:offsets[i+1]]`` is input i."""

    rows: np.ndarray  # float16 [total, hidden]
    offsets: np.ndarray  # int64 [n + 1]
    keep: np.ndarray  # bool [total]: positions that give a ColBERT vector

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def item(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i] : self.offsets[i + 1]]


def model_fingerprint(model) -> str:
    """A short hash of the model's name and of every encoder parameter's sum and shape."""
    h = hashlib.sha1(model.name.encode())
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            h.update(f"{name}{tuple(p.shape)}{float(p.double().sum()):.6e}".encode())
    return h.hexdigest()[:16]


def _item_key(fingerprint: str, item: TokenizedText) -> bytes:
    return (
        fingerprint.encode()
        + b"|"
        + np.asarray(item.ids, dtype=np.int64).tobytes()
        + np.asarray(item.attention, dtype=bool).tobytes()
    )


def _ids_key(items: list[TokenizedText]) -> str:
    h = hashlib.sha1()
    for it in items:
        h.update(np.asarray(it.ids, dtype=np.int64).tobytes())
        h.update(np.asarray(it.attention, dtype=bool).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def backbone_states(
    model,
    items: list[TokenizedText],
    cache_dir: str | Path | None = None,
    fingerprint: str | None = None,
    show_progress: bool = False,
    memo: dict[bytes, np.ndarray] | None = None,
) -> States:
    """Hidden states at all positions of each item (``item.keep`` is recorded, not applied).

    ``memo`` (one dict per evaluation run) keeps every input's states by model and input ids, so
    an input met again in another collection is not run again: a cross-lingual set repeats the
    questions of one monolingual set and the paragraphs of another.
    """
    if memo is not None and items:
        fingerprint = fingerprint or model_fingerprint(model)
        keys = [_item_key(fingerprint, it) for it in items]
        todo = {k: it for k, it in zip(keys, items) if k not in memo}  # first item of each new input
        if todo:
            fresh = backbone_states(model, list(todo.values()), cache_dir, fingerprint, show_progress)
            for n, k in enumerate(todo):
                memo[k] = fresh.item(n)
        lengths = np.fromiter((len(it) for it in items), dtype=np.int64, count=len(items))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        keep = np.concatenate([np.asarray(it.keep, bool) for it in items])
        return States(np.concatenate([memo[k] for k in keys]), offsets, keep)
    path = None
    if cache_dir is not None:
        fingerprint = fingerprint or model_fingerprint(model)
        path = Path(cache_dir) / f"states-{fingerprint}-{_ids_key(items)}.npz"
        if path.is_file():
            with np.load(path) as z:
                return States(z["rows"], z["offsets"], z["keep"])
    full = [TokenizedText(it.ids, it.attention, np.ones(len(it), dtype=bool)) for it in items]
    outs = model._run(full, head=None, show_progress=show_progress) if full else []
    lengths = np.fromiter((len(it) for it in items), dtype=np.int64, count=len(items))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hidden = model._hidden_size()
    rows = np.concatenate(outs).astype(np.float16) if outs else np.zeros((0, hidden), np.float16)
    keep = np.concatenate([np.asarray(it.keep, bool) for it in items]) if items else np.zeros(0, bool)
    states = States(rows, offsets, keep)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, rows=rows, offsets=offsets, keep=keep)
        tmp.replace(path)
    return states


def project(states: States, head: nn.Linear, dims: list[int], chunk: int = 65536) -> dict[int, list[np.ndarray]]:
    """ColBERT vectors of every input at each dim: head(kept rows)[:, :dim], L2-normalised, float32."""
    kept_rows = np.flatnonzero(states.keep)
    raw = np.zeros((len(kept_rows), head.out_features), dtype=np.float32)
    w = head.weight.detach().float()
    b = head.bias.detach().float() if head.bias is not None else None
    with torch.no_grad():
        for s in range(0, len(kept_rows), chunk):
            x = torch.from_numpy(states.rows[kept_rows[s : s + chunk]].astype(np.float32))
            y = x @ w.T
            if b is not None:
                y = y + b
            raw[s : s + chunk] = y.numpy()
    counts = np.add.reduceat(states.keep.astype(np.int64), states.offsets[:-1]) if len(states) else np.zeros(0, int)
    counts[np.diff(states.offsets) == 0] = 0
    bounds = np.concatenate([[0], np.cumsum(counts)])
    out: dict[int, list[np.ndarray]] = {}
    for dim in dims:
        if dim > head.out_features:
            raise InvalidArgumentError(f"dim {dim} exceeds the head's {head.out_features} outputs")
        v = raw[:, :dim]
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        out[dim] = [v[bounds[i] : bounds[i + 1]] for i in range(len(states))]
    return out


def mean_pooled(states: States) -> np.ndarray:
    """The dense model's pooling (``maxsim.models.dense.mean_pool``) of each input: float32 [n, hidden]."""
    from maxsim.models.dense import mean_pool

    out = np.zeros((len(states), states.rows.shape[1]), dtype=np.float32)
    for i in range(len(states)):
        out[i] = mean_pool(states.item(i))
    return out
