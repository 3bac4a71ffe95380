"""S3 as an :class:`~include.capabilities.object_store.ObjectStore`, through the Airflow S3Hook."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from include.capabilities._spool import spool
from include.capabilities.object_store import CHUNK_SIZE, ObjectInfo
from include.records import utc_iso
from include.targets import Target

#: Object metadata key holding the content MD5 we computed on write (S3 ETags are not always MD5s).
MD5_META = "content-md5-hex"


class S3ObjectStore:
    """Objects in the S3 buckets of one AWS target. ``md5`` is the content MD5 only when provable:
    a single-part, non-KMS ETag, or the MD5 we stored in metadata on write."""

    permissions = ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject")

    def __init__(self, target: Target, region: str | None = None) -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        self.target = target
        self.hook = S3Hook(aws_conn_id=target.conn_id, region_name=region or target.regions[0])
        self.client: Any = self.hook.get_conn()

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=container, Prefix=prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    container=container, key=item["Key"], size=int(item["Size"]),
                    etag=item["ETag"].strip('"'), last_modified=utc_iso(item["LastModified"]),
                )

    def stat(self, container: str, key: str) -> ObjectInfo:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=container, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(f"s3://{container}/{key}") from exc
            raise
        etag = head["ETag"].strip('"')
        metadata = dict(head.get("Metadata", {}))
        plain = "-" not in etag and head.get("ServerSideEncryption") != "aws:kms"
        return ObjectInfo(
            container=container, key=key, size=int(head["ContentLength"]),
            md5=etag if plain else metadata.get(MD5_META), etag=etag,
            last_modified=utc_iso(head["LastModified"]), metadata=metadata,
        )

    def read(self, container: str, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=container, Key=key)["Body"]
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, size: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        handle, md5, _ = spool(chunks)
        try:
            extra = {"Metadata": {**(metadata or {}), MD5_META: md5}}
            # upload_fileobj switches to multipart above 8 MiB and streams from the spool file.
            self.client.upload_fileobj(handle, container, key, ExtraArgs=extra)
        finally:
            handle.close()
        return self.stat(container, key)

    def delete(self, container: str, key: str) -> None:
        self.client.delete_object(Bucket=container, Key=key)
