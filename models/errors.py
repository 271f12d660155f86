"""The one error the models package raises when a model cannot be found or put together."""

from __future__ import annotations


class ModelNotFound(Exception):
    """A model is missing.

    The message always says what to do about it: which PyPI package provides the model (so the
    fix is one ``pip install``), or which path was looked at and found missing. Callers show it
    to an operator as is, so it must never be a bare file name or a library's internal error.
    """
