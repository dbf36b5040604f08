"""maxsim: multilingual late-interaction retrieval.

>>> import maxsim
>>> model = maxsim.load()                       # offline default model
>>> q = model.encode_queries(["what is MaxSim?"])[0]   # [32, 128]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from maxsim.collection import Index
    from maxsim.models.colbert import Model
    from maxsim.models.loading import load

__all__ = ["Index", "Model", "load", "maxsim_score", "maxsim_scores", "__version__"]

# Imported on first use so that `import maxsim` stays fast (torch is heavy).
_LAZY = {
    "load": ("maxsim.models.loading", "load"),
    "Model": ("maxsim.models.colbert", "Model"),
    "maxsim_score": ("maxsim.scoring.maxsim", "maxsim_score"),
    "maxsim_scores": ("maxsim.scoring.maxsim", "maxsim_scores"),
    "Index": ("maxsim.collection", "Index"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'maxsim' has no attribute {name!r}")
