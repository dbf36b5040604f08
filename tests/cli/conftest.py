"""Fixtures of the command-line tests: the session's model for commands, or a guard that none loads."""

from __future__ import annotations

import pytest

from maxsim.cli.common import load_model_named


@pytest.fixture
def cli_model(monkeypatch, default_model):
    """Commands load the session's model instead of reading it again."""
    load_model_named.cache_clear()
    monkeypatch.setattr("maxsim.models.loading.load", lambda name=None, **kw: default_model)
    yield default_model
    load_model_named.cache_clear()


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a command loads a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    load_model_named.cache_clear()
    monkeypatch.setattr("maxsim.models.loading.load", refuse)
    yield
    load_model_named.cache_clear()


def one_line_error(err: str, *needles: str) -> None:
    """stderr is exactly one `maxsim CMD: error: ...` line holding every needle."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("maxsim ") and ": error: " in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)
