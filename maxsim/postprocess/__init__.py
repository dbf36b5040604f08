"""Post-processing of token vectors: fixed-dimensional encodings for single-vector first stages."""

from __future__ import annotations

from maxsim.postprocess.muvera import Muvera, MuveraConfig, pooled_vector

__all__ = ["Muvera", "MuveraConfig", "pooled_vector"]
