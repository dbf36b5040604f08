"""Errors maxsim raises on purpose. Each names the problem; none needs a traceback to understand.

Every exception the package raises on purpose derives from :class:`MaxsimError`, so
``except maxsim.errors.MaxsimError`` catches them all. Where Python users expect a built-in
class, the error has it as a second base (``UnknownIdError`` is a ``KeyError``, input errors are
``ValueError``/``TypeError``), so existing ``except KeyError`` code keeps working.
"""

from __future__ import annotations


class MaxsimError(Exception):
    """Base of every error maxsim raises for bad input, bad files or bad settings."""


class InvalidArgumentError(MaxsimError, ValueError):
    """An argument has the wrong value (a negative k, an empty list, a wrong dim)."""


class InvalidTypeError(MaxsimError, TypeError):
    """An argument has the wrong type (a string where a list of strings is expected)."""


class UnknownIdError(MaxsimError, KeyError):
    """Ids that a store does not hold (get, update, delete); nothing was changed."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class DuplicateIdError(MaxsimError, ValueError):
    """add() of ids that a store already holds (use upsert() or update()); nothing was added."""


class MissingModelError(MaxsimError, RuntimeError):
    """A text method (add, search) on a store that was given no model."""


class InputWarning(UserWarning):
    """Input that works but probably not as meant: an empty query, a query of mostly unknown
    tokens, a document cut at the token limit. The command line prints each as one stderr line."""
