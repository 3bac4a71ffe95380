"""Spool a chunk stream to a bounded temporary file while hashing it (shared by the object stores)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from typing import IO

#: Up to this many bytes stay in memory; larger content goes to a temporary file on disk.
SPOOL_MEMORY = 16 * 1024 * 1024


def spool(chunks: Iterable[bytes]) -> tuple[IO[bytes], str, int]:
    """Return (file positioned at 0, md5 hex, size). The caller closes the file."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    handle = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        handle.write(chunk)
    handle.seek(0)
    return handle, digest.hexdigest(), size
