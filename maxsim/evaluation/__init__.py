"""Measure retrieval quality: BEIR collections, BM25 and dense baselines, late-interaction runs.

Kept light to import: submodules load torch, ranx, bm25s and matplotlib only when used.
"""

from __future__ import annotations
