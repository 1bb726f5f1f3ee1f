"""Atomic outputs: everything is written into a hidden temporary sibling and renamed into place.

An interrupted or failed run therefore never leaves a directory or file that looks complete, and an
existing output is only replaced when the caller passes ``force=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defemb.errors import DefembError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(out: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) if ``out`` exists and ``force`` is not set."""
    path = Path(out)
    if path.exists() and not force:
        raise DefembError(f"output '{path}' already exists; pass --force to overwrite it")
    folder = next((p for p in path.absolute().parents if p.exists()), Path(path.absolute().anchor))
    if not folder.is_dir():
        raise DefembError(f"cannot write '{path}': '{folder}' is not a directory")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DefembError(f"cannot write '{path}': no permission to create files in '{folder}'")
    return path


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``out``, on error it is removed."""
    final = check_writable(out, force)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; outputs get the user's usual mode
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    move_into_place(tmp, final)


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished ``tmp`` to ``final``; an existing ``final`` is moved aside first, deleted after."""
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
        os.replace(final, old / final.name)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write a text file via a temporary sibling and rename (no half-written file on interruption)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write a file (a PNG, UTF-8 text) via a temporary sibling and rename."""
    path = Path(path)
    if path.is_dir():  # --force replaces a file, never a folder
        raise DefembError(f"cannot write '{path}': it is a directory; give a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
