"""The ``maxsim`` command: one module per command family, wired by :mod:`maxsim.cli.main`."""

from __future__ import annotations

from maxsim.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
