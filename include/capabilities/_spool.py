"""Spool a chunk stream to a temporary file while hashing it (shared by the S3 and GCS object stores).

S3 and GCS want the content MD5 before the upload starts (S3 keeps it in the object's metadata, GCS
verifies the upload against it), and a part / chunk that fails must be re-sent: both need the whole
stream first. At most ``SPOOL_MEMORY`` bytes stay in memory; the rest goes to a temporary file in ``TMPDIR``,
so local disk, not memory, must hold the largest object.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
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
