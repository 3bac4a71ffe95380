"""Azure Blob Storage as an :class:`~include.capabilities.object_store.ObjectStore`, through WasbHook.

Reads are ranged downloads, each conditioned on the pinned ETag (``If-Match``, i.e.
``match_condition=IfNotModified``) and, with blob versioning, on the ``versionId``: a blob overwritten
mid-read fails the next range with 412 and the stream raises :class:`ObjectChangedError`. Azurite
enforces the ETag condition (412 ConditionNotMet); it has no blob versioning, so ``version`` stays None
there and the version path is not exercised by the tests.

Writes stream without a spool: blocks of ``CHUNK_SIZE`` are staged with a per-block MD5 the service
checks, then committed in one ``Put Block List`` carrying the whole-content MD5 (Azure stores that MD5 as
given for block lists; it is computed here from the very bytes staged). Nothing replaces the blob until
the commit, so a source that fails mid-stream leaves the old blob intact (uncommitted blocks expire).
Content shorter than one chunk goes in a single ``Put Blob`` whose MD5 the service verifies; its answer
carries the service's MD5 of what it stored, so no read-back follows (see ``_put_answer``).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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


def _hex(md5: Any) -> str | None:
    return bytes(md5).hex() if md5 else None


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _changed(exc: BaseException) -> bool:
    return http_status(exc) == 412 or is_not_found(exc)


def rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Regroup a stream into pieces of exactly ``size`` bytes (the last may be shorter, never empty)."""
    buffer = bytearray()
    for chunk in chunks:
        if not buffer and len(chunk) == size:
            yield chunk  # already the right size (reads of CHUNK_SIZE): no copy
        else:
            buffer += chunk
            while len(buffer) >= size:
                with memoryview(buffer) as view:
                    piece = bytes(view[:size])
                del buffer[:size]
                yield piece
                del piece
        del chunk  # not held while the source fetches the next chunk
    if buffer:
        yield bytes(buffer)


