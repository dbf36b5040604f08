"""A single-codepoint normaliser, applied before a SentencePiece tokenizer.

The multilingual-e5-small file ships its normalisation as a table of codepoint -> replacement
(NFKC, controls removed, every whitespace to a space). ``str.translate`` applies it in C.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_SPACES = re.compile(" {2,}")


class CharMapNormalizer:
    def __init__(self, table: dict[int, str]) -> None:
        self.table = dict(table)
        self._translate = {cp: (out if out else None) for cp, out in self.table.items()}

    def __call__(self, text: str) -> str:
        return _SPACES.sub(" ", text.translate(self._translate))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({str(k): v for k, v in sorted(self.table.items())}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> CharMapNormalizer:
        raw = json.loads(Path(path).read_text())
        return cls({int(k): v for k, v in raw.items()})
