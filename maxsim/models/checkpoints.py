"""ColBERT checkpoint folders: detect the layout from the files and build a Model.

Layouts (several may share one folder; see ``docs/jina-colbert-v2.md``):

- **Stanford / hub**: ``config.json``, ``model.safetensors`` holding the backbone under a
  prefix (``roberta.``, ``bert.``) plus the head ``linear.weight``, and ``artifact.metadata``
  (Stanford ``ColBERTConfig`` JSON: ``query_token_id``, ``doc_token_id``, ``query_maxlen``,
  ``doc_maxlen``, ``attend_to_mask_tokens``, ``mask_punctuation``, ``dim``).
- **PyLate / sentence-transformers**: ``modules.json`` (Transformer, then Dense modules such as
  ``1_Dense/``), unprefixed backbone keys, ``config_sentence_transformers.json``
  (``query_prefix``, ``document_prefix``, ``query_length``, ``document_length``,
  ``attend_to_expansion_tokens``, ``do_query_expansion``, ``skiplist_words``).

Backbones: Jina's XLM-RoBERTa with rotary positions runs on the project's own encoder
(:mod:`maxsim.models.jina`); any other architecture (BERT, ModernBERT, XLM-RoBERTa, ...) is
built by ``transformers`` from config.json (:mod:`maxsim.models.hf_backbones`), never with
remote code. Weights are read with ``safetensors`` only and cast to the requested dtype.

Settings come from the files; where the PyLate and Stanford files disagree the PyLate ones win
(they are what the weights were last exported with). Every missing or contradictory setting is
collected and reported in one ``CheckpointWarning``, and kept in ``model.info["notes"]``.
"""

from __future__ import annotations

import json
import string
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer
from torch import nn

from maxsim.errors import MaxsimError
from maxsim.models.colbert import Model
from maxsim.models.encoder import TransformerEncoder
from maxsim.tokens.late_interaction import LateInteractionTokenizer, MarkerSettings

STANFORD_METADATA = "artifact.metadata"
PYLATE_CONFIG = "config_sentence_transformers.json"
DEFAULT_QUERY_LENGTH = 32
#: Documents are never cut shorter than the model allows unless the files say so.
MAX_DEFAULT_DOCUMENT_LENGTH = 8192
_DENSE_TYPES = ("pylate.models.Dense.Dense", "sentence_transformers.models.Dense")
_IDENTITY = ("torch.nn.modules.linear.Identity", "Identity", None)
_HEAD_KEYS = ("linear.weight", "colbert_linear.weight")


class CheckpointError(MaxsimError, RuntimeError):
    """A checkpoint folder is incomplete, contradictory or of an unsupported layout."""


class CheckpointWarning(UserWarning):
    """Settings a checkpoint lacks or states twice with different values (defaults were used)."""


@dataclass
class CheckpointFiles:
    """What a checkpoint folder holds, read once."""

    root: Path
    config: dict[str, Any]
    weight_files: list[Path]
    stanford: dict[str, Any] | None = None  # artifact.metadata
    pylate: dict[str, Any] | None = None  # config_sentence_transformers.json
    modules: list[dict[str, Any]] | None = None  # modules.json
    tokenizer_config: dict[str, Any] = field(default_factory=dict)
    special_tokens: dict[str, Any] = field(default_factory=dict)

    @property
    def layouts(self) -> list[str]:
        out = []
        if self.stanford is not None:
            out.append("stanford")
        if self.modules is not None:
            out.append("pylate")
        return out


# ---------------------------------------------------------------------------------------- files
def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({exc})") from None


