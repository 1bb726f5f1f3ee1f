"""The one exception type a user sees (the CLI prints its message on one line and exits with code 2),
and the helpers that keep those messages short and honest about the input."""

from __future__ import annotations

import codecs
import os

SNIFF_BYTES = 1024


class DefembError(Exception):
    """A problem with the user's input (path, option value, model) that the user can fix."""


def quote(value: object, limit: int = 80) -> str:
    """A user's value as it goes into a message: quoted, escaped onto one line, cut to ``limit`` characters.

    A 10 MB header line or a pasted file must not become a 10 MB error message.
    """
    text = str(value)
    return repr(text[:limit] + "…" if len(text) > limit else text)


def check_text_file(path: str | os.PathLike, what: str = "file") -> None:
    """Refuse a binary file (a NUL byte, or bytes that are not UTF-8, in its first KB) before reading it as text.

    Read with ``errors="replace"``, a binary file would otherwise pass as text made of garbage tokens.
    """
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    try:
        codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)  # a character cut at 1 KB is fine
        binary = b"\0" in head
    except UnicodeDecodeError:
        binary = True
    if binary:
        raise DefembError(
            f"{path}: {what} looks binary (NUL or non-UTF-8 bytes in its first KB); give a UTF-8 text file"
        )
