"""Differentiable forward passes for training: texts -> raw projections [B, L, D] and a mask.

Two ways, chosen by what is trained:

- :class:`EncoderForward` runs the backbone with gradients (LoRA adapters on ``Wqkv``,
  ``out_proj``, ``fc1``, ``fc2``, or the top layers unfrozen) and then the head;
- :class:`CachedForward` trains the head alone on a frozen backbone: the backbone's states of
  every training text are computed once (and cached on disk), and each step only runs the head.
  Both give the same numbers for the same weights (up to float16 rounding of cached states).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from maxsim.tokens.late_interaction import TokenizedText

LORA_TARGETS = ("Wqkv", "out_proj", "fc1", "fc2")


def truncate_item(item: TokenizedText, max_len: int) -> TokenizedText:
    """Cut a document to ``max_len`` tokens, keeping its end token last."""
    if len(item) <= max_len:
        return item
    ids = np.concatenate([item.ids[: max_len - 1], item.ids[-1:]])
    att = np.concatenate([item.attention[: max_len - 1], item.attention[-1:]])
    keep = np.concatenate([item.keep[: max_len - 1], item.keep[-1:]])
    return TokenizedText(ids, att, keep, True)


def tokenize(model, texts: Sequence[str], is_query: bool, doc_maxlen: int) -> list[TokenizedText]:
    if is_query:
        return model.tokenizer.queries(list(texts))
    limit = min(doc_maxlen, model.max_positions)
    return [truncate_item(it, limit) for it in model.tokenizer.documents(list(texts))]


def pad_items(items: Sequence[TokenizedText], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [B, L] int64, attention [B, L] int64, keep [B, L] bool."""
    longest = max(len(it) for it in items)
    ids = np.full((len(items), longest), pad_id, dtype=np.int64)
    att = np.zeros((len(items), longest), dtype=np.int64)
    keep = np.zeros((len(items), longest), dtype=bool)
    for r, it in enumerate(items):
        ids[r, : len(it)] = it.ids
        att[r, : len(it)] = it.attention
        keep[r, : len(it)] = it.keep
    return torch.from_numpy(ids), torch.from_numpy(att), torch.from_numpy(keep)


def add_lora(encoder: nn.Module, r: int = 8, alpha: int = 16, targets: Sequence[str] = LORA_TARGETS) -> nn.Module:
    """Inject LoRA adapters (peft) into the encoder's Linear layers named in ``targets``; only they train."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise ImportError("LoRA training needs peft: pip install 'maxsim[train]'") from exc
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none")
    encoder = inject_adapter_in_model(config, encoder)
    for name, p in encoder.named_parameters():
        p.requires_grad_("lora_" in name)
    return encoder


def unfreeze_top_layers(encoder: nn.Module, n: int) -> None:
    layers = getattr(encoder, "layers", None)
    if layers is None or n > len(layers):
        raise ValueError(f"cannot unfreeze {n} top layers of an encoder with {len(layers or [])} layers")
    for p in encoder.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - n :]:
        for p in layer.parameters():
            p.requires_grad_(True)


class EncoderForward(nn.Module):
    """Backbone (with whatever of it is trainable) then head, with gradients."""

    def __init__(self, model, head: nn.Linear, doc_maxlen: int = 180) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.encoder
        self.head = head
        self.doc_maxlen = doc_maxlen

    def forward(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
        items = tokenize(self.model, texts, is_query, self.doc_maxlen)
        ids, att, keep = pad_items(items, self.model.tokenizer.settings.pad_token_id)
        hidden = self.encoder(ids, att).float()
        return self.head(hidden), keep & att.bool()


class CachedForward(nn.Module):
    """Head on frozen backbone states computed once per text (``add_texts``)."""

    def __init__(self, model, head: nn.Linear, doc_maxlen: int = 180, cache_dir: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.head = head
        self.doc_maxlen = doc_maxlen
        self.cache_dir = cache_dir
        self._states: dict[tuple[bool, str], tuple[np.ndarray, np.ndarray]] = {}

    def add_texts(self, texts: Sequence[str], is_query: bool, show_progress: bool = True, chunk: int = 2000) -> None:
        """Run the frozen backbone over texts not seen yet (chunks are cached on disk when a cache_dir is set)."""
        from maxsim.evaluation.encoding import backbone_states, model_fingerprint

        todo = [t for t in dict.fromkeys(texts) if (is_query, t) not in self._states]
        if not todo:
            return
        fingerprint = model_fingerprint(self.model)
        for s in range(0, len(todo), chunk):
            part = todo[s : s + chunk]
            items = tokenize(self.model, part, is_query, self.doc_maxlen)
            states = backbone_states(self.model, items, self.cache_dir, fingerprint, show_progress)
            for i, t in enumerate(part):
                self._states[(is_query, t)] = (states.item(i), states.keep[states.offsets[i] : states.offsets[i + 1]])

    def forward(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [t for t in texts if (is_query, t) not in self._states]
        if missing:
            self.add_texts(missing, is_query, show_progress=False)
        rows = [self._states[(is_query, t)] for t in texts]
        longest = max(len(r[0]) for r in rows)
        hidden = np.zeros((len(rows), longest, rows[0][0].shape[1]), dtype=np.float32)
        mask = np.zeros((len(rows), longest), dtype=bool)
        for i, (h, keep) in enumerate(rows):
            hidden[i, : len(h)] = h
            mask[i, : len(h)] = keep
        return self.head(torch.from_numpy(hidden)), torch.from_numpy(mask)