def read_files(path: Path) -> CheckpointFiles:
    """Read the small files of a checkpoint folder and locate its weights; no tensors yet."""
    root = Path(path)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a folder")
    config_path = root / "config.json"
    if not config_path.is_file():
        names = sorted(p.name for p in root.iterdir())
        raise CheckpointError(f"{root}: no config.json, so not a transformers/ColBERT checkpoint (files: {names})")
    files = CheckpointFiles(root, _read_json(config_path, "config.json"), _weight_files(root))
    if (root / STANFORD_METADATA).is_file():
        files.stanford = _read_json(root / STANFORD_METADATA, STANFORD_METADATA)
    if (root / PYLATE_CONFIG).is_file():
        files.pylate = _read_json(root / PYLATE_CONFIG, PYLATE_CONFIG)
    if (root / "modules.json").is_file():
        files.modules = _read_json(root / "modules.json", "modules.json")
    if (root / "tokenizer_config.json").is_file():
        files.tokenizer_config = _read_json(root / "tokenizer_config.json", "tokenizer_config.json")
    if (root / "special_tokens_map.json").is_file():
        files.special_tokens = _read_json(root / "special_tokens_map.json", "special_tokens_map.json")
    return files


def _weight_files(root: Path) -> list[Path]:
    index = root / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index, index.name).get("weight_map", {}).values()))
        missing = [s for s in shards if not (root / s).is_file()]
        if missing:
            raise CheckpointError(f"{root}: shards listed in {index.name} are missing: {missing}")
        return [root / s for s in shards]
    if (root / "model.safetensors").is_file():
        return [root / "model.safetensors"]
    pickles = [p.name for p in root.glob("*.bin")] + [p.name for p in root.glob("*.pt")]
    if pickles:
        raise CheckpointError(
            f"{root}: weights only in pickle files {pickles}; maxsim reads safetensors only "
            "(convert with safetensors.torch.save_file, or download the repo's model.safetensors)"
        )
    raise CheckpointError(f"{root}: no model.safetensors (or model.safetensors.index.json)")


