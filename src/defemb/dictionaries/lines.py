"""Bounded, streaming line reading shared by the line-based readers.

Files are read in binary with a size cap per line, so a multi-GB dump with one corrupt 3 GB "line" costs
at most ``max_line_bytes`` of memory; each line is decoded on its own so one bad byte loses one line.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from defemb.dictionaries.entry import SkipLog, location
from defemb.errors import DefembError

MAX_LINE_BYTES = 1 << 20  # 1 MiB: the largest real kaikki English entries are a few hundred KiB
SNIFF_BYTES = 1024


def open_binary(path: str | os.PathLike) -> BinaryIO:
    """Open plain or gzip-compressed files (kaikki dumps are often distributed as ``.gz``)."""
    try:
        if Path(path).suffix == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as error:
        raise DefembError(f"cannot open '{path}': {error.strerror or error}") from error


def _guarded(read: Callable[[], bytes], where: str) -> bytes:
    """``read()``, with a corrupt or truncated ``.gz`` or a failing disk turned into one error line."""
    try:
        return read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DefembError(f"{where}: corrupt or truncated gzip data ({error}); download the file again "
                          "(check it with 'gzip -t')") from error
    except OSError as error:
        raise DefembError(f"{where}: cannot read: {error.strerror or error}") from error


def _readline(handle: BinaryIO, size: int, where: str) -> bytes:
    return _guarded(lambda: handle.readline(size), where)


def _refuse_binary(handle: BinaryIO, path: str | os.PathLike) -> None:
    """A NUL byte near the start means an executable, an image or UTF-16, not a dictionary with bad lines."""
    head = _guarded(lambda: handle.peek(SNIFF_BYTES)[:SNIFF_BYTES], location(path, 1))  # type: ignore[attr-defined]
    if b"\0" in head:
        raise DefembError(f"'{path}' looks binary (NUL bytes in its first KB), not a dictionary; give a UTF-8 "
                          "text file (plain or .gz)")


def _drain(handle: BinaryIO, chunk: int, where: str) -> None:
    """Consume the rest of an over-long line without keeping it."""
    while True:
        piece = _readline(handle, chunk, where)
        if not piece or piece.endswith(b"\n"):
            return


def iter_lines(
    path: str | os.PathLike, skip: SkipLog, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every non-blank line that fits the cap and decodes as UTF-8.

    Line numbers are 1-based. Blank lines (ASCII whitespace only) are passed over silently; over-long
    lines are counted as "line-too-long" and undecodable ones as "non-utf8". Lines end at b"\\n" only,
    a trailing "\\r" is dropped, and a UTF-8 byte-order mark on line 1 is ignored.
    """
    with open_binary(path) as handle:
        _refuse_binary(handle, path)
        number = 0
        while True:
            raw = _readline(handle, max_line_bytes + 1, location(path, number + 1))
            if not raw:
                return
            number += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                skip.add("line-too-long", location(path, number), raw[:200])
                _drain(handle, max_line_bytes, location(path, number))
                continue
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            if number == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                skip.add("non-utf8", location(path, number), raw)
                continue
            yield number, text
