"""Validate and clean user text before it reaches a tokenizer.

Tokenizers written in Rust reject strings that are not valid Unicode (Python allows unpaired
surrogates), and control characters carry no meaning for retrieval. We repair what can be
repaired and reject what cannot, naming the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from maxsim.errors import MaxsimError

# C0/C1 controls except tab, newline and carriage return (which are whitespace to the models).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(MaxsimError, ValueError):
    """Bad input from the caller, with a message that names the problem."""


def clean_text(text: str) -> str:
    """Replace unpaired surrogates with U+FFFD and drop control characters."""
    if _SURROGATE.search(text):
        # A valid pair can only exist in a str decoded with 'surrogatepass'; fold it first.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        text = _SURROGATE.sub("\ufffd", text)
    return _CONTROL.sub("", text)


def validate_texts(texts: str | Sequence[str] | Iterable[str], what: str = "texts") -> list[str]:
    """Return a cleaned list of strings, or raise InputError naming the bad item.

    A single string is accepted as a list of one. Empty strings are allowed (they encode to
    the special and marker tokens only); an empty list is allowed and gives no output.
    """
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray)):
        raise InputError(f"{what} must be str or a list of str, not bytes; decode it first")
    try:
        items = list(texts)
    except TypeError:
        raise InputError(f"{what} must be str or a list of str, not {type(texts).__name__}") from None
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(f"{what}[{i}] must be a str, not {type(item).__name__}")
        out.append(clean_text(item))
    return out
