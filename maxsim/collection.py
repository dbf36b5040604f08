"""The text layer: pairs a model with a store of token vectors.

Stores (:class:`maxsim.index.Index`, :class:`maxsim.integrations.qdrant.QdrantStore`) hold
vectors and never load a model; their text methods use the model they were given. This layer
is where "no model given" means the default one: :class:`Index` (exported as ``maxsim.Index``)
is the on-disk index that loads the model its directory was built with, or the offline default
model, the first time it needs one, and :func:`with_model` does the same for any store.

>>> import tempfile, maxsim
>>> index = maxsim.Index.create(tempfile.mkdtemp() + "/idx")
>>> index.add(["Paris is the capital of France."], ids=["paris"])
['paris']
>>> index.search("capitale de la France", k=1)[0][0]["id"]
'paris'
"""

from __future__ import annotations

from typing import TypeVar

from maxsim.index import Index as _StorageIndex
from maxsim.store import Encoder, VectorStore

S = TypeVar("S", bound=VectorStore)


def load_encoder(name: str | None = None) -> Encoder:
    """The model called ``name`` (a folder or hub id), or the offline default model."""
    from maxsim.models.loading import load

    return load(name) if name else load()


def with_model(store: S, model: Encoder | str | None = None) -> S:
    """Give ``store`` a model for its text methods: ``model`` itself, the model named by ``model``,
    or (None) the model the store was built with, else the offline default model."""
    if model is None or isinstance(model, str):
        model = load_encoder(model or getattr(store, "model_name", None))
    store.model = model
    return store


class Index(_StorageIndex):
    """:class:`maxsim.index.Index` whose text methods load a model when none was given: the
    model recorded in the index (``model_name``), else the offline default model."""

    def _encoder(self) -> Encoder:
        if self.model is None:
            self.model = load_encoder(self.model_name)
        return self.model
