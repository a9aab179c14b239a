"""Errors raised for user mistakes: the CLI prints them as one line, never a traceback."""
from __future__ import annotations


class PneumoscanError(Exception):
    """Base class for errors that are the user's to fix (bad path, bad file, bad option)."""


class InputError(PneumoscanError):
    """An input file or folder cannot be used; the message names it and says what to do."""
