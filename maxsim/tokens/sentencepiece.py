"""Build a `tokenizers` Unigram tokenizer from SentencePiece pieces and scores (fairseq XLM-R order)."""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

SPACE_MARKER = "\u2581"


def build_unigram_tokenizer(
    pieces: Sequence[str], scores: Sequence[float], *, bos: int, eos: int, pad: int, unk: int, mask: int
) -> Tokenizer:
    """A tokenizer that splits on spaces (marked U+2581, one prepended) and segments each word
    with Viterbi over the unigram scores, wrapping the result in ``<s> ... </s>``."""
    vocab = [(piece, float(score)) for piece, score in zip(pieces, scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=SPACE_MARKER, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=SPACE_MARKER, prepend_scheme="always", split=True)
    specials = [pieces[i] for i in (bos, pad, eos, unk)]
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in specials])
    tok.add_special_tokens([AddedToken(pieces[mask], special=True, normalized=False, lstrip=True)])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{pieces[bos]} $A {pieces[eos]}",
        pair=f"{pieces[bos]} $A {pieces[eos]} {pieces[eos]} $B {pieces[eos]}",
        special_tokens=[(pieces[bos], bos), (pieces[eos], eos)],
    )
    return tok
