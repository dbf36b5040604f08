"""Checkpoint families and layouts: tiny random checkpoints built here with ``transformers``.

- a Stanford ColBERTv2-style BERT checkpoint (``bert.*`` + ``linear.weight``, ``artifact.metadata``
  with ``[unused0]``/``[unused1]`` markers, a WordPiece ``vocab.txt`` and no tokenizer.json);
- a PyLate export of a BERT model (``modules.json``, ``1_Dense/`` with a 96-row head, added
  ``[Q] ``/``[D] `` prefix tokens, its own lengths and skiplist);
- a PyLate export of a ModernBERT model;
- the Jina layouts with pieces removed or contradicting each other (the hub layout without the
  PyLate files, missing weights, wrong shapes, pickles only, unknown markers).

Each loaded model is checked against the ``transformers`` model it was built from: same hidden
states at every position, same normalised projections, the checkpoint's markers and lengths.
"""

from __future__ import annotations

import json
import shutil
import string
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import AddedToken  # noqa: E402
from tokenizers.implementations import BertWordPieceTokenizer  # noqa: E402

import maxsim  # noqa: E402
from maxsim.models.checkpoints import CheckpointError, CheckpointWarning  # noqa: E402

JINA = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "fixtures"
    / "jina-colbert-v2-parity"
    / "tiny-jina-colbert-v2"
)
WORDS = "the cat sat on mat dog paris is capital of france what where how big city river a an and".split()
VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *WORDS, "##s"]
PAD, UNUSED0, UNUSED1, UNK, CLS, SEP, MASK = range(7)
HIDDEN = 32


def _save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))


def _bert(seed: int) -> transformers.BertModel:
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=len(VOCAB) + 2,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_act="gelu",
    )
    model = transformers.BertModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorms so a skipped parameter shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _write_config(model, folder: Path, architectures: list[str]) -> None:
    cfg = model.config.to_dict()
    cfg["architectures"] = architectures
    (folder / "config.json").write_text(json.dumps(cfg, indent=1, default=str))


@pytest.fixture(scope="module")
def stanford_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stanford-bert")
    model = _bert(1)
    head = torch.randn(128, HIDDEN)
    state = {f"bert.{k}": v for k, v in model.state_dict().items()}
    state["linear.weight"] = head
    _save_state(state, folder / "model.safetensors")
    _write_config(model, folder, ["HF_ColBERT"])
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 64}))
    (folder / "artifact.metadata").write_text(
        json.dumps(
            {
                "query_token_id": "[unused0]",
                "doc_token_id": "[unused1]",
                "query_maxlen": 24,
                "doc_maxlen": 20,
                "attend_to_mask_tokens": False,
                "mask_punctuation": True,
                "dim": 128,
                "similarity": "cosine",
            }
        )
    )
    return folder, model, head


def _wordpiece_with_prefixes(folder: Path) -> None:
    tok = BertWordPieceTokenizer({w: i for i, w in enumerate(VOCAB)}, lowercase=True)
    tok.add_tokens([AddedToken("[Q] ", normalized=False), AddedToken("[D] ", normalized=False)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "pad_token": "[PAD]",
                "mask_token": {"content": "[MASK]"},
                "unk_token": "[UNK]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
            }
        )
    )


@pytest.fixture(scope="module")
def pylate_bert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pylate-bert")
    model = _bert(2)
    head = torch.randn(96, HIDDEN)
    _save_state(model.state_dict(), folder / "model.safetensors")
    _write_config(model, folder, ["BertModel"])
    _wordpiece_with_prefixes(folder)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (folder / "1_Dense").mkdir()
    _save_state({"linear.weight": head}, folder / "1_Dense" / "model.safetensors")
    (folder / "1_Dense" / "config.json").write_text(
        json.dumps(
            {
                "in_features": HIDDEN,
                "out_features": 96,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
                "use_residual": False,
            }
        )
    )
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[Q] ",
                "document_prefix": "[D] ",
                "query_length": 16,
                "document_length": 40,
                "attend_to_expansion_tokens": False,
                "do_query_expansion": True,
                "skiplist_words": list(string.punctuation),
            }
        )
    )
    return folder, model, head


def _reference(model, head, ids: np.ndarray, attention: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids)[None], attention_mask=torch.from_numpy(attention.astype(np.int64))[None]
        ).last_hidden_state[0]
        vec = torch.nn.functional.normalize(out @ head.T, dim=-1)
    return out.numpy(), vec.numpy()


