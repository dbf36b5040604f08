"""Errors maxsim raises on purpose. Each names the problem; none needs a traceback to understand."""


class MaxsimError(Exception):
    """Base of every error maxsim raises for bad input, bad files or bad settings."""
