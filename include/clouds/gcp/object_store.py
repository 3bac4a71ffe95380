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
the emulators do not check it, but they record the MD5 of what they stored), always as one multipart upload
request (metadata, MD5 and bytes together). Under ``CHUNK_SIZE``: from memory. Larger: the body is streamed,
straight from the source when the caller announces size and MD5 (:class:`KnownChunks`), else from a spool
file (to learn the MD5 first). The returned ``ObjectInfo`` is the object resource GCS returned for the upload,
including the MD5 and CRC32C GCS computed from the bytes it stored: what a caller compares with the source's
checksum.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
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


#: Pieces of a spooled file sent per socket write (small: the kernel pipelines them, memory holds one).
_FILE_PIECE = 1024 * 1024


def _file_pieces(handle: Any, size: int) -> Iterator[bytes]:
    """The first ``size`` bytes of a file at its current position, in ``_FILE_PIECE`` reads."""
    left = size
    while left > 0 and (data := handle.read(min(_FILE_PIECE, left))):
        left -= len(data)
        yield data
        del data


class _MultipartBody:
    """A ``multipart/related`` upload body (object resource as JSON, then exactly ``size`` bytes of content) that
    the HTTP client streams piece by piece, announcing its full length (no chunked encoding, no buffering).

    The layout is the one google-resumable-media builds in memory (``construct_multipart_request``), with a random
    boundary. A source error is kept in ``error`` (the HTTP client may wrap it) and ends the body before the closing
    boundary, so the service never sees a complete request; more or fewer content bytes than ``size`` is an error
    too. Should the boundary ever occur in the content, the service would store other bytes than were sent and the
    MD5 check refuses them (the upload fails, nothing counts).
    """

    def __init__(self, resource: dict[str, Any], chunks: Iterable[bytes], size: int) -> None:
        boundary = b"===============" + uuid.uuid4().hex.encode() + b"=="
        self.content_type = 'multipart/related; boundary="' + boundary.decode() + '"'
        self.head = (b"--" + boundary + b"\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n"
                     + json.dumps(resource).encode() + b"\r\n--" + boundary
                     + b"\r\ncontent-type: application/octet-stream\r\n\r\n")
        self.tail = b"\r\n--" + boundary + b"--"
        self.chunks, self.size = chunks, size
        self.error: BaseException | None = None

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        try:
            yield self.head
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
        yield self.tail


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

        Always one multipart upload request (object resource with the MD5, then the bytes). Content shorter than
        ``CHUNK_SIZE`` is sent from memory. Larger content with size and MD5 announced (:class:`KnownChunks`, what
        the backup copier passes) is streamed straight from the source, one piece in memory; else it is spooled
        first (to learn its MD5, memory holding none of it) and streamed from the file; an already spooled stream
        (:class:`SpooledChunks`) is sent from its own file. (One request instead of a resumable session's two, and
        measured faster on fake-gcs-server: 3 x 16 MiB from S3 in 0.36 s against 0.51 s; a resumable session would
        only help by resuming, which a copy retried whole does not need.)
        """
        if isinstance(chunks, KnownChunks) and chunks.size >= CHUNK_SIZE:
            return self._upload_streamed(container, key, chunks.md5, chunks.size, chunks, metadata)
        if not isinstance(chunks, SpooledChunks):
            small, chunks = _head(chunks, CHUNK_SIZE)
            if small is not None:
                return self._upload_small(container, key, small, metadata)
        handle, md5, length, owned = spooled(chunks)
        try:
            return self._upload_streamed(container, key, md5, length, _file_pieces(handle, length), metadata)
        finally:
            if owned:
                handle.close()

    def _upload_streamed(
        self, container: str, key: str, md5: str, size: int, chunks: Iterable[bytes], metadata: dict[str, str] | None,
    ) -> ObjectInfo:
        """One multipart upload whose body streams ``chunks`` (exactly ``size`` bytes with content MD5 ``md5``).

        GCS creates the object only when the whole request arrived (and its bytes match the MD5), so a source that
        fails part-way leaves nothing; its error is raised as it was.
        """
        from google.cloud.storage.blob import (  # type: ignore[import-untyped]
            _API_VERSION,
            _MULTIPART_URL_TEMPLATE,
            _get_host_name,
        )

        blob = self.client.bucket(container).blob(key)
        blob.metadata = metadata or None
        blob.md5_hash = base64.b64encode(bytes.fromhex(md5)).decode()  # the server verifies it
        headers, resource, _ = blob._get_upload_arguments(self.client, "application/octet-stream")
        url = _MULTIPART_URL_TEMPLATE.format(
            hostname=_get_host_name(self.client._connection), bucket_path=blob.bucket.path, api_version=_API_VERSION,
        )
        body = _MultipartBody(resource, chunks, size)
        headers = {name: value for name, value in headers.items()  # the client's own, but this body's type and length
                   if name.lower() not in ("content-type", "x-upload-content-type", "content-length")}
        headers.update({"Content-Type": body.content_type, "Content-Length": str(len(body))})
        try:
            response = self.client._http.post(url, data=body, headers=headers)
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
