"""Spool a chunk stream to a temporary file while hashing it (shared by the S3 and GCS object stores).

S3 and GCS want the content MD5 before the upload starts (S3 keeps it in the object's metadata, GCS
verifies the upload against it), and a part / chunk that fails must be re-sent: both need the whole
stream first. At most ``SPOOL_MEMORY`` bytes stay in memory; the rest goes to a temporary file in ``TMPDIR``,
so local disk, not memory, must hold the largest object.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO

#: Up to this many bytes stay in memory; larger content goes to a temporary file. Small, so that a copy
#: holds no more than the source's chunk in flight (a spool of a whole chunk would double the peak).
SPOOL_MEMORY = 1024 * 1024


def spool(chunks: Iterable[bytes]) -> tuple[IO[bytes], str, int]:
    """Return (file positioned at 0, md5 hex, size). The caller closes the file.

    If ``chunks`` raises (e.g. the source changed while being read), the file is closed and the
    error propagates: nothing has been uploaded yet.
    """
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    handle: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    try:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            handle.write(chunk)
            del chunk  # released before the source fetches the next one
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle, digest.hexdigest(), size


class SpooledChunks:
    """A spooled stream handed on as chunks, still carrying its file, MD5 and size.

    Stores that need the whole content and its MD5 before uploading (S3, GCS) take the file as it is instead of
    spooling the chunks a second time; other stores just iterate it. The owner closes the file.
    """

    def __init__(self, handle: IO[bytes], md5: str, size: int, chunk_size: int) -> None:
        self.handle, self.md5, self.size, self.chunk_size = handle, md5, size, chunk_size

    def __iter__(self) -> Iterator[bytes]:
        self.handle.seek(0)
        while data := self.handle.read(self.chunk_size):
            yield data
            del data


def spooled(chunks: Iterable[bytes]) -> tuple[IO[bytes], str, int, bool]:
    """(file at 0, md5 hex, size, owned): the file of ``SpooledChunks`` as is (``owned`` False: the caller of the
    store closes it), else a new spool of ``chunks`` (``owned`` True: close it when done)."""
    if isinstance(chunks, SpooledChunks):
        chunks.handle.seek(0)
        return chunks.handle, chunks.md5, chunks.size, False
    handle, md5, size = spool(chunks)
    return handle, md5, size, True


class KnownChunks:
    """A stream whose size and content MD5 the caller already knows (from the source's listing / checksums).

    A store may use them to stream the content straight to the cloud in one request (GCS) instead of spooling it
    to learn them; the cloud's own checksum of what it stored must still equal ``md5`` before the copy counts.
    Other stores just iterate it.
    """

    def __init__(self, chunks: Iterable[bytes], md5: str, size: int) -> None:
        self.chunks, self.md5, self.size = chunks, md5, size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)
