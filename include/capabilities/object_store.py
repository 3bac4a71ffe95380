"""The object-store capability: buckets / containers of S3, Cloud Storage and Azure Blob, alike.

Backup, restore and data-movement runbooks use only this interface.

- **Streaming.** Content moves in chunks (``CHUNK_SIZE`` by default), never whole objects in memory.
- **One version per read.** ``read`` is pinned to one version of the object (S3 ``VersionId`` or
  ``If-Match`` on the ETag, the GCS generation, an Azure ETag condition). If the object is overwritten
  or deleted while it is being read, the stream raises :class:`ObjectChangedError`: it never yields
  bytes of two versions. A stream is complete only when the iterator is exhausted without error, so a
  consumer must not commit what it read before then (``write`` consumes the whole stream before it
  replaces anything).
- **Checksums the cloud recorded.** ``md5`` is a real content MD5 or None. S3 multipart and SSE-KMS
  ETags are NOT an MD5 of the content: ``md5`` is then the MD5 this project stored in the object's
  metadata when it wrote the object, or None for foreign objects, and callers fall back to hashing the
  stream (``hash_stream``). ``crc32c`` is the cloud's own CRC32C where it keeps one (GCS).
- **Versions.** ``ObjectInfo.version`` is what a backup manifest records: the S3 ``VersionId`` (versioned
  buckets), the GCS generation, the Azure ``versionId`` (accounts with blob versioning), else None.

This module imports no cloud SDK; the implementations live in ``include/clouds/<cloud>/object_store.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeAlias, runtime_checkable

#: Bytes per read range and per uploaded part / block.
CHUNK_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    """One object (one version of it) as listed, stat-ed or written."""

    container: str
    key: str
    size: int
    md5: str | None = None  # hex; None when no real content MD5 is known (S3 multipart/KMS from elsewhere)
    etag: str | None = None  # without surrounding quotes
    last_modified: str | None = None  # ISO-8601 UTC
    metadata: dict[str, str] = field(default_factory=dict)
    #: S3 VersionId / GCS generation / Azure versionId; None when the store keeps no versions.
    version: str | None = None
    crc32c: str | None = None  # hex (8 digits, big-endian) where the cloud keeps one (GCS)


@dataclass(frozen=True)
class ObjectLock:
    """Write-once retention of one object version until ``retain_until`` (S3 Object Lock).

    Only stores that declare ``supports_object_lock = True`` accept it (``S3ObjectStore.write(..., lock=)``);
    the bucket must have Object Lock enabled.
    """

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    retain_until: datetime  # timezone-aware


class ObjectChangedError(RuntimeError):
    """The object was overwritten or deleted after the version being read was pinned.

    Raised by ``read`` instead of yielding bytes of another version. Reading again (a retry) pins
    the object's new version.
    """

    def __init__(self, location: str, pinned: str | None, reason: str) -> None:
        self.location = location
        self.pinned = pinned
        super().__init__(f"{location} changed while being read (pinned to {pinned}): {reason}")


#: What ``read`` pins to: an ``ObjectInfo`` (its version and ETag), a version id, or None (stat first).
Pin: TypeAlias = ObjectInfo | str | None


class ReadRange(Protocol):
    """Fetch bytes ``first``..``last`` (inclusive) of the pinned version, or raise ObjectChangedError."""

    def __call__(self, first: int, last: int) -> bytes: ...


@runtime_checkable
class ObjectStore(Protocol):
    """Buckets (S3, GCS) and containers (Azure) behind one interface, bound to one target."""

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix``, in key order, with size, ETag and the checksums listing gives."""
        ...

    def stat(self, container: str, key: str, version: str | None = None) -> ObjectInfo:
        """One object's metadata (of ``version`` when given); raises ``KeyError`` when it does not exist."""
        ...

    def read(self, container: str, key: str, pin: Pin = None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The content of one version of the object, as chunks of ``chunk_size`` bytes (the last may be shorter).

        ``pin`` is the ``ObjectInfo`` to read (from ``stat``, ``list_objects`` or ``write``), a version id
        (``ObjectInfo.version``), or None to pin the version current when the first chunk is requested.
        Raises ``KeyError`` if there is no such object (version) and :class:`ObjectChangedError` if it
        changes while being read.
        """
        ...

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store ``chunks`` as the object (replacing it once the whole stream is consumed).

        Returns what the cloud recorded for the version written (size, checksums, ETag, version), so a
        caller can compare it with the source's checksums.
        """
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
        del chunk  # released before the next chunk is fetched
    return digest.hexdigest(), size


def byte_ranges(size: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    """``(first, last)`` inclusive byte offsets covering ``size`` bytes in ``chunk_size`` steps."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    for start in range(0, size, chunk_size):
        yield start, min(start + chunk_size, size) - 1


def pinned_info(store: ObjectStore, container: str, key: str, pin: Pin) -> ObjectInfo:
    """The ``ObjectInfo`` a read is pinned to: ``pin`` itself, or a ``stat`` of the (given) version."""
    if isinstance(pin, ObjectInfo):
        if (pin.container, pin.key) != (container, key):
            raise ValueError(f"pin is for {pin.container}/{pin.key}, not {container}/{key}")
        return pin
    return store.stat(container, key, version=pin)


def read_ranges(
    info: ObjectInfo, location: str, chunk_size: int, fetch: ReadRange,
) -> Iterator[bytes]:
    """Yield ``info``'s content range by range through ``fetch`` (which enforces the pin).

    A range of the wrong length means the server served another version: :class:`ObjectChangedError`.
    """
    for first, last in byte_ranges(info.size, chunk_size):
        data = fetch(first, last)
        if len(data) != last - first + 1:
            raise ObjectChangedError(
                location, info.version or info.etag,
                f"bytes {first}-{last} came back as {len(data)} bytes (object size changed)",
            )
        yield data
        del data  # not held while the next range downloads: a stream keeps one chunk alive, not two
