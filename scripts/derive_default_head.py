"""Derive the default model's ColBERT head without training: a whitened PCA basis of token states.

Token states of the backbone over sample texts (queries with their mask expansion, and passages)
are centred and decomposed; the 128 directions of largest variance, in that order, become the
head's rows (so rows 0-95 and 0-63 are the best 96- and 64-wide Matryoshka prefixes), each
scaled by 1/sqrt(its variance) (whitening: without it a few dominant directions make every
token look alike and the mask-expansion tokens drown the query), and the centring becomes the
head's bias. Deterministic: same backbone file and texts, same head.

Texts: the project's demo corpus, plus a fixed sample of training pairs (queries and
passages) from ../shared/data: TyDi QA GoldP en/ko/sw train (Apache-2.0) and ARCD train (MIT).
They are read at derivation time only; the package ships only the resulting 128x384 head.

    python scripts/derive_default_head.py  # writes maxsim/resources/maxsim-e5-small-colbert/head.safetensors
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from maxsim.models.colbert import Model
from maxsim.models.default_model import _HEAD_RESOURCE, DEFAULT_MODEL_NAME, load_backbone, marker_settings
from maxsim.tokens.late_interaction import LateInteractionTokenizer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SAMPLE_SETS = ("tydiqa-goldp-en", "tydiqa-goldp-ko", "tydiqa-goldp-sw", "arcd-ar")
PASSAGES_PER_SET, QUERIES_PER_SET = 120, 300


def sample_texts(seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    passages, queries = [], []
    for name in SAMPLE_SETS:
        with open(SHARED / name / "train.jsonl", encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        rng.shuffle(rows)
        passages += [r["positive"] for r in rows[:PASSAGES_PER_SET]]
        queries += [r["query"] for r in rows[:QUERIES_PER_SET]]
    return passages, queries


def main(out: Path = _HEAD_RESOURCE, width: int = 128) -> None:
    encoder, tokenizer, normalizer, source = load_backbone()
    hidden = encoder.config.hidden_size
    identity = nn.Linear(hidden, hidden, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(hidden))
    tok = LateInteractionTokenizer(tokenizer, marker_settings(tokenizer, source), pre_normalize=normalizer)
    model = Model(encoder, {hidden: identity}, tok, name="pca-probe", max_positions=encoder.config.max_positions)

    corpus = json.loads((ROOT / "maxsim" / "resources" / "demo_corpus.json").read_text())
    sampled_passages, sampled_queries = sample_texts()
    passages = [p["text"] for p in corpus["passages"]] + sampled_passages
    queries = [q["text"] for q in corpus["queries"]] + sampled_queries
    states = [model._run(tok.documents(passages), head=identity, show_progress=True)]
    states.append(model._run(tok.queries(queries), head=identity, show_progress=True))
    x = np.concatenate([np.concatenate(s) for s in states]).astype(np.float64)

    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:width]
    basis = vectors[:, order].T  # [width, hidden]
    signs = np.sign(basis[np.arange(width), np.abs(basis).argmax(axis=1)])
    basis *= signs[:, None]  # fix each row's sign: largest coordinate positive
    basis /= np.sqrt(values[order])[:, None]  # whiten
    weight = torch.from_numpy(basis.astype(np.float32))
    bias = -(weight.double() @ torch.from_numpy(mean)).float()
    explained = float(values[order].sum() / values.sum())
    meta = {
        "model": DEFAULT_MODEL_NAME,
        "method": "whitened-pca",
        "tokens": str(len(x)),
        "texts": "maxsim demo corpus; TyDi QA GoldP en/ko/sw train (Apache-2.0) and ARCD train (MIT) samples, "
        f"{PASSAGES_PER_SET} passages and {QUERIES_PER_SET} queries each, seed 0",
        "explained_variance": f"{explained:.4f}",
        "explained_variance_96": f"{values[order[:96]].sum() / values.sum():.4f}",
        "explained_variance_64": f"{values[order[:64]].sum() / values.sum():.4f}",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"weight": weight.contiguous(), "bias": bias.contiguous()}, str(out), metadata=meta)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