def read_tensors(paths: list[Path], dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """All tensors of some safetensors files; floating tensors cast to ``dtype`` (bf16 files included)."""
    out: dict[str, torch.Tensor] = {}
    for p in paths:
        try:
            with safe_open(str(p), framework="pt") as fh:
                for key in fh.keys():
                    t = fh.get_tensor(key)
                    if dtype is not None and t.is_floating_point():
                        t = t.to(dtype)
                    out[key] = t
        except SafetensorError as exc:
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
    return out


# ---------------------------------------------------------------------------------------- heads
def _linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Linear:
    if weight.ndim != 2:
        raise CheckpointError(f"projection weight must be 2-D, got shape {tuple(weight.shape)}")
    head = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        head.weight.copy_(weight.float())
        if bias is not None:
            head.bias.copy_(bias.float())
    return head


def _dense_modules(files: CheckpointFiles) -> list[nn.Linear]:
    """The Dense modules listed in modules.json, in order (each an identity-activation Linear)."""
    heads = []
    for module in files.modules or []:
        mtype = str(module.get("type", ""))
        if mtype.endswith(("Transformer", "models.Transformer")) or not module.get("path"):
            continue
        folder = files.root / module["path"]
        if not mtype.startswith(_DENSE_TYPES) and not mtype.endswith("Dense"):
            if mtype.endswith(("Normalize", "Pooling")):
                continue
            raise CheckpointError(f"{files.root}/modules.json: module {mtype!r} at {module['path']!r} is not supported")
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{folder}: Dense module without config.json")
        cfg = _read_json(cfg_path, f"{module['path']}/config.json")
        if cfg.get("activation_function") not in _IDENTITY:
            raise CheckpointError(
                f"{cfg_path}: activation {cfg.get('activation_function')!r} is not supported (ColBERT heads are linear)"
            )
        if cfg.get("use_residual"):
            raise CheckpointError(f"{cfg_path}: use_residual=true is not supported")
        weights = [folder / "model.safetensors"]
        if not weights[0].is_file():
            raise CheckpointError(f"{folder}: no model.safetensors (pickled pytorch_model.bin is not read)")
        tensors = read_tensors(weights)
        weight = tensors.get("linear.weight")
        if weight is None:
            raise CheckpointError(f"{weights[0]}: no 'linear.weight' (keys: {sorted(tensors)})")
        expected = (cfg.get("out_features"), cfg.get("in_features"))
        if None not in expected and tuple(weight.shape) != expected:
            raise CheckpointError(
                f"{weights[0]}: linear.weight has shape {tuple(weight.shape)}, its config.json says {expected}"
            )
        bias = tensors.get("linear.bias") if cfg.get("bias", False) else None
        if cfg.get("bias", False) and bias is None:
            raise CheckpointError(f"{weights[0]}: config.json says bias=true but there is no 'linear.bias'")
        heads.append(_linear(weight, bias))
    return heads


def _compose(layers: list[nn.Linear]) -> nn.Linear:
    """Several linear maps in a row (identity activations) as one."""
    weight = layers[0].weight.detach().double()
    bias = layers[0].bias.detach().double() if layers[0].bias is not None else None
    for layer in layers[1:]:
        if layer.in_features != weight.shape[0]:
            raise CheckpointError(
                f"Dense modules do not chain: {weight.shape[0]} outputs feed {layer.in_features} inputs"
            )
        w = layer.weight.detach().double()
        bias = w @ bias if bias is not None else None
        if layer.bias is not None:
            bias = layer.bias.detach().double() + (bias if bias is not None else 0)
        weight = w @ weight
    return _linear(weight.float(), bias.float() if bias is not None else None)


def resolve_head(files: CheckpointFiles, state: dict[str, torch.Tensor], notes: list[str]) -> nn.Linear:
    """The checkpoint's projection head: PyLate's Dense modules, else Stanford's ``linear.weight``."""
    stanford_head = None
    for key in _HEAD_KEYS:
        if key in state:
            stanford_head = _linear(state[key], state.get(key.replace("weight", "bias")))
            break
    dense = _dense_modules(files) if files.modules is not None else []
    pylate_head = _compose(dense) if dense else None
    if pylate_head is not None and stanford_head is not None:
        same = pylate_head.weight.shape == stanford_head.weight.shape and torch.allclose(
            pylate_head.weight, stanford_head.weight, atol=1e-6
        )
        if not same:
            notes.append(
                "the PyLate head (1_Dense) and the Stanford head (linear.weight in model.safetensors) differ; "
                "using the PyLate head"
            )
    head = pylate_head or stanford_head
    if head is None:
        raise CheckpointError(
            f"{files.root}: no projection head: neither 'linear.weight' in the weights nor a Dense module in modules.json"
        )
    return head


# ---------------------------------------------------------------------------------------- tokenizer
def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(files: CheckpointFiles) -> Tokenizer:
    root = files.root
    if (root / "tokenizer.json").is_file():
        try:
            return Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as exc:  # the Rust error names no file; we do
            raise CheckpointError(f"{root}/tokenizer.json could not be read: {exc}") from None
    if (root / "vocab.txt").is_file():  # BERT WordPiece checkpoints without tokenizer.json
        from tokenizers.implementations import BertWordPieceTokenizer

        lower = bool(files.tokenizer_config.get("do_lower_case", True))
        return BertWordPieceTokenizer(str(root / "vocab.txt"), lowercase=lower)._tokenizer
    raise CheckpointError(f"{root}: no tokenizer.json (or vocab.txt for WordPiece); download the tokenizer files too")


def _special_id(tok: Tokenizer, files: CheckpointFiles, name: str, fallbacks: tuple[str, ...]) -> int | None:
    for source in (files.special_tokens, files.tokenizer_config):
        text = _token_text(source.get(name))
        found = tok.token_to_id(text) if text is not None else None
        if found is not None:
            return int(found)
    for text in fallbacks:
        found = tok.token_to_id(text)
        if found is not None:
            return int(found)
    return None


def marker_id(tok: Tokenizer, marker: str, what: str, root: Path) -> int:
    """The id of a marker token (``[QueryMarker]``, ``[unused0]``, ``[Q] ``)."""
    for text in (marker, marker.strip()):
        idx = tok.token_to_id(text)
        if idx is not None:
            return int(idx)
    ids = tok.encode(marker.strip(), add_special_tokens=False).ids
    if len(ids) == 1:
        return int(ids[0])
    raise CheckpointError(
        f"{root}: the {what} {marker!r} is not a token of the tokenizer (it would need a new, untrained "
        "embedding row); check query_prefix/document_prefix or query_token_id/doc_token_id"
    )


def pylate_skiplist(tok: Tokenizer, words: list[str], unk_id: int | None) -> frozenset[int]:
    """PyLate's rule: each skiplist word as a whole token; a word missing from the vocabulary
    maps to the unknown token (so then every ``<unk>`` row is dropped, as PyLate does)."""
    out = set()
    for w in words:
        idx = tok.token_to_id(w)
        if idx is None:
            idx = unk_id
        if idx is not None:
            out.add(int(idx))
    return frozenset(out)


def stanford_skiplist(tok: Tokenizer) -> frozenset[int]:
    """Stanford ColBERT's rule: the first id of each punctuation character's encoding.

    For WordPiece this is the punctuation token itself; for SentencePiece it is often the bare
    ``▁`` piece. Provided for callers who need colbert-ai's exact rows.
    """
    out = set()
    for ch in string.punctuation:
        ids = tok.encode(ch, add_special_tokens=False).ids
        if ids:
            out.add(int(ids[0]))
    return frozenset(out)


# ---------------------------------------------------------------------------------------- settings
@dataclass
class _Setting:
    value: Any
    source: str


def _pick(
    name: str,
    pylate: tuple[dict | None, str],
    stanford: tuple[dict | None, str],
    default: Any,
    notes: list[str],
    same=lambda a, b: a == b,
) -> _Setting:
    """A setting from the PyLate file, else the Stanford file, else the default (reported)."""
    p_cfg, p_key = pylate
    s_cfg, s_key = stanford
    p = p_cfg.get(p_key) if p_cfg is not None and p_key else None
    s = s_cfg.get(s_key) if s_cfg is not None and s_key else None
    if p is not None and s is not None and not same(p, s):
        notes.append(
            f"{name}: {PYLATE_CONFIG} says {p_key}={p!r} but {STANFORD_METADATA} says {s_key}={s!r}; using {p!r}"
        )
    if p is not None:
        return _Setting(p, PYLATE_CONFIG)
    if s is not None:
        return _Setting(s, STANFORD_METADATA)
    if p_cfg is not None or s_cfg is not None:
        where = " or ".join(
            f"{k} in {f}"
            for c, k, f in ((p_cfg, p_key, PYLATE_CONFIG), (s_cfg, s_key, STANFORD_METADATA))
            if c is not None and k
        )
        notes.append(f"{name}: not set ({where}); using {default!r}")
    return _Setting(default, "default")


def resolve_settings(
    files: CheckpointFiles,
    tok: Tokenizer,
    head_dim: int,
    max_positions: int,
    notes: list[str],
    *,
    query_length: int | None = None,
    document_length: int | None = None,
) -> tuple[MarkerSettings, bool, dict[str, Any]]:
    """MarkerSettings, whether texts are stripped first, and a record of where each setting came from."""
    root = files.root
    p, s = files.pylate, files.stanford
    if p is None and s is None:
        notes.append(f"neither {PYLATE_CONFIG} nor {STANFORD_METADATA}: ColBERT settings are guessed")
    vocab_has = lambda t: tok.token_to_id(t) is not None  # noqa: E731
    default_q = next(
        (m for m in ("[QueryMarker]", "[unused0]", "[Q] ") if vocab_has(m) or vocab_has(m.strip())), "[unused0]"
    )
    default_d = {"[QueryMarker]": "[DocumentMarker]", "[unused0]": "[unused1]", "[Q] ": "[D] "}[default_q]
    is_jina = default_q == "[QueryMarker]"
    q_marker = _pick(
        "query marker",
        (p, "query_prefix"),
        (s, "query_token_id"),
        default_q,
        notes,
        same=lambda a, b: a.strip() == b.strip(),
    )
    d_marker = _pick(
        "document marker",
        (p, "document_prefix"),
        (s, "doc_token_id"),
        default_d,
        notes,
        same=lambda a, b: a.strip() == b.strip(),
    )
    q_len = _pick("query length", (p, "query_length"), (s, "query_maxlen"), DEFAULT_QUERY_LENGTH, notes)
    d_default = min(max_positions, MAX_DEFAULT_DOCUMENT_LENGTH)
    d_len = _pick("document length", (p, "document_length"), (s, "doc_maxlen"), d_default, notes)
    # Jina-ColBERT-v2's own recipe attends to the expansion tokens; PyLate's and Stanford's defaults do not.
    attend = _pick(
        "attend to query expansion tokens",
        (p, "attend_to_expansion_tokens"),
        (s, "attend_to_mask_tokens"),
        is_jina,
        notes,
    )
    unk = _special_id(tok, files, "unk_token", ("<unk>", "[UNK]"))
    pad = _special_id(tok, files, "pad_token", ("<pad>", "[PAD]"))
    mask = _special_id(tok, files, "mask_token", ("<mask>", "[MASK]"))
    if pad is None:
        pad = files.config.get("pad_token_id")
        if pad is None:
            raise CheckpointError(f"{root}: no pad token in the tokenizer files or config.json")
    if mask is None:
        raise CheckpointError(f"{root}: no mask token (needed to expand queries) in the tokenizer files")
    if p is not None and p.get("do_query_expansion") is False:
        notes.append("do_query_expansion=false is not supported; queries are expanded with the mask token")
    # Punctuation rows of documents.
    if p is not None and p.get("skiplist_words") is not None:
        skip_words = list(p["skiplist_words"])
        skip_source = PYLATE_CONFIG
    elif s is not None and s.get("mask_punctuation") is False:
        skip_words, skip_source = [], STANFORD_METADATA
    else:
        skip_words = list(string.punctuation)
        skip_source = "default" if s is None or "mask_punctuation" not in s else STANFORD_METADATA
    skiplist = pylate_skiplist(tok, skip_words, unk)
    # The head's rows decide the dimension; a 'dim' that disagrees is reported.
    if s is not None and s.get("dim") is not None and int(s["dim"]) != head_dim:
        notes.append(f"{STANFORD_METADATA} says dim={s['dim']} but the head has {head_dim} rows; serving {head_dim}")
    # Caller overrides beat the files; the model's positions cap nothing here (long documents are
    # windowed by the Model when document_length exceeds them).
    ql = int(query_length if query_length is not None else q_len.value)
    dl = int(document_length if document_length is not None else d_len.value)
    settings = MarkerSettings(
        query_marker_ids=(marker_id(tok, str(q_marker.value), "query marker", root),),
        document_marker_ids=(marker_id(tok, str(d_marker.value), "document marker", root),),
        expansion_token_id=int(mask),
        pad_token_id=int(pad),
        query_length=ql,
        document_length=dl,
        attend_to_expansion=bool(attend.value),
        skiplist_ids=skiplist,
    )
    strip = p is not None  # sentence-transformers strips every text; Stanford ColBERT does not
    sources = {
        "query_marker": [q_marker.value, q_marker.source],
        "document_marker": [d_marker.value, d_marker.source],
        "query_length": [ql, "caller" if query_length is not None else q_len.source],
        "document_length": [dl, "caller" if document_length is not None else d_len.source],
        "attend_to_expansion": [bool(attend.value), attend.source],
        "skiplist": [len(skiplist), skip_source],
    }
    return settings, strip, sources


# ---------------------------------------------------------------------------------------- model
def _model_name(root: Path, config: dict) -> str:
    """``owner/name`` for a hub cache snapshot, else the folder's name."""
    parts = root.resolve().parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            return part[len("models--") :].replace("--", "/")
    return root.name or str(config.get("_name_or_path") or root)


def load_checkpoint(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    num_threads: int | None = None,
    query_length: int | None = None,
    document_length: int | None = None,
) -> Model:
    """Build a Model from a checkpoint folder. ``query_length``/``document_length`` override the files."""
    from maxsim.models import hf_backbones, jina

    files = read_files(Path(path))
    notes: list[str] = []
    state = read_tensors(files.weight_files, dtype)
    head = resolve_head(files, state, notes)
    backbone_keys = {k: v for k, v in state.items() if k not in _HEAD_KEYS and k != "linear.bias"}
    encoder: nn.Module
    if jina.is_jina_state(backbone_keys):
        own = _jina_encoder(files, backbone_keys, notes)
        encoder, max_positions, family = own, own.config.max_positions, "jina-xlm-roberta-rotary"
    else:
        try:
            hf_encoder, max_positions = hf_backbones.build(files.config, dtype)
            hf_backbones.load_weights(hf_encoder, backbone_keys, notes)
            encoder = hf_encoder
        except hf_backbones.BackboneError as exc:
            raise CheckpointError(f"{files.root}: {exc}") from None
        family = f"transformers:{files.config.get('model_type')}"
    tok_limit = files.tokenizer_config.get("model_max_length")
    if isinstance(tok_limit, int) and 0 < tok_limit < max_positions:
        max_positions = tok_limit
    hidden = head.in_features
    tok = load_tokenizer(files)
    settings, strip, sources = resolve_settings(
        files, tok, head.out_features, max_positions, notes, query_length=query_length, document_length=document_length
    )
    if settings.query_length > max_positions:
        raise CheckpointError(
            f"{files.root}: query_length {settings.query_length} exceeds the model's {max_positions} positions"
        )
    if hidden != _hidden_size(encoder, files.config):
        raise CheckpointError(
            f"{files.root}: the head takes {hidden} inputs but the backbone's hidden size is {_hidden_size(encoder, files.config)}"
        )
    name = _model_name(files.root, files.config)
    if notes:
        warnings.warn(
            f"checkpoint {name} ({files.root}):\n  - " + "\n  - ".join(notes), CheckpointWarning, stacklevel=3
        )
    info = {
        "path": str(files.root),
        "layouts": files.layouts,
        "backbone": family,
        "head": {"rows": head.out_features, "inputs": head.in_features},
        "settings": sources,
        "notes": notes,
    }
    return Model(
        encoder,
        {head.out_features: head},
        LateInteractionTokenizer(tok, settings, strip=strip),
        name=name,
        max_positions=max_positions,
        dtype=dtype,
        num_threads=num_threads,
        info=info,
    )


def _hidden_size(encoder: nn.Module, config: dict) -> int:
    cfg = getattr(encoder, "config", None)
    if cfg is not None and hasattr(cfg, "hidden_size"):
        return int(cfg.hidden_size)
    return int(config.get("hidden_size", config.get("d_model", -1)))


def _jina_encoder(files: CheckpointFiles, state: dict[str, torch.Tensor], notes: list[str]) -> TransformerEncoder:
    from maxsim.models import jina

    try:
        config = jina.encoder_config(files.config, notes)
        prefix = jina.backbone_prefix(state)
    except jina.JinaConfigError as exc:
        raise CheckpointError(f"{files.root}/config.json: {exc}") from None
    mapped: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, tensor in state.items():
        try:
            name = jina.encoder_key(key, prefix)
        except KeyError:
            unknown.append(key)
            continue
        if name is not None:
            mapped[name], source[name] = tensor, key
    if unknown:
        raise CheckpointError(
            f"{files.root}: {len(unknown)} weights have no place in Jina's XLM-RoBERTa, e.g. {unknown[:4]} "
            "(LoRA or a different architecture?)"
        )
    with torch.device("meta"):
        encoder = TransformerEncoder(config)
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(mapped))
    if missing:
        raise CheckpointError(f"{files.root}: the checkpoint lacks {len(missing)} backbone weights, e.g. {missing[:4]}")
    for name, tensor in mapped.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{files.root}: weight {source[name]!r} has shape {tuple(tensor.shape)}, config.json implies "
                f"{tuple(expected[name].shape)}"
            )
    encoder.load_state_dict(mapped, strict=True, assign=True)
    return encoder.eval()
