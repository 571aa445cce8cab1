"""The one base of the errors convfeat raises on purpose, so the CLI can tell them from bugs.

A :class:`ConvfeatError` is a message for the user (bad input, a refused file, a missing
weight file); anything else reaching the command line is a bug and keeps its traceback.
"""
from __future__ import annotations


class ConvfeatError(Exception):
    """Base of every error convfeat raises deliberately; its message is meant for the user."""


class InputError(ConvfeatError, ValueError):
    """A bad argument or input value (a ``ValueError``, so ``except ValueError`` still catches it)."""


class UnknownNameError(ConvfeatError, KeyError):
    """A name (model, weights, dataset, …) convfeat does not know (a ``KeyError`` too)."""

    def __str__(self) -> str:   # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
