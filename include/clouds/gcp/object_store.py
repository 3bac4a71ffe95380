"""Cloud Storage as an :class:`~include.capabilities.object_store.ObjectStore`, through GCSHook."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from typing import Any

from include.capabilities._spool import spool
from include.capabilities.object_store import CHUNK_SIZE, ObjectInfo
from include.records import utc_iso
from include.targets import Target


def _hex_md5(b64: str | None) -> str | None:
    return base64.b64decode(b64).hex() if b64 else None


class GCSObjectStore:
    """Objects in the buckets of one Google Cloud project (GCS computes and returns content MD5s)."""

    permissions = ("storage.objects.list", "storage.objects.get", "storage.objects.create", "storage.objects.delete")

    def __init__(self, target: Target) -> None:
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        self.target = target
        self.hook = GCSHook(gcp_conn_id=target.conn_id)
        self.client: Any = self.hook.get_conn()

    def _info(self, container: str, blob: Any) -> ObjectInfo:
        return ObjectInfo(
            container=container, key=blob.name, size=int(blob.size or 0), md5=_hex_md5(blob.md5_hash),
            etag=blob.etag, last_modified=utc_iso(blob.updated), metadata=dict(blob.metadata or {}),
        )

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        for blob in self.client.list_blobs(container, prefix=prefix or None):
            yield self._info(container, blob)

    def stat(self, container: str, key: str) -> ObjectInfo:
        blob = self.client.bucket(container).get_blob(key)
        if blob is None:
            raise KeyError(f"gs://{container}/{key}")
        return self._info(container, blob)

    def read(self, container: str, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        info = self.stat(container, key)
        blob = self.client.bucket(container).blob(key)
        for start in range(0, info.size, chunk_size):
            end = min(start + chunk_size, info.size) - 1
            yield blob.download_as_bytes(start=start, end=end)

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, size: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        handle, md5, length = spool(chunks)
        try:
            blob = self.client.bucket(container).blob(key)
            blob.metadata = metadata or None
            blob.md5_hash = base64.b64encode(bytes.fromhex(md5)).decode()  # the server verifies it
            blob.upload_from_file(handle, size=length, checksum="md5")
        finally:
            handle.close()
        return self.stat(container, key)

    def delete(self, container: str, key: str) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self.client.bucket(container).blob(key).delete()
        except NotFound:
            pass
