"""S3 as an :class:`~include.capabilities.object_store.ObjectStore`, through the Amazon provider's S3Hook session.

Reads are one GET per object, pinned with ``If-Match`` on the ETag and, in versioned buckets, with the
``VersionId``, streamed in chunks (:class:`S3Read`): a pin that no longer holds fails before any byte with 412
(or 404 for a deleted version) and the stream raises :class:`ObjectChangedError`; once the GET is answered, the
response is of that one version, so an overwrite during the read cannot mix versions. moto enforces both
conditions (``If-Match`` -> 412 PreconditionFailed, a deleted ``VersionId`` -> 404 NoSuchVersion), so the tests
exercise the real paths.

Writes spool the stream (to learn its MD5 first), then send one ``PutObject`` (up to ``CHUNK_SIZE``) or a
multipart upload whose parts each carry ``Content-MD5``; the whole-content MD5 is kept in the object's
metadata because multipart ETags are not MD5s. moto 5.2.5 accepts a wrong ``Content-MD5`` on
``PutObject`` and answers 500 on ``UploadPart`` (AWS answers 400 BadDigest to both), so that check is
not exercised by the tests.

Object Lock (``write(..., lock=ObjectLock(...))``, for immutable backups): the mode and retain-until date go
with ``PutObject`` / ``CreateMultipartUpload``; the version written is then read back and, when it carries no
(or a shorter) retention, ``PutObjectRetention`` sets it. That second step matters on moto 5.2.5, which drops
the lock settings of a multipart upload (AWS applies them); moto enforces a locked version against
``DeleteObject`` with its ``VersionId`` (403), as AWS does.
"""

from __future__ import annotations

import base64
import hashlib
import math
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, TypeVar
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from include.capabilities._spool import spooled
from include.capabilities.object_store import (
    CHUNK_SIZE,
    ObjectChangedError,
    ObjectInfo,
    ObjectLock,
    Pin,
    pinned_info,
)
from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code, http_status, is_not_found
from include.records import utc_iso
from include.targets import Target

#: Object metadata key holding the content MD5 we computed on write (S3 ETags are not always MD5s).
MD5_META = "content-md5-hex"
#: S3 allows at most this many parts per multipart upload: larger objects get larger parts.
MAX_PARTS = 10_000
_HEX_MD5 = re.compile(r"[0-9a-f]{32}")
#: Listing pages fetched ahead of the one being read (see :func:`_prefetched`).
LIST_PREFETCH = 2
#: Keys per listing page (``MaxKeys``); None: the service's default (1,000 on S3, also its maximum).
LIST_PAGE_KEYS: int | None = None
#: The key under which ``list_objects``' pages carry their raw ``<Contents>`` elements (see :func:`_split_contents`).
_RAW_CONTENTS = "RunbooksRawContents"
_T = TypeVar("_T")


def _b64(md5_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _changed(exc: BaseException) -> bool:
    """412 on the ETag condition, or the pinned object / version is gone."""
    return http_status(exc) == 412 or error_code(exc) == "PreconditionFailed" or is_not_found(exc)


def _version(response: Mapping[str, Any]) -> str | None:
    """The response's VersionId; None for unversioned objects.

    S3 names an object written while versioning was off (or suspended) version ``"null"``; that version
    is overwritten in place, so it identifies nothing and reads pin it by ETag instead. (moto also reports
    ``"null"`` from CompleteMultipartUpload in never-versioned buckets, then refuses it in HeadObject.)
    """
    version = response.get("VersionId")
    return str(version) if version and version != "null" else None


def _lock_args(lock: ObjectLock | None) -> dict[str, Any]:
    """``ObjectLockMode`` / ``ObjectLockRetainUntilDate`` of PutObject and CreateMultipartUpload."""
    if lock is None:
        return {}
    return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.retain_until}


def part_size(size: int) -> int:
    """Bytes per multipart part: ``CHUNK_SIZE``, grown (in MiB steps) to keep within ``MAX_PARTS``."""
    needed = math.ceil(size / MAX_PARTS)
    mib = 1024 * 1024
    return max(CHUNK_SIZE, math.ceil(needed / mib) * mib)


#: ``active`` is True in the thread fetching the pages of ``S3ObjectStore.list_objects``, and only there.
_RAW_LISTING = threading.local()


