"""Cloud Storage as an :class:`~include.capabilities.object_store.ObjectStore`, through GCSHook.

Reads are ranged downloads of one generation (``generation=`` on every range, the generation coming
from the stat or the caller's pin). After each range the metadata of that generation is read back and
must still name it; only then is the range yielded. On Cloud Storage the pinned download itself fails
(404) once the generation is gone, so the check is a second line of defence costing one metadata
request per chunk.

**The emulator does not pin.** gcp-storage-emulator (the one the tests run) ignores ``generation=``
on downloads and on metadata reads, and ``ifGenerationMatch`` on downloads: it always serves the live
object. Against it the metadata check is what turns an overwrite between two ranges into
:class:`ObjectChangedError` (the range already fetched is then the new generation's and is discarded).
The check is exact as long as each new generation gets a larger number, which holds on both (the
emulator uses ``time.time_ns()``). Within the emulator a download racing an upload can in principle see
new content before new metadata (it stores them in two steps); Cloud Storage has no such window.

Writes spool the stream, send the MD5 with the upload (GCS rejects a mismatching upload, the client
checks it too) and upload in ``CHUNK_SIZE`` pieces; the returned ``ObjectInfo`` is the object resource
GCS returned for the upload, including its MD5 and CRC32C.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from include.capabilities._spool import spool
from include.capabilities.object_store import (
    CHUNK_SIZE,
    ObjectChangedError,
    ObjectInfo,
    Pin,
    pinned_info,
    read_ranges,
)
from include.clouds.errors import http_status, is_not_found
from include.records import utc_iso
from include.targets import Target


def _hex(b64: str | None) -> str | None:
    return base64.b64decode(b64).hex() if b64 else None


class GCSObjectStore:
    """Objects in the buckets of one Google Cloud project (GCS computes and returns MD5 and CRC32C)."""

    permissions = ("storage.objects.list", "storage.objects.get", "storage.objects.create", "storage.objects.delete")

    def __init__(self, target: Target) -> None:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        self.target = target
        self.hook = GCSHook(gcp_conn_id=target.conn_id)
        self.client: Any = self.hook.get_conn()

    def _info(self, container: str, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            container=container, key=blob.name, size=int(blob.size or 0), md5=_hex(blob.md5_hash),
            etag=blob.etag, last_modified=utc_iso(blob.updated), metadata=dict(blob.metadata or {}),
            version=str(blob.generation) if blob.generation else None, crc32c=_hex(blob.crc32c),
        )

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every live object under ``prefix`` in key order, with generation, MD5 and CRC32C."""
        for blob in self.client.list_blobs(container, prefix=prefix or None):
            yield self._info(container, blob)

    def _generation(self, container: str, key: str, generation: int | None) -> Any:
        """The blob resource (of ``generation``), or None when absent or when another generation answered."""
        blob = self.client.bucket(container).get_blob(key, generation=generation)
        if blob is None or (generation is not None and blob.generation != generation):
            return None  # the emulator answers with the live generation whatever was asked
        return blob

    def stat(self, container: str, key: str, version: str | None = None) -> ObjectInfo:
        """The object's (or one generation's) metadata; ``KeyError`` when it does not exist."""
        blob = self._generation(container, key, int(version) if version else None)
        if blob is None:
            raise KeyError(f"gs://{container}/{key}" + (f"#{version}" if version else ""))
        return self._info(container, blob)

    def read(self, container: str, key: str, pin: Pin = None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Ranged downloads of one generation, each confirmed against that generation's metadata."""
        info = pinned_info(self, container, key, pin)
        location = f"gs://{container}/{key}"
        if not info.version:
            raise ValueError(f"cannot pin a read of {location}: the ObjectInfo has no generation")
        generation = int(info.version)
        blob = self.client.bucket(container).blob(key, generation=generation)

        def fetch(first: int, last: int) -> bytes:
            try:
                # raw: the stored bytes (no gzip transcoding), which is what size and MD5 describe
                data = bytes(blob.download_as_bytes(start=first, end=last, raw_download=True, checksum=None))
                still = self._generation(container, key, generation)
            except Exception as exc:
                if is_not_found(exc) or http_status(exc) == 412:
                    raise ObjectChangedError(location, info.version, f"generation gone: {exc}") from exc
                raise
            if still is None:
                raise ObjectChangedError(location, info.version, "a newer generation replaced it")
            return data

        yield from read_ranges(info, location, chunk_size, fetch)

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload the stream with its MD5 (checked by GCS and by the client); return the generation written."""
        handle, md5, length = spool(chunks)
        try:
            blob = self.client.bucket(container).blob(key, chunk_size=CHUNK_SIZE)
            blob.metadata = metadata or None
            blob.md5_hash = base64.b64encode(bytes.fromhex(md5)).decode()  # the server verifies it
            blob.upload_from_file(handle, size=length, checksum="md5")
        finally:
            handle.close()
        # upload_from_file replaced the blob's properties with the object resource GCS returned.
        return self._info(container, blob)

    def delete(self, container: str, key: str) -> None:
        """Remove the live object; no error when it is already gone."""
        try:
            self.client.bucket(container).blob(key).delete()
        except Exception as exc:
            if not is_not_found(exc):
                raise