def _check_against(m, model, head, texts, is_query, dim):
    items = m.tokenizer.queries(texts) if is_query else m.tokenizer.documents(texts)
    hidden = m.hidden_states(texts, is_query)
    vectors = m.encode_queries(texts, dim=dim) if is_query else m.encode_documents(texts, dim=dim)
    for item, h, v in zip(items, hidden, vectors):
        ref_h, ref_v = _reference(model, head, item.ids, item.attention)
        assert h.shape == ref_h.shape
        assert np.abs(h - ref_h).max() < 1e-4
        ref_v = ref_v[item.keep][:, :dim]
        ref_v = ref_v / np.linalg.norm(ref_v, axis=1, keepdims=True)
        assert v.shape == (int(item.keep.sum()), dim)
        assert np.abs(v - ref_v).max() < 1e-5


def test_stanford_bert_checkpoint(stanford_bert):
    folder, model, head = stanford_bert
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        m = maxsim.load(folder)
    assert m.info["layouts"] == ["stanford"] and m.info["backbone"] == "transformers:bert"
    s = m.tokenizer.settings
    assert (s.query_marker_ids, s.document_marker_ids) == ((UNUSED0,), (UNUSED1,))
    assert (s.query_length, s.document_length, s.attend_to_expansion) == (24, 20, False)
    assert (s.expansion_token_id, s.pad_token_id) == (MASK, PAD)
    assert m.max_positions == 64 and m.dims == (128, 96, 64) and not m.tokenizer.strip

    q = m.tokenizer.queries(["What is the capital of France?"])[0]
    assert q.ids[:2].tolist() == [CLS, UNUSED0] and len(q) == 24
    n_real = int((q.ids != MASK).sum())
    assert q.ids[n_real - 1] == SEP and (q.ids[n_real:] == MASK).all()
    assert q.attention[:n_real].all() and not q.attention[n_real:].any()  # attend_to_mask_tokens false

    d = m.tokenizer.documents(["The cat, sat on the mat!"])[0]
    assert m.tokenizer.tokens(d.ids) == [
        "[CLS]",
        "[unused1]",
        "the",
        "cat",
        ",",
        "sat",
        "on",
        "the",
        "mat",
        "!",
        "[SEP]",
    ]
    assert d.keep.tolist() == [True] * 4 + [False] + [True] * 4 + [False, True]
    long = m.tokenizer.documents([" ".join(WORDS * 3)])[0]
    assert len(long) == 20 and long.ids[-1] == SEP

    texts = ["What is the capital of France?", "where is the big river", "cat"]
    _check_against(m, model, head, texts, True, 128)
    docs = ["The cat, sat on the mat!", "Paris is the capital of France.", " ".join(WORDS * 3)]
    _check_against(m, model, head, docs, False, 128)
    _check_against(m, model, head, docs, False, 64)


def test_pylate_bert_export(pylate_bert):
    folder, model, head = pylate_bert
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        m = maxsim.load(folder)
    assert m.info["layouts"] == ["pylate"]
    s = m.tokenizer.settings
    q_id, d_id = len(VOCAB), len(VOCAB) + 1  # the added prefix tokens
    assert (s.query_marker_ids, s.document_marker_ids) == ((q_id,), (d_id,))
    assert (s.query_length, s.document_length, s.attend_to_expansion) == (16, 40, False)
    assert m.dims == (96, 64) and set(m.heads) == {96} and m.tokenizer.strip
    assert m.tokenizer.queries(["the cat"])[0].ids[:2].tolist() == [CLS, q_id]
    # sentence-transformers strips texts before tokenising
    a, b = m.encode_documents(["the cat sat", "   the cat sat  "])
    np.testing.assert_array_equal(a, b)
    _check_against(m, model, head, ["how big is paris?", "the dog"], True, 96)
    _check_against(m, model, head, ["The dog, and the cat; sat.", "a"], False, 96)
    _check_against(m, model, head, ["The dog, and the cat; sat."], False, 64)
    with pytest.raises(maxsim.models.colbert.InputError):
        m.encode_queries(["x"], dim=128)  # the head has 96 rows: 128 is not served


