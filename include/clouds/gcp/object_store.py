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

Writes send the content's MD5 with the upload (Cloud Storage rejects an upload whose bytes do not match it;
the emulators do not check it, but they record the MD5 of what they stored). Under ``CHUNK_SIZE``: one
multipart request from memory. Larger: spooled, then streamed from the spool file in one PUT of a resumable
session. The
returned ``ObjectInfo`` is the object resource GCS returned for the upload, including the MD5 and CRC32C
GCS computed from the bytes it stored: what a caller compares with the source's checksum.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

from include.capabilities._spool import KnownChunks, SpooledChunks, spooled
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


def _head(chunks: Iterable[bytes], limit: int) -> tuple[bytes | None, Iterator[bytes]]:
    """``(content, empty)`` when the whole stream holds less than ``limit`` bytes, else ``(None, the whole stream)``
    (the pieces read ahead handed on one by one, each released once consumed)."""
    pieces: list[bytes] = []
    size = 0
    iterator = iter(chunks)
    for chunk in iterator:
        pieces.append(chunk)
        size += len(chunk)
        del chunk
        if size >= limit:  # no read-ahead past the limit: the pieces go to the spool before the next is fetched
            return None, _drain(pieces, iterator)
    return b"".join(pieces), iter(())


class _FileBody:
    """The first ``size`` bytes of a file as a request body that the HTTP client streams (in small reads)."""

    def __init__(self, handle: Any, size: int) -> None:
        self.handle, self.size = handle, size

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        data: bytes = self.handle.read(amount)
        return data


class _StreamBody:
    """A request body of exactly ``size`` bytes from an iterator of chunks (the HTTP client sends each as it comes).

    A source error is kept in ``error`` (the HTTP client may wrap it) and ends the body; more or fewer bytes than
    ``size`` is an error too.
    """

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self.chunks, self.size = chunks, size
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        try:
            for chunk in self.chunks:
                sent += len(chunk)
                if sent > self.size:
                    raise ValueError(f"the stream holds more than the {self.size} bytes announced")
                yield chunk
                del chunk
            if sent != self.size:
                raise ValueError(f"the stream ended after {sent} of the {self.size} bytes announced")
        except Exception as exc:
            self.error = exc
            raise


def _drain(pieces: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    while pieces:
        yield pieces.pop(0)
    yield from rest


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
        """Upload the stream with its MD5 (GCS refuses an upload whose content does not match it); return the
        generation written.

        Content shorter than ``CHUNK_SIZE`` goes in one request (a multipart media upload: metadata, MD5 and bytes
        together) straight from memory. Larger content is spooled (to learn its MD5 first, and so that memory holds
        none of it, not a chunk being received plus one being sent) and streamed from the file in the one PUT of a
        resumable session; an already spooled stream (:class:`SpooledChunks`) is sent from its own file.
        """
        if isinstance(chunks, KnownChunks) and chunks.size >= CHUNK_SIZE:
            return self._upload_known(container, key, chunks, metadata)
        if not isinstance(chunks, SpooledChunks):
            small, chunks = _head(chunks, CHUNK_SIZE)
            if small is not None:
                return self._upload_small(container, key, small, metadata)
        handle, md5, length, owned = spooled(chunks)
        try:
            blob = self.client.bucket(container).blob(key)
            blob.metadata = metadata or None
            blob.md5_hash = base64.b64encode(bytes.fromhex(md5)).decode()  # the server verifies it
            # A resumable session (its metadata carries the MD5), then the whole spool file in one PUT, streamed
            # from disk by the client's own authorised session: two requests whatever the size, and no chunk of the
            # object in memory. (The client's chunked upload keeps the previous chunk alive while it reads the next:
            # 16 MiB chunks measured +39.9 MiB resident for a 64 MiB copy, over the 3 x CHUNK_SIZE bound of
            # tests/test_object_store.py, and 8 MiB chunks were slow.)
            session = blob.create_resumable_upload_session(
                content_type="application/octet-stream", size=length, client=self.client, checksum=None,
            )
            response = self.client._http.put(
                session, data=_FileBody(handle, length),
                headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
            )
        finally:
            if owned:
                handle.close()
        if response.status_code not in (200, 201):
            from google.api_core.exceptions import from_http_response

            raise from_http_response(response)  # type: ignore[no-untyped-call]
        return self._resource_info(container, response.json())

    def _upload_known(
        self, container: str, key: str, chunks: KnownChunks, metadata: dict[str, str] | None,
    ) -> ObjectInfo:
        """Size and MD5 known upfront: a resumable session carrying the MD5, then the source's chunks streamed in one
        PUT of exactly ``size`` bytes (no spool; one chunk in memory). GCS creates the object only when every byte
        arrived, so a source that fails part-way leaves nothing; its error is raised as it was."""
        blob = self.client.bucket(container).blob(key)
        blob.metadata = metadata or None
        blob.md5_hash = base64.b64encode(bytes.fromhex(chunks.md5)).decode()
        session = blob.create_resumable_upload_session(
            content_type="application/octet-stream", size=chunks.size, client=self.client, checksum=None,
        )
        body = _StreamBody(chunks, chunks.size)
        try:
            response = self.client._http.put(
                session, data=body, headers={"Content-Length": str(chunks.size),
                                             "Content-Type": "application/octet-stream"},
            )
        except Exception:
            if body.error is not None:  # the source failed (e.g. ObjectChangedError): that, not the HTTP fallout
                raise body.error from None
            raise
        if body.error is not None:
            raise body.error
        if response.status_code not in (200, 201):
            from google.api_core.exceptions import from_http_response

            raise from_http_response(response)  # type: ignore[no-untyped-call]
        return self._resource_info(container, response.json())

    def _resource_info(self, container: str, resource: dict[str, Any]) -> ObjectInfo:
        """An ``ObjectInfo`` from the object resource GCS answered an upload with (its MD5 and CRC32C are GCS's)."""
        blob = self.client.bucket(container).blob(str(resource["name"]))
        blob._set_properties(resource)  # what upload_from_file does with the same answer
        return self._info(container, blob)

    def _upload_small(self, container: str, key: str, data: bytes, metadata: dict[str, str] | None) -> ObjectInfo:
        """One request: GCS checks the bytes against the MD5 sent with them and returns the object resource."""
        blob = self.client.bucket(container).blob(key)  # no chunk_size: the client sends a multipart upload
        blob.metadata = metadata or None
        blob.md5_hash = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        blob.upload_from_string(data, content_type="application/octet-stream", checksum=None)
        return self._info(container, blob)

    def delete(self, container: str, key: str) -> None:
        """Remove the live object; no error when it is already gone."""
        try:
            self.client.bucket(container).blob(key).delete()
        except Exception as exc:
            if not is_not_found(exc):
                raise
