"""Jina's XLM-RoBERTa with rotary positions (the Jina-ColBERT-v2 backbone) on ``TransformerEncoder``.

The facts used here (see ``docs/jina-colbert-v2.md``): no absolute positions, an embedding
LayerNorm ``emb_ln``, post-norm blocks with a fused ``Wqkv``, half-split rotary positions on q
and k with the base from ``rotary_emb_base``, exact GELU, padded keys scored -10000. The
checkpoint keys are those of Jina's reference code, with a ``roberta.`` prefix in the hub /
Stanford layout and without it in a PyLate export; this module maps them onto the project's
encoder, whose parameter names are the same minus the ``encoder.``/``mixer.``/``mlp.`` levels.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from maxsim.errors import MaxsimError
from maxsim.models.encoder import EncoderConfig

#: Default of Jina's config class when ``rotary_emb_base`` is absent.
JINA_DEFAULT_ROTARY_BASE = 10000.0

_TANH_GELUS = {"gelu_new", "gelu_fast", "gelu_pytorch_tanh"}
_LAYER_KEY = re.compile(
    r"^encoder\.layers\.(\d+)\.(?:mixer\.|mlp\.)?(Wqkv|out_proj|fc1|fc2|norm1|norm2)\.(weight|bias)$"
)
_DIRECT = {
    "embeddings.word_embeddings.weight": "word_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "emb_ln.weight": "emb_ln.weight",
    "emb_ln.bias": "emb_ln.bias",
}
#: Keys that exist in real checkpoints and that ColBERT never uses.
_IGNORED_PREFIXES = ("pooler.",)


class UnknownWeightError(MaxsimError, KeyError):
    """A checkpoint weight that has no place in the encoder."""


class JinaConfigError(MaxsimError, ValueError):
    """config.json describes something this backbone does not implement; the message says what."""


def is_jina_state(keys: Iterable[str]) -> bool:
    """True for the key set of Jina's XLM-RoBERTa (``...encoder.layers.N.mixer.Wqkv.weight``)."""
    return any(k.endswith("encoder.layers.0.mixer.Wqkv.weight") for k in keys)


def backbone_prefix(keys: Iterable[str]) -> str:
    """``"roberta."`` for the hub / Stanford layout, ``""`` for a PyLate export."""
    for k in keys:
        if k.endswith("encoder.layers.0.mixer.Wqkv.weight"):
            return k[: -len("encoder.layers.0.mixer.Wqkv.weight")]
    raise JinaConfigError("no 'encoder.layers.0.mixer.Wqkv.weight' key: not a Jina XLM-RoBERTa checkpoint")


def encoder_config(config: dict, notes: list[str]) -> EncoderConfig:
    """``EncoderConfig`` from a Jina XLM-RoBERTa ``config.json``; settings it cannot honour raise."""

    def need(key: str):
        if key not in config:
            raise JinaConfigError(f"config.json has no {key!r}")
        return config[key]

    hidden = int(need("hidden_size"))
    heads = int(need("num_attention_heads"))
    position = config.get("position_embedding_type", "absolute")
    if position != "rotary":
        # Jina's absolute variant counts positions from padding_idx + 1 like XLM-R; not needed
        # by any published ColBERT checkpoint, so it is refused rather than guessed.
        raise JinaConfigError(
            f"position_embedding_type {position!r}: only 'rotary' is supported for Jina's XLM-RoBERTa"
        )
    rotary_dim = config.get("rotary_emb_dim")
    if rotary_dim not in (None, 0, hidden // heads):
        raise JinaConfigError(
            f"rotary_emb_dim {rotary_dim} (partial rotary) is not supported; head_dim is {hidden // heads}"
        )
    if config.get("rotary_emb_interleaved"):
        raise JinaConfigError("rotary_emb_interleaved=true (GPT-J rotary) is not supported")
    if config.get("rotary_emb_scale_base") is not None:
        raise JinaConfigError("rotary_emb_scale_base is set (xPos scaling), which is not supported")
    if "rotary_emb_base" in config:
        base = float(config["rotary_emb_base"])
    else:
        base = JINA_DEFAULT_ROTARY_BASE
        notes.append(f"config.json has no 'rotary_emb_base'; using the config class default {base:g}")
    act = config.get("hidden_act", "gelu")
    activation: Literal["gelu", "gelu_tanh"]
    if act == "gelu":
        activation = "gelu"
    elif act in _TANH_GELUS:
        activation = "gelu_tanh"
    else:
        raise JinaConfigError(f"hidden_act {act!r} is not supported (gelu, gelu_new, gelu_fast, gelu_pytorch_tanh)")
    if config.get("prenorm"):
        raise JinaConfigError("prenorm=true is not supported (Jina-ColBERT-v2 is post-norm)")
    if config.get("lora_adaptations") and config.get("load_trained_adapters"):
        notes.append("LoRA adapters are declared but not applied (ColBERT uses the base weights)")
    return EncoderConfig(
        vocab_size=int(need("vocab_size")),
        hidden_size=hidden,
        num_layers=int(need("num_hidden_layers")),
        num_heads=heads,
        intermediate_size=int(need("intermediate_size")),
        max_positions=int(need("max_position_embeddings")),
        type_vocab_size=int(config.get("type_vocab_size", 1)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
        position_embedding="rotary",
        rotary_base=base,
        activation=activation,
    )


def encoder_key(key: str, prefix: str) -> str | None:
    """Checkpoint key -> ``TransformerEncoder`` parameter name; None for keys ColBERT ignores.

    Raises UnknownWeightError (a KeyError) for a key of the backbone that has no place in the encoder.
    """
    if not key.startswith(prefix):
        raise UnknownWeightError(key)
    rest = key[len(prefix) :]
    if rest.startswith(_IGNORED_PREFIXES):
        return None
    if rest in _DIRECT:
        return _DIRECT[rest]
    m = _LAYER_KEY.match(rest)
    if m:
        return f"layers.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    raise UnknownWeightError(key)
