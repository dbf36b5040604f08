"""Token-vector compression: k-means centroids, residual codes, bit packing (PLAID class)."""

from __future__ import annotations

from maxsim.compression.bits import pack_codes, unpack_codes
from maxsim.compression.kmeans import choose_n_centroids, train_centroids
from maxsim.compression.residual import ResidualCodec, train_codec

__all__ = [
    "ResidualCodec",
    "choose_n_centroids",
    "pack_codes",
    "train_centroids",
    "train_codec",
    "unpack_codes",
]
