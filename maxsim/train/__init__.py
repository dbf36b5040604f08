"""Fine-tune late-interaction models: pairs/triplets, contrastive + distillation + Matryoshka losses.

>>> from maxsim.train import TrainingArguments, Trainer   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "TrainingArguments": ("maxsim.train.trainer", "TrainingArguments"),
    "Trainer": ("maxsim.train.trainer", "Trainer"),
    "Pair": ("maxsim.train.data", "Pair"),
    "read_pairs": ("maxsim.train.data", "read_pairs"),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'maxsim.train' has no attribute {name!r}")
