"""ColBERT checkpoint folders: detect the layout from the files and build a Model."""

from __future__ import annotations

from pathlib import Path

import torch

from maxsim.errors import MaxsimError
from maxsim.models.colbert import Model


class CheckpointError(MaxsimError, RuntimeError):
    """A checkpoint folder is incomplete, contradictory or of an unsupported layout."""


def load_checkpoint(path: Path, *, dtype: torch.dtype = torch.float32, num_threads: int | None = None) -> Model:
    files = sorted(p.name for p in Path(path).iterdir())
    raise CheckpointError(f"{path}: no supported ColBERT checkpoint layout recognised (files: {files})")
