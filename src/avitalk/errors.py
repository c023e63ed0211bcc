"""Errors that the command line reports as one line, without a traceback."""

from __future__ import annotations


class AvitalkError(Exception):
    """A problem with the user's input or environment (bad file, wrong space, missing model).

    The CLI prints ``avitalk: error: <message>`` and exits with status 2. Internal bugs are other
    exception types and keep their traceback.
    """


class SpaceMismatchError(AvitalkError, ValueError):
    """Two motion spaces that should agree do not; the message names both."""