def test_pylate_modernbert_export(tmp_path):
    if not hasattr(transformers, "ModernBertModel"):
        pytest.skip("this transformers has no ModernBERT")
    torch.manual_seed(3)
    cfg = transformers.ModernBertConfig(
        vocab_size=len(VOCAB) + 2,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
        pad_token_id=PAD,
        cls_token_id=CLS,
        sep_token_id=SEP,
        bos_token_id=CLS,
        eos_token_id=SEP,
        global_attn_every_n_layers=2,
        local_attention=16,
    )
    model = transformers.ModernBertModel(cfg).eval()
    head = torch.randn(128, HIDDEN)
    _save_state(model.state_dict(), tmp_path / "model.safetensors")
    _write_config(model, tmp_path, ["ModernBertModel"])
    _wordpiece_with_prefixes(tmp_path)
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (tmp_path / "1_Dense").mkdir()
    _save_state({"linear.weight": head}, tmp_path / "1_Dense" / "model.safetensors")
    (tmp_path / "1_Dense" / "config.json").write_text(
        json.dumps({"in_features": HIDDEN, "out_features": 128, "bias": False})
    )
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "query_prefix": "[Q] ",
                "document_prefix": "[D] ",
                "query_length": 32,
                "document_length": 180,
                "attend_to_expansion_tokens": False,
                "skiplist_words": list(string.punctuation),
            }
        )
    )
    m = maxsim.load(tmp_path)
    assert m.info["backbone"] == "transformers:modernbert" and m.max_positions == 256
    assert m.document_length == 180 and m.dims == (128, 96, 64)
    _check_against(m, model, head, ["what is the capital of france?"], True, 128)
    _check_against(m, model, head, ["Paris is the capital, of France.", "the cat " * 30], False, 128)


# ------------------------------------------------------------------ Jina layouts, pieces missing
needs_jina = pytest.mark.skipif(not JINA.is_dir(), reason=f"{JINA} is not available")


def _jina_copy(tmp_path: Path, sub: str = ".", pylate_files: bool = True) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(JINA / sub, folder, ignore=shutil.ignore_patterns("variants"))
    if not pylate_files:
        for name in ("modules.json", "config_sentence_transformers.json", "sentence_bert_config.json"):
            (folder / name).unlink()
        shutil.rmtree(folder / "1_Dense")
    return folder


@needs_jina
@pytest.mark.parametrize("sub", [".", "variants/dim64"])
def test_jina_hub_layout_without_pylate_files(tmp_path, sub):
    """The hub repos (jinaai/jina-colbert-v2, -96, -64) have only the Stanford files."""
    folder = _jina_copy(tmp_path, sub, pylate_files=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        m = maxsim.load(folder)
    ref = maxsim.load(JINA / sub)
    assert m.info["layouts"] == ["stanford"] and m.dims == ref.dims
    assert m.tokenizer.settings == ref.tokenizer.settings and not m.tokenizer.strip
    texts = ["Paris is the capital and most populous city of France.", "OK"]
    dim = max(m.dims)
    for a, b in zip(m.encode_documents(texts, dim=dim), ref.encode_documents(texts, dim=dim)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@needs_jina
def test_contradictions_and_missing_settings_are_reported_once(tmp_path):
    folder = _jina_copy(tmp_path)
    meta = json.loads((folder / "artifact.metadata").read_text())
    meta.update(query_maxlen=24, dim=96)
    (folder / "artifact.metadata").write_text(json.dumps(meta))
    config = json.loads((folder / "config.json").read_text())
    del config["rotary_emb_base"]
    (folder / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = maxsim.load(folder)
    ours = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(ours) == 1
    text = str(ours[0].message)
    assert "query_maxlen=24" in text and "rotary_emb_base" in text and "dim=96" in text
    assert m.query_length == 32  # the PyLate file wins
    assert m.encoder.config.rotary_base == 10000.0  # the config class default
    assert len(m.info["notes"]) == 3


@needs_jina
def test_broken_jina_checkpoints_name_the_problem(tmp_path):
    folder = _jina_copy(tmp_path)
    state = load_file(str(folder / "model.safetensors"))

    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 256}))
    with pytest.raises(CheckpointError, match=r"layers\.0\.mlp\.fc1\.(weight|bias). has shape"):
        maxsim.load(folder)
    (folder / "config.json").write_text(json.dumps(config))

    del state["roberta.encoder.layers.1.norm2.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"lacks 1 backbone weights.*layers\.1\.norm2\.bias"):
        maxsim.load(folder)

    state["roberta.encoder.layers.1.norm2.bias"] = torch.zeros(64)
    state["roberta.encoder.layers.0.mixer.lora_A"] = torch.zeros(4, 64)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lora_A"):
        maxsim.load(folder)

    cst = json.loads((folder / "config_sentence_transformers.json").read_text())
    cst["query_prefix"] = "[NoSuchMarker]"
    (folder / "config_sentence_transformers.json").write_text(json.dumps(cst))
    del state["roberta.encoder.layers.0.mixer.lora_A"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"\[NoSuchMarker\]"):
        maxsim.load(folder)

    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickle"):
        maxsim.load(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        maxsim.load(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        maxsim.load(folder)
