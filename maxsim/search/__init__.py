"""Search over a compressed late-interaction index."""

from __future__ import annotations

from maxsim.search.searcher import SearchConfig

__all__ = ["SearchConfig"]
