"""The object-store capability: buckets / containers of S3, Cloud Storage and Azure Blob, alike.

Backup, restore and data-movement runbooks use only this interface. Content is streamed in chunks
(never whole objects in memory) and every object carries checksums the cloud itself computed, so a
copy can be verified end to end. S3 multipart ETags are NOT an MD5 of the content: ``md5`` is None
for them and callers must fall back to hashing the stream (``hash_stream``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed or stat-ed."""

    container: str
    key: str
    size: int
    md5: str | None = None  # hex; None when the cloud has no plain content MD5 (S3 multipart, some blobs)
    etag: str | None = None
    last_modified: str | None = None  # ISO-8601 UTC
    metadata: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ObjectStore(Protocol):
    """Buckets (S3, GCS) and containers (Azure) behind one interface, bound to one target."""

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in key order, with size and checksums."""
        ...

    def stat(self, container: str, key: str) -> ObjectInfo:
        """One object's metadata; raises ``KeyError`` when it does not exist."""
        ...

    def read(self, container: str, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The object's content as a stream of chunks."""
        ...

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, size: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``chunks`` as the object (replacing it); returns what the cloud recorded."""
        ...

    def delete(self, container: str, key: str) -> None:
        """Remove the object (no error when it is already gone)."""
        ...


def hash_stream(chunks: Iterable[bytes]) -> tuple[str, int]:
    """MD5 hex and byte count of a stream (for copies whose source has no plain MD5)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size
