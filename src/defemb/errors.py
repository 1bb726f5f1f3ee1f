"""The one exception type a user sees: the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations


class DefembError(Exception):
    """A problem with the user's input (path, option value, model) that the user can fix."""
