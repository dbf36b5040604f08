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

from maxsim.errors import InvalidArgumentError
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


def pad_rows(rows: Sequence[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Per-text tuples of per-position arrays -> one zero-padded [B, L, ...] array per tuple slot
    (float16 states come back as float32)."""
    longest = max(len(r[0]) for r in rows)
    out = []
    for part in zip(*rows):
        dtype = np.float32 if part[0].dtype == np.float16 else part[0].dtype
        arr = np.zeros((len(rows), longest, *part[0].shape[1:]), dtype=dtype)
        for i, p in enumerate(part):
            arr[i, : len(p)] = p
        out.append(arr)
    return out


def autocast(enabled: bool, device: torch.device | str = "cpu"):
    """bfloat16 autocast on ``device``'s type ("cpu", "cuda", "mps"): on the CPU about 1.5x faster
    steps on CPUs with native bf16 (AVX512-BF16/AMX)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def head_device(head: nn.Linear) -> torch.device:
    """Where training runs: the device of the trained head (the trainer puts every trained module
    there); batch tensors are moved to it (``Tensor.to`` is a no-op, no copy, on the same device)."""
    return head.weight.device


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
        raise InvalidArgumentError(f"cannot unfreeze {n} top layers of an encoder with {len(layers or [])} layers")
    for p in encoder.parameters():
        p.requires_grad_(False)
    for layer in list(layers)[len(layers) - n :]:
        for p in layer.parameters():
            p.requires_grad_(True)


class EncoderForward(nn.Module):
    """Backbone (with whatever of it is trainable) then head, with gradients."""

    def __init__(self, model, head: nn.Linear, doc_maxlen: int = 180, bf16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.encoder
        self.head = head
        self.doc_maxlen = doc_maxlen
        self.bf16 = bf16

    def forward(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
        items = tokenize(self.model, texts, is_query, self.doc_maxlen)
        ids, att, keep = pad_items(items, self.model.tokenizer.settings.pad_token_id)
        device = head_device(self.head)
        ids, att, keep = ids.to(device), att.to(device), keep.to(device)
        with autocast(self.bf16, device):
            if hasattr(self.encoder, "run_layers"):  # our encoder skips the padding's positions
                lengths = torch.tensor([len(it) for it in items], device=device)
                hidden = self.encoder.run_layers(self.encoder.embed(ids), att, lengths=lengths)
            else:
                hidden = self.encoder(ids, att)
        return self.head(hidden.float()), keep & att.bool()


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
        hidden, mask = pad_rows([self._states[(is_query, t)] for t in texts])
        device = head_device(self.head)  # the states stay in CPU memory; each batch moves
        return self.head(torch.from_numpy(hidden).to(device)), torch.from_numpy(mask).to(device)


def add_lora_to_top_layers(
    encoder: nn.Module, n: int, r: int = 8, alpha: int = 16, targets: Sequence[str] = LORA_TARGETS
) -> nn.Module:
    """LoRA adapters (peft) in the top ``n`` layers only; everything else stays frozen."""
    layers = getattr(encoder, "layers", None)
    if layers is None or not 1 <= n <= len(layers):
        raise InvalidArgumentError(f"cannot adapt {n} top layers of an encoder with {len(layers or [])} layers")
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:
        raise ImportError("LoRA training needs peft: pip install 'maxsim[train]'") from exc
    for p in encoder.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0, bias="none")
    for i in range(len(layers) - n, len(layers)):
        layers[i] = inject_adapter_in_model(config, layers[i])
    for name, p in encoder.named_parameters():
        p.requires_grad_("lora_" in name)
    return encoder


class TopLayersForward(nn.Module):
    """Frozen lower layers run once per text (states kept in memory as float16); each step runs
    only the top ``n`` layers (with their LoRA adapters or unfrozen weights) and the head.

    For a 12-layer backbone with ``n=3`` a step costs about a quarter of a full forward and
    backward, which is what makes LoRA training fit a 2-core CPU.
    """

    def __init__(
        self, model, head: nn.Linear, n: int, doc_maxlen: int = 180, batch_tokens: int = 16384, bf16: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.encoder = model.encoder
        self.head = head
        self.bf16 = bf16
        self.start = len(self.encoder.layers) - n
        self.doc_maxlen = doc_maxlen
        self.batch_tokens = batch_tokens
        self._states: dict[tuple[bool, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @torch.no_grad()
    def add_texts(self, texts: Sequence[str], is_query: bool, show_progress: bool = True) -> None:
        """States after the frozen layers for texts not seen yet, in length-sorted batches."""
        from tqdm.auto import tqdm

        todo = [t for t in dict.fromkeys(texts) if (is_query, t) not in self._states]
        if not todo:
            return
        items = tokenize(self.model, todo, is_query, self.doc_maxlen)
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        pad = self.model.tokenizer.settings.pad_token_id
        bar = tqdm(
            total=len(todo),
            desc=f"lower layers ({'queries' if is_query else 'documents'})",
            unit="text",
            disable=not show_progress,
            leave=False,
        )
        s = 0
        while s < len(order):
            longest = len(items[order[min(len(order) - 1, s)]])
            size = max(1, self.batch_tokens // max(1, longest))
            # sorted ascending: the last item of the slice is the longest
            while size > 1 and len(items[order[min(len(order), s + size) - 1]]) * size > self.batch_tokens:
                size = max(1, size // 2)
            chunk = order[s : s + size]
            ids, att, keep = pad_items([items[i] for i in chunk], pad)
            device = head_device(self.head)  # the encoder is there too
            with autocast(self.bf16, device):
                x = self.encoder.run_layers(self.encoder.embed(ids.to(device)), att.to(device), 0, self.start)
            x = x.to(torch.float16).cpu().numpy()  # kept in CPU memory
            for row, i in enumerate(chunk):
                n = len(items[i])
                a = att[row, :n]
                self._states[(is_query, todo[i])] = (x[row, :n].copy(), (keep[row, :n] & a.bool()).numpy(), a.numpy())
            bar.update(len(chunk))
            s += size
        bar.close()

    def forward(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [t for t in texts if (is_query, t) not in self._states]
        if missing:
            self.add_texts(missing, is_query, show_progress=False)
        states = [self._states[(is_query, t)] for t in texts]
        hidden, keep, att = pad_rows(states)
        lengths = torch.tensor([len(st[0]) for st in states])
        device = head_device(self.head)  # the states stay in CPU memory; each batch moves
        with autocast(self.bf16, device):
            x = self.encoder.run_layers(
                torch.from_numpy(hidden).to(device),
                torch.from_numpy(att).to(device),
                self.start,
                lengths=lengths.to(device),
            )
        return self.head(x.float()), torch.from_numpy(keep).to(device)  # head and loss stay float32
