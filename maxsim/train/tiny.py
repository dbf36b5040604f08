"""A tiny late-interaction model (word-level vocabulary, 2 layers) for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from torch import nn

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>", "[Q]", "[D]", ".")


def tiny_model(
    words: Iterable[str], hidden: int = 32, layers: int = 2, heads: int = 2, out_dim: int = 128, seed: int = 0
):
    """A randomly initialised :class:`maxsim.Model` over ``words`` (lower-cased, split on spaces)."""
    from maxsim.models.colbert import Model
    from maxsim.models.encoder import EncoderConfig, TransformerEncoder, init_weights
    from maxsim.tokens.late_interaction import LateInteractionTokenizer, MarkerSettings

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for w in sorted({w.lower() for w in words}):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    settings = MarkerSettings(
        query_marker_ids=(vocab["[Q]"],),
        document_marker_ids=(vocab["[D]"],),
        expansion_token_id=vocab["<mask>"],
        pad_token_id=vocab["<pad>"],
        query_length=8,
        document_length=48,
        skiplist_ids=frozenset({vocab["."]}),
    )
    config = EncoderConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        intermediate_size=2 * hidden,
        max_positions=64,
    )
    torch.manual_seed(seed)
    encoder = TransformerEncoder(config)
    init_weights(encoder, std=0.2, seed=seed)
    head = nn.Linear(hidden, out_dim)
    init_weights(head, std=0.2, seed=seed + 1)
    lt = LateInteractionTokenizer(tok, settings, pre_normalize=str.lower)
    return Model(encoder, {out_dim: head}, lt, name=f"tiny-{seed}", max_positions=64)
