"""A small synchronous fsspec file system for ``s3://`` over the Amazon provider's :class:`S3Hook`.

Why it exists: Airflow's ``ObjectStoragePath`` serves ``s3://`` through ``s3fs``, and ``s3fs`` needs
``aiobotocore``, whose releases pin botocore to a narrow window. No ``s3fs`` release resolves together with
the botocore of this project's lock (``uv pip install --dry-run s3fs==2026.9.0 botocore==1.44.8`` is
unsatisfiable: aiobotocore 3.10 wants botocore <1.43.118). Until it does, :func:`include.paths.as_data_path`
attaches this file system for the ``s3`` protocol and the URL's connection, so ``ObjectStoragePath`` works
with the same Airflow connection (``s3://<conn id>@<bucket>/<prefix>``). When ``s3fs`` is importable the
provider's own file system is used instead and this module is not touched.

It implements what the runbooks' data root needs: list, stat, read (whole object or a range), write (one
``PutObject`` per file: an object store's atomic unit), delete. Folders are key prefixes, as in ``s3fs``.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from fsspec.spec import AbstractFileSystem  # type: ignore[import-untyped]


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class _Upload(io.BytesIO):
    """A write handle: the object is PUT once, on a clean close (never part of a failed write)."""

    def __init__(self, fs: S3HookFileSystem, path: str) -> None:
        super().__init__()
        self._fs, self._path, self._failed = fs, path, False

    def __exit__(self, *exc: object) -> None:
        self._failed = exc[0] is not None
        self.close()

    def close(self) -> None:
        if not self.closed and not self._failed:
            self._fs.pipe_file(self._path, self.getvalue())
        super().close()


class S3HookFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """``s3://bucket/key`` through one Airflow AWS connection (``S3Hook(aws_conn_id=conn_id)``)."""

    protocol = ("s3", "s3a")
    root_marker = ""
    cachable = False

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    @cached_property
    def client(self) -> Any:  # a boto3 S3 client (boto3 ships no types in this lock)
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.conn_id).get_conn()

    @property
    def fsid(self) -> str:
        return f"s3hook-{self.conn_id}"

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        for prefix in ("s3://", "s3a://"):
            if text.startswith(prefix):
                text = text[len(prefix):]
                host, slash, rest = text.partition("/")
                text = host.rpartition("@")[2] + slash + rest  # drop a "<conn id>@" user part
        return text.rstrip("/")

    def _split(self, path: str) -> tuple[str, str]:
        bucket, _, key = self._strip_protocol(path).partition("/")
        return bucket, key

    # ---- listing and stat --------------------------------------------------------------------------
    def _pages(self, bucket: str, prefix: str, delimiter: str | None) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if delimiter:
                kwargs["Delimiter"] = delimiter
            if token:
                kwargs["ContinuationToken"] = token
            page: dict[str, Any] = dict(self.client.list_objects_v2(**kwargs))
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        bucket, key = self._split(path)
        prefix = f"{key}/" if key else ""
        entries: list[dict[str, Any]] = []
        for page in self._pages(bucket, prefix, "/"):
            for item in page.get("CommonPrefixes") or []:
                entries.append({"name": f"{bucket}/{item['Prefix'].rstrip('/')}", "size": 0, "type": "directory"})
            for obj in page.get("Contents") or []:
                if obj["Key"] == prefix:
                    continue  # a "folder marker" object
                entries.append({"name": f"{bucket}/{obj['Key']}", "size": obj["Size"], "type": "file",
                                "LastModified": obj.get("LastModified")})
        if not entries and key:
            entries = [self.info(path)]  # a file lists as itself; a missing path raises
        return entries if detail else [e["name"] for e in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        bucket, key = self._split(path)
        if not key:
            try:
                self.client.head_bucket(Bucket=bucket)
            except Exception as exc:
                if _missing(exc):
                    raise FileNotFoundError(path) from exc
                raise
            return {"name": bucket, "size": 0, "type": "directory"}
        try:
            head = self.client.head_object(Bucket=bucket, Key=key)
            return {"name": f"{bucket}/{key}", "size": head["ContentLength"], "type": "file",
                    "LastModified": head.get("LastModified"), "ETag": head.get("ETag")}
        except Exception as exc:
            if not _missing(exc):
                raise
        found = self.client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/", MaxKeys=1)
        if found.get("KeyCount", 0):
            return {"name": f"{bucket}/{key}", "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """Every object under ``path`` with one flat listing (no walk per level)."""
        if maxdepth is not None or withdirs:
            return super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail, **kwargs)
        bucket, key = self._split(path)
        found: dict[str, dict[str, Any]] = {}
        try:
            if key and self.info(path)["type"] == "file":
                found[f"{bucket}/{key}"] = self.info(path)
        except FileNotFoundError:
            pass
        for page in self._pages(bucket, f"{key}/" if key else "", None):
            for obj in page.get("Contents") or []:
                name = f"{bucket}/{obj['Key']}"
                found[name] = {"name": name, "size": obj["Size"], "type": "file"}
        return found if detail else sorted(found)

    # ---- content -----------------------------------------------------------------------------------
    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        bucket, key = self._split(path)
        extra: dict[str, Any] = {}
        if start is not None or end is not None:
            extra["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        try:
            body = self.client.get_object(Bucket=bucket, Key=key, **extra)["Body"]
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(path) from exc
            raise
        data: bytes = body.read()
        return data

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        bucket, key = self._split(path)
        self.client.put_object(Bucket=bucket, Key=key, Body=value)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> Any:
        if "r" in mode:
            return io.BytesIO(self.cat_file(path))
        if "a" in mode:
            raise NotImplementedError("an object store cannot append; write one object per record")
        return _Upload(self, self._strip_protocol(path))

    # ---- delete / folders --------------------------------------------------------------------------
    def rm_file(self, path: str) -> None:
        bucket, key = self._split(path)
        self.client.delete_object(Bucket=bucket, Key=key)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = [path] if isinstance(path, str) else list(path)
        keys: set[str] = set()
        for one in paths:
            if recursive:
                keys.update(self.find(one))
            else:
                keys.add(self._strip_protocol(one))
        by_bucket: dict[str, list[str]] = {}
        for name in keys:
            bucket, key = self._split(name)
            if key:
                by_bucket.setdefault(bucket, []).append(key)
        for bucket, names in by_bucket.items():
            for i in range(0, len(names), 1000):
                chunk = [{"Key": k} for k in names[i:i + 1000]]
                self.client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders are key prefixes: nothing to create (the bucket must exist)."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Folders are key prefixes: nothing to create (the bucket must exist)."""

    def rmdir(self, path: str) -> None:
        """Folders are key prefixes: an empty one does not exist."""