class BlobObjectStore:
    """Blobs in the containers of one storage account. Content MD5 is set on every write we make."""

    permissions = (
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
    )

    def __init__(self, target: Target) -> None:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        self.target = target
        self.hook = WasbHook(wasb_conn_id=target.conn_id)
        self.service: Any = self.hook.blob_service_client

    def _info(self, container: str, props: Any) -> ObjectInfo:
        return ObjectInfo(
            container=container, key=props.name, size=int(props.size),
            md5=_hex(props.content_settings.content_md5), etag=str(props.etag).strip('"'),
            last_modified=utc_iso(props.last_modified), metadata=dict(props.metadata or {}),
            version=getattr(props, "version_id", None) or None,
        )

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every blob under ``prefix`` in name order, with its MD5 and metadata."""
        client = self.service.get_container_client(container)
        for props in client.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
            yield self._info(container, props)

    def stat(self, container: str, key: str, version: str | None = None) -> ObjectInfo:
        """The blob's (or one version's) properties; ``KeyError`` when it does not exist."""
        try:
            props = self.service.get_blob_client(container, key, version_id=version).get_blob_properties()
        except Exception as exc:
            if is_not_found(exc):
                raise KeyError(f"azure://{container}/{key}" + (f"?versionid={version}" if version else "")) from exc
            raise
        return self._info(container, props)

    def read(self, container: str, key: str, pin: Pin = None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Ranged downloads of one version, each on condition that the ETag is unchanged."""
        from azure.core import MatchConditions

        info = pinned_info(self, container, key, pin)
        location = f"azure://{container}/{key}"
        if not info.etag:
            raise ValueError(f"cannot pin a read of {location}: the ObjectInfo has no ETag")
        blob = self.service.get_blob_client(container, key, version_id=info.version)

        def fetch(first: int, last: int) -> bytes:
            try:
                downloader = blob.download_blob(
                    offset=first, length=last - first + 1, max_concurrency=1,
                    etag=_quoted(info.etag or ""), match_condition=MatchConditions.IfNotModified,
                )
                return bytes(downloader.readall())
            except Exception as exc:
                if _changed(exc):
                    raise ObjectChangedError(location, info.version or info.etag, str(exc).splitlines()[0]) from exc
                raise

        yield from read_ranges(info, location, chunk_size, fetch)

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Stream ``chunks`` as staged blocks and commit them with the content MD5; return the version written."""
        from azure.storage.blob import BlobBlock, ContentSettings

        blob = self.service.get_blob_client(container, key)
        digest = hashlib.md5(usedforsecurity=False)
        pieces = rechunk(chunks, CHUNK_SIZE)
        first = next(pieces, b"")
        if len(first) < CHUNK_SIZE:  # the whole content (only the last piece is short): one Put Blob
            digest.update(first)
            # validate_content: the SDK sends the body's MD5 as the transactional Content-MD5 and the service refuses
            # (400 Md5Mismatch) a body that does not match it; content_md5: the same MD5 stored as the blob's
            # Content-MD5 property (x-ms-blob-content-md5), which listings return.
            response: Mapping[str, Any] = blob.upload_blob(
                first, length=len(first), overwrite=True, metadata=metadata or None, validate_content=True,
                content_settings=ContentSettings(content_md5=bytearray(digest.digest())),
            )
            answered = self._put_answer(container, key, response, len(first), digest.hexdigest(), metadata)
            return answered if answered is not None else self._written(container, key, response)
        # Block ids must have one length per blob; a random prefix keeps concurrent writers' blocks apart.
        prefix = uuid.uuid4().hex
        blocks: list[Any] = []

        def stage(data: bytes) -> None:
            block_id = base64.b64encode(f"{prefix}-{len(blocks):06d}".encode()).decode()
            blob.stage_block(block_id, data, length=len(data), validate_content=True)
            digest.update(data)
            blocks.append(BlobBlock(block_id=block_id))

        stage(first)
        del first
        for piece in pieces:
            stage(piece)
            del piece  # not held while the source fetches the next chunk
        response = blob.commit_block_list(
            blocks, metadata=metadata or None,
            content_settings=ContentSettings(content_md5=bytearray(digest.digest())),
        )
        return self._written(container, key, response)

    def _put_answer(
        self, container: str, key: str, response: Mapping[str, Any], size: int, md5: str,
        metadata: dict[str, str] | None,
    ) -> ObjectInfo | None:
        """What a ``Put Blob`` stored, from its answer alone, or None when the answer does not prove it.

        Proof: the answer's ``Content-MD5`` is the service's MD5 of the body it received and stored; when it equals
        the MD5 of the bytes sent (which is also the blob's Content-MD5 property now) and the status was a success,
        the blob holds exactly those ``size`` bytes: no read-back needed. Without that header: None (read back).
        """
        served = _hex(response.get("content_md5"))
        if served is None or served != md5 or not response.get("etag"):
            return None
        modified = response.get("last_modified")
        return ObjectInfo(
            container=container, key=key, size=size, md5=served, etag=str(response["etag"]).strip('"'),
            last_modified=utc_iso(modified) if modified else None, metadata=dict(metadata or {}),
            version=response.get("version_id") or None,
        )

    def _written(self, container: str, key: str, response: Mapping[str, Any]) -> ObjectInfo:
        """Properties of exactly the version just written (conditioned on its ETag)."""
        from azure.core import MatchConditions

        etag = str(response["etag"])
        version = response.get("version_id") or None
        try:
            props = self.service.get_blob_client(container, key, version_id=version).get_blob_properties(
                etag=etag, match_condition=MatchConditions.IfNotModified,
            )
        except Exception as exc:
            if _changed(exc):
                raise ObjectChangedError(
                    f"azure://{container}/{key}", etag, "replaced or deleted right after it was written",
                ) from exc
            raise
        return self._info(container, props)

    def delete(self, container: str, key: str) -> None:
        """Remove the blob; no error when it is already gone."""
        try:
            self.service.get_blob_client(container, key).delete_blob()
        except Exception as exc:
            if not is_not_found(exc):
                raise
