"""The public import paths, pinned: a refactor that moves code keeps these working."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "maxsim": ["Index", "Model", "load", "maxsim_score", "maxsim_scores", "__version__"],
    "maxsim.errors": [
        "MaxsimError",
        "InvalidArgumentError",
        "InvalidTypeError",
        "UnknownIdError",
        "DuplicateIdError",
        "MissingModelError",
    ],
    "maxsim.store": ["VectorStore", "TextMethods", "Encoder", "StoredDocument"],
    "maxsim.collection": ["Index", "with_model", "load_encoder"],
    "maxsim.index": [
        "Index",
        "SearchConfig",
        "IndexError_",
        "IndexCorruptedError",
        "IndexExistsError",
        "IndexLockedError",
        "IndexNotFoundError",
        "IndexReadOnlyError",
        "IndexClosedError",
    ],
    "maxsim.models": ["Model", "load", "ModelLoadError"],
    "maxsim.scoring": ["maxsim_score", "maxsim_scores"],
    "maxsim.compression": ["ResidualCodec", "train_codec"],
    "maxsim.postprocess": ["Muvera", "MuveraConfig"],
    "maxsim.integrations.qdrant": ["QdrantStore", "QdrantSettings"],
    "maxsim.api": ["Settings", "Limits", "BatchSettings", "create_app"],
    "maxsim.train": ["Trainer", "TrainingArguments"],
    "maxsim.cli": ["main", "build_parser"],
    "maxsim.types": ["SearchHit", "TokenVectors", "SUPPORTED_DIMS"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


def test_top_level_index_is_the_text_layer_over_the_storage_index():
    import maxsim
    from maxsim.collection import Index as TextIndex
    from maxsim.index import Index as StorageIndex

    assert maxsim.Index is TextIndex and issubclass(TextIndex, StorageIndex)


def test_both_stores_keep_the_contract_signatures():
    """Same method names and argument order on every store (the behaviour is tests/stores)."""
    import inspect

    from maxsim.index import Index
    from maxsim.integrations.qdrant import QdrantStore
    from maxsim.store import VectorStore

    for name, proto in inspect.getmembers(VectorStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        want = [p for p in inspect.signature(proto).parameters if p not in ("self", "options")]
        for store in (Index, QdrantStore):
            got = [p for p in inspect.signature(getattr(store, name)).parameters if p != "self"]
            assert got[: len(want)] == want, f"{store.__name__}.{name}{got} differs from the contract {want}"


def test_every_error_class_derives_from_maxsim_error():
    import inspect
    import pkgutil

    import maxsim
    from maxsim.errors import MaxsimError

    offenders = []
    for info in pkgutil.walk_packages(maxsim.__path__, "maxsim."):
        if info.name.endswith("__main__"):
            continue
        mod = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if (
                cls.__module__ == info.name
                and issubclass(cls, Exception)
                and not issubclass(cls, Warning)
                and not issubclass(cls, MaxsimError)
            ):
                offenders.append(f"{info.name}.{name}")
    assert not offenders, f"exceptions outside the MaxsimError tree: {offenders}"


#: built-in exception classes the package must not raise bare (use a maxsim.errors class, which has
#: the built-in as a second base); pydantic validators are the one place a plain ValueError is the API.
_BARE = {
    "ValueError",
    "TypeError",
    "KeyError",
    "RuntimeError",
    "FileNotFoundError",
    "OSError",
    "Exception",
    "IndexError",
    "LookupError",
}
_VALIDATOR_MODULES = {"maxsim/api/schemas.py"}


def test_the_package_raises_no_bare_builtin_errors():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted((root / "maxsim").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in _VALIDATOR_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in _BARE:
                    found.append(f"{rel}:{node.lineno} raise {node.exc.func.id}")
    assert not found, "raise a maxsim.errors class instead:\n" + "\n".join(found)