def _split_contents(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    """``before-parse`` handler of ListObjectsV2, active only in the thread of ``S3ObjectStore.list_objects`` (any other
    caller of the client gets botocore's usual pages): the page's ``<Contents>`` elements leave the body that
    botocore parses and travel raw under ``_RAW_CONTENTS`` (botocore adds the customized dict to the page).

    botocore then parses only the page's frame (IsTruncated, NextContinuationToken, EncodingType...), so the
    paginator can ask for the next page at once; :func:`_contents` reads the objects. A body without a plain
    ``<Contents>`` (an error, an empty page, another XML form) is left to botocore as it is.
    """
    body = response_dict.get("body")
    if not getattr(_RAW_LISTING, "active", False) or response_dict.get("status_code") != 200 \
            or not isinstance(body, bytes):
        return
    start, end = body.find(b"<Contents>"), body.rfind(b"</Contents>")
    if start < 0 or end < start:
        return
    end += len(b"</Contents>")
    customized_response_dict[_RAW_CONTENTS] = body[start:end]
    response_dict["body"] = body[:start] + body[end:]


def _contents(raw: bytes, *, url_encoded: bool) -> Iterator[tuple[str, int, str, str]]:
    """``(key, size, ETag, LastModified)`` of each ``<Contents>`` element of a ListObjectsV2 page (the C parser of
    ElementTree, then plain field reads). Keys are URL-decoded as botocore does when the page says
    ``EncodingType=url`` (botocore asks for it); anything but ``<Contents>`` elements is an error, never skipped."""
    root = ElementTree.fromstring(b"<Page>" + raw + b"</Page>")
    for element in root:
        if element.tag != "Contents":
            raise ValueError(f"unexpected <{element.tag}> among the <Contents> of an S3 listing")
        fields = {child.tag: child.text or "" for child in element}
        key = unquote_plus(fields["Key"]) if url_encoded else fields["Key"]
        yield key, int(fields["Size"]), fields["ETag"], fields["LastModified"]


def _prefetched(produce: Callable[[], Iterable[_T]], depth: int) -> Iterator[_T]:
    """The items of ``produce()``, produced by a background thread up to ``depth`` ahead of the consumer.

    An error of the producer is raised here, where the consumer reads; a consumer that stops early stops the
    producer (after the item it is producing).
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in produce():
                if not hand_over((False, item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((True, exc))
            return
        hand_over((True, None))

    worker = threading.Thread(target=run, name="s3-list-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            done, value = ready.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        worker.join()


class S3Read:
    """The content of one pinned version, as one ``GetObject`` streamed in pieces (an iterator of bytes).

    One GET, not a GET per range: S3 serves a single response from one version, so the pin (``VersionId`` and
    ``If-Match``) is checked once and a concurrent overwrite cannot reach this stream (moto builds the whole
    response at once, too); a stale pin fails before any byte (412 / 404 -> :class:`ObjectChangedError`). Fewer
    requests than ranges, and no server re-reading a large object for every range. A short body (connection cut)
    raises. ``served`` is the :class:`ObjectInfo` the GET's headers describe (version, ETag, SSE, metadata), set
    once the first piece has been requested: callers use it to learn whether the ETag is a content MD5 without a
    HEAD of their own.
    """

    def __init__(self, store: S3ObjectStore, container: str, key: str, pin: Pin, chunk_size: int) -> None:
        self.store, self.container, self.key, self.pin, self.chunk_size = store, container, key, pin, chunk_size
        self.served: ObjectInfo | None = None
        self._pieces: Iterator[bytes] | None = None

    def __iter__(self) -> S3Read:
        return self

    def __next__(self) -> bytes:
        if self._pieces is None:
            self._pieces = self._stream()
        return next(self._pieces)

    def _stream(self) -> Iterator[bytes]:
        container, key = self.container, self.key
        info = pinned_info(self.store, container, key, self.pin)
        location = f"s3://{container}/{key}"
        conditions: dict[str, str] = {}
        if info.version:
            conditions["VersionId"] = info.version
        if info.etag:
            conditions["IfMatch"] = _quoted(info.etag)
        if not conditions:
            raise ValueError(f"cannot pin a read of {location}: the ObjectInfo has neither version nor ETag")
        try:
            response = self.store.client.get_object(Bucket=container, Key=key, **conditions)
        except Exception as exc:
            if _changed(exc):
                raise ObjectChangedError(location, info.version or info.etag, error_code(exc) or str(exc)) from exc
            raise
        body = response["Body"]
        try:
            self.served = self.store._info(container, key, response)
            if self.served.size != info.size:
                raise ObjectChangedError(location, info.version or info.etag,
                                         f"{self.served.size} bytes served, {info.size} pinned (object size changed)")
            received = 0
            while data := body.read(self.chunk_size):
                received += len(data)
                yield data
                del data  # not held while the next piece downloads
            if received != info.size:
                raise ObjectChangedError(location, info.version or info.etag,
                                         f"the body ended after {received} of {info.size} bytes")
        finally:
            body.close()


class S3ObjectStore:
    """Objects in the S3 buckets of one AWS target.

    ``md5`` is the content MD5 only when provable: a single-part ETag of an object not encrypted with
    KMS or a customer key, or the MD5 this class stored in the metadata on write.
    """

    permissions = (
        "s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:AbortMultipartUpload",
        "s3:DeleteObject",
    )
    #: With ``write(..., lock=)`` (immutable backups) also: s3:PutObjectRetention, s3:GetObjectRetention,
    #: s3:GetBucketObjectLockConfiguration.
    lock_permissions = ("s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetBucketObjectLockConfiguration")
    #: ``write`` takes ``lock=`` (S3 Object Lock).
    supports_object_lock = True

    def __init__(self, target: Target, region: str | None = None) -> None:
        self.target = target
        self.region = region or target.regions[0]
        # A client of its own: the copier's threads share its connection pool (botocore's 10 connections), which
        # a second store on the same account and region must not have to share.
        self.client: Any = client_for(target, "s3", self.region, shared=False)
        # Acts only in list_objects' prefetch thread.
        self.client.meta.events.register("before-parse.s3.ListObjectsV2", _split_contents,
                                         unique_id="runbooks-s3-raw-contents")

    def _info(self, container: str, key: str, head: Mapping[str, Any]) -> ObjectInfo:
        etag = str(head["ETag"]).strip('"')
        metadata = {str(k): str(v) for k, v in dict(head.get("Metadata", {})).items()}
        sse = str(head.get("ServerSideEncryption", ""))
        plain = "-" not in etag and not sse.startswith("aws:kms") and "SSECustomerAlgorithm" not in head
        stored = metadata.get(MD5_META)
        md5 = etag if plain else (stored if stored and _HEX_MD5.fullmatch(stored) else None)
        return ObjectInfo(
            container=container, key=key, size=int(head["ContentLength"]), md5=md5, etag=etag,
            last_modified=utc_iso(head["LastModified"]), metadata=metadata, version=_version(head),
        )

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order (listing gives no MD5 or version: ``stat`` does).

        Pages are requested by a background thread up to ``LIST_PREFETCH`` ahead, and the next request goes out
        as soon as a page has arrived: the objects of one page are read here (:func:`_contents`, not botocore's
        generic parser: ~9 instead of ~26 ms of CPU per 1,000-object page, timestamps included) while S3 prepares
        the next, so a long listing costs about the service's time, not the service's plus ours.
        """
        def pages() -> Iterator[dict[str, Any]]:
            paging = {"PaginationConfig": {"PageSize": LIST_PAGE_KEYS}} if LIST_PAGE_KEYS else {}
            _RAW_LISTING.active = True  # this thread's ListObjectsV2 pages only: see _split_contents
            try:
                yield from self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=container, Prefix=prefix, **paging)
            finally:
                _RAW_LISTING.active = False

        for page in _prefetched(pages, LIST_PREFETCH):
            raw = page.get(_RAW_CONTENTS)
            if raw is None:  # the handler left the page to botocore (no <Contents>, or not the usual form)
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        container=container, key=item["Key"], size=int(item["Size"]),
                        etag=item["ETag"].strip('"'), last_modified=utc_iso(item["LastModified"]),
                    )
                continue
            for key, size, etag, modified in _contents(raw, url_encoded=page.get("EncodingType") == "url"):
                yield ObjectInfo(container=container, key=key, size=size, etag=etag.strip('"'),
                                 last_modified=utc_iso(modified))

    def _head(self, container: str, key: str, **conditions: str) -> ObjectInfo:
        head = self.client.head_object(Bucket=container, Key=key, **conditions)
        return self._info(container, key, head)

    def stat(self, container: str, key: str, version: str | None = None) -> ObjectInfo:
        """The object's (or one version's) metadata; ``KeyError`` when it does not exist."""
        try:
            return self._head(container, key, **({"VersionId": version} if version else {}))
        except Exception as exc:
            if is_not_found(exc):
                raise KeyError(f"s3://{container}/{key}" + (f"?versionId={version}" if version else "")) from exc
            raise

    def read(self, container: str, key: str, pin: Pin = None, *, chunk_size: int = CHUNK_SIZE) -> S3Read:
        """One GET of one version (``VersionId`` when the bucket keeps versions, and ``If-Match`` on the ETag),
        streamed in ``chunk_size`` pieces; the returned iterator's ``served`` is what the GET's headers said."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        return S3Read(self, container, key, pin, chunk_size)

    def write(
        self, container: str, key: str, chunks: Iterable[bytes], *, metadata: dict[str, str] | None = None,
        lock: ObjectLock | None = None,
    ) -> ObjectInfo:
        """Upload the stream (single PUT or multipart, every part MD5-checked by S3); return the stored version.

        ``lock``: write the version under S3 Object Lock retention (the bucket must have Object Lock enabled);
        the retention is read back and set again when the store dropped it.
        """
        handle, md5, size, owned = spooled(chunks)
        meta = {**(metadata or {}), MD5_META: md5}
        extra = _lock_args(lock)
        try:
            if size <= CHUNK_SIZE:
                response = self.client.put_object(
                    Bucket=container, Key=key, Body=handle.read(), Metadata=meta, ContentMD5=_b64(md5), **extra,
                )
            else:
                response = self._multipart(container, key, handle, size, meta, extra)
        finally:
            if owned:
                handle.close()
        written = self._written(container, key, response)
        if lock is not None:
            self._ensure_lock(written, lock)
        return written

    def object_lock_enabled(self, container: str) -> bool:
        """Whether the bucket has S3 Object Lock enabled (needed for ``write(..., lock=)``)."""
        try:
            config = self.client.get_object_lock_configuration(Bucket=container)
        except Exception as exc:
            if error_code(exc) == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        return bool(config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def retention(self, container: str, key: str, version: str | None = None) -> ObjectLock | None:
        """The Object Lock retention of the object (version), or None when it has none."""
        head = self.client.head_object(Bucket=container, Key=key, **({"VersionId": version} if version else {}))
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        return ObjectLock(mode=mode, retain_until=until) if mode and until else None

    def extend_lock(self, container: str, key: str, lock: ObjectLock) -> ObjectLock:
        """Lock the object's current version at least until ``lock.retain_until`` (never shortens); return its lock."""
        head = self.client.head_object(Bucket=container, Key=key)
        version = _version(head)
        if not version:
            raise ValueError(f"s3://{container}/{key}: Object Lock needs a versioned bucket with Object Lock enabled")
        mode, until = head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")
        if mode and until and until >= lock.retain_until.replace(microsecond=0):
            return ObjectLock(mode=mode, retain_until=until)
        self._ensure_lock(self._info(container, key, head), lock)
        return lock

    def _ensure_lock(self, written: ObjectInfo, lock: ObjectLock) -> None:
        """The version just written carries ``lock`` (at least until its date); set it when it does not."""
        if not written.version:
            raise ValueError(f"s3://{written.container}/{written.key}: Object Lock needs a versioned bucket with "
                             "Object Lock enabled")
        held = self.retention(written.container, written.key, written.version)
        if held is not None and held.mode == lock.mode and held.retain_until >= lock.retain_until.replace(microsecond=0):
            return
        self.client.put_object_retention(
            Bucket=written.container, Key=written.key, VersionId=written.version,
            Retention={"Mode": lock.mode, "RetainUntilDate": lock.retain_until},
        )
        held = self.retention(written.container, written.key, written.version)
        if held is None or held.mode != lock.mode:
            raise RuntimeError(f"s3://{written.container}/{written.key}: Object Lock retention was not applied")

    def _multipart(
        self, container: str, key: str, handle: IO[bytes], size: int, meta: dict[str, str], extra: dict[str, Any],
    ) -> Mapping[str, Any]:
        upload_id = self.client.create_multipart_upload(Bucket=container, Key=key, Metadata=meta, **extra)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            step = part_size(size)
            while data := handle.read(step):
                number = len(parts) + 1
                part_md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                response = self.client.upload_part(
                    Bucket=container, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
                    ContentMD5=_b64(part_md5),
                )
                parts.append({"PartNumber": number, "ETag": response["ETag"]})
                del data
            completed: Mapping[str, Any] = self.client.complete_multipart_upload(
                Bucket=container, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts},
            )
            return completed
        except BaseException as exc:
            try:
                self.client.abort_multipart_upload(Bucket=container, Key=key, UploadId=upload_id)
            except Exception as abort_exc:
                exc.add_note(f"abort_multipart_upload({upload_id}) failed too ({abort_exc!r}): parts remain")
            raise

    def _written(self, container: str, key: str, response: Mapping[str, Any]) -> ObjectInfo:
        """HEAD of exactly the version just written (its VersionId, or If-Match on its ETag)."""
        conditions = {"IfMatch": _quoted(str(response["ETag"]))}
        version = _version(response)
        if version:
            conditions["VersionId"] = version
        try:
            return self._head(container, key, **conditions)
        except Exception as exc:
            if _changed(exc):
                raise ObjectChangedError(
                    f"s3://{container}/{key}", str(response["ETag"]), "replaced or deleted right after it was written",
                ) from exc
            raise

    def delete(self, container: str, key: str) -> None:
        """Remove the object (in a versioned bucket: add a delete marker); no error when already gone."""
        self.client.delete_object(Bucket=container, Key=key)
