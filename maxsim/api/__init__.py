"""The HTTP service: Jina-compatible multi-vector, embeddings and rerank endpoints, indexes, a search page.

>>> from maxsim.api import Settings, create_app      # doctest: +SKIP
>>> app = create_app(Settings(index_dir="indexes"))   # doctest: +SKIP

Needs the ``server`` extra (``pip install 'maxsim[server]'``). Importing this package is cheap:
FastAPI and the model are imported by ``create_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maxsim.api.settings import BatchSettings, Limits, Settings

if TYPE_CHECKING:
    from maxsim.api.app import create_app

__all__ = ["BatchSettings", "Limits", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from maxsim.api.app import create_app

        return create_app
    raise AttributeError(f"module 'maxsim.api' has no attribute {name!r}")
