"""Azure Blob Storage as an :class:`~include.capabilities.object_store.ObjectStore`, through WasbHook."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from include.capabilities._spool import spool
from include.capabilities.object_store import CHUNK_SIZE, ObjectInfo
from include.records import utc_iso
from include.targets import Target


def _hex(md5: Any) -> str | None:
    return bytes(md5).hex() if md5 else None


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
        )

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        client = self.service.get_container_client(container)
        for props in client.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
            yield self._info(container, props)

    def stat(self, container: str, key: str) -> ObjectInfo:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.service.get_blob_client(container, key).get_blob_properties()
        except ResourceNotFoundError as exc:
            raise KeyError(f"azure://{container}/{key}") from exc
        return self._info(container, props)

    def read(self, container: str, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        downloader = self.service.get_blob_client(container, key).download_blob(max_concurrency=1)
        yield from downloader.chunks()

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, size: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        from azure.storage.blob import ContentSettings

        handle, md5, length = spool(chunks)
        try:
            self.service.get_blob_client(container, key).upload_blob(
                handle, length=length, overwrite=True, metadata=metadata or None,
                content_settings=ContentSettings(content_md5=bytearray(bytes.fromhex(md5))),
            )
        finally:
            handle.close()
        return self.stat(container, key)

    def delete(self, container: str, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.service.get_blob_client(container, key).delete_blob()
        except ResourceNotFoundError:
            pass
