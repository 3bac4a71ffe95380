"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every write goes to a temporary file in the same folder, is flushed, then renamed over the target
(``os.replace`` is atomic on POSIX within one file system). A write that fails part-way removes its
temporary file and leaves the target as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO


@contextmanager
def _temp_beside(path: Path) -> Iterator[tuple[int, str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        yield fd, tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def atomic_text_writer(path: Path) -> Iterator[TextIO]:
    """A text handle on a temporary file beside ``path``: replaces ``path`` on a clean exit, else removed."""
    with _temp_beside(path) as (fd, _), os.fdopen(fd, "w") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def atomic_binary_writer(path: Path) -> Iterator[BinaryIO]:
    """Like :func:`atomic_text_writer`, in binary mode."""
    with _temp_beside(path) as (fd, _), os.fdopen(fd, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_text_writer(path) as handle:
        handle.write(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_binary_writer(path) as handle:
        handle.write(data)
