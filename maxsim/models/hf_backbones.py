"""Backbones of other ColBERT checkpoints (BERT, ModernBERT, XLM-RoBERTa ...) through ``transformers``.

Only the architecture comes from ``transformers`` (``AutoModel.from_config``, never remote
code); the weights are read with ``safetensors`` by the caller and handed over as a state dict.
``transformers`` is an optional dependency: ``pip install 'maxsim[hf]'``.
"""

from __future__ import annotations

import torch
from torch import nn

from maxsim.errors import MaxsimError

#: Model types whose absolute positions start at padding_idx + 1 (so two rows are never used).
_OFFSET_POSITION_TYPES = {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}
#: Backbone keys a ColBERT never uses; their absence or presence is not an error.
_UNUSED_PREFIXES = ("pooler.", "cls.", "lm_head.", "head.", "decoder.")


class BackboneError(MaxsimError, ValueError):
    """The config or the weights do not fit a ``transformers`` backbone; the message says which."""


class TransformersEncoder(nn.Module):
    """input_ids [B, L], attention_mask [B, L] -> last hidden state [B, L, H] of a ``transformers`` model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def _transformers():
    try:
        import transformers
    except ImportError:
        raise BackboneError(
            "this checkpoint needs the 'transformers' package for its backbone: pip install 'maxsim[hf]'"
        ) from None
    return transformers


def build(config: dict, dtype: torch.dtype) -> tuple[TransformersEncoder, int]:
    """An untrained ``transformers`` backbone for a config.json dict, and its usable positions."""
    transformers = _transformers()
    model_type = config.get("model_type")
    if not model_type:
        raise BackboneError("config.json has no 'model_type'")
    fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map", "architectures", "_name_or_path")}
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **fields)
    except ValueError as exc:
        raise BackboneError(f"model_type {model_type!r} is not a transformers architecture ({exc})") from None
    try:
        model = transformers.AutoModel.from_config(hf_config, attn_implementation="sdpa")
    except (ValueError, ImportError):
        model = transformers.AutoModel.from_config(hf_config)
    positions = int(getattr(hf_config, "max_position_embeddings", 512) or 512)
    if model_type in _OFFSET_POSITION_TYPES:
        positions -= int(getattr(hf_config, "pad_token_id", 1) or 1) + 1
    return TransformersEncoder(model.to(dtype).eval()), positions


def load_weights(encoder: TransformersEncoder, state: dict[str, torch.Tensor], notes: list[str]) -> None:
    """Fill ``encoder`` from a checkpoint state dict whose keys may carry a prefix (``bert.``, ``model.``)."""
    model = encoder.model
    expected = model.state_dict()
    prefixes = {"", f"{getattr(model, 'base_model_prefix', '')}.", "model.", "backbone."}

    def matched(prefix: str) -> int:
        return sum(1 for k in state if k.startswith(prefix) and k[len(prefix) :] in expected)

    prefix = max(sorted(prefixes), key=matched)
    if matched(prefix) == 0:
        sample = ", ".join(sorted(state)[:5])
        raise BackboneError(f"no checkpoint key matches the {type(model).__name__} parameters (keys start: {sample})")
    mapped, unused = {}, []
    for key, tensor in state.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name in expected:
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise BackboneError(
                    f"weight {key!r} has shape {tuple(tensor.shape)}, the config expects {tuple(expected[name].shape)}"
                )
            mapped[name] = tensor
        elif not (name or key).startswith(_UNUSED_PREFIXES):
            unused.append(key)
    missing = [k for k in expected if k not in mapped and not k.startswith(_UNUSED_PREFIXES)]
    # Non-persistent-in-spirit buffers (position ids) that some transformers versions still list.
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids", "inv_freq"))]
    if missing:
        raise BackboneError(f"the checkpoint lacks {len(missing)} backbone weights, e.g. {missing[:5]}")
    if unused:
        notes.append(f"{len(unused)} checkpoint tensors are not used by the backbone, e.g. {unused[:3]}")
    model.load_state_dict(mapped, strict=False)
