"""Incremental, verified copy of one policy's source prefix into its backup store.

Only through the object-store capability (:mod:`include.capabilities.object_store`), so one engine serves
every pair of clouds. What travels, and why:

1. **List** the source prefix (the listing's start is the point's "as of" time).
2. **Compare** each object with the previous point's manifest entry (:func:`unchanged`): same size and the
   same real content checksum (MD5 where the source lists one: GCS, Azure blobs with Content-MD5; else
   CRC32C where the cloud keeps one). S3 listings carry no MD5 (and a multipart / SSE-KMS ETag is none):
   there the test is size + ETag against the ETag the previous point recorded. An S3 ETag changes whenever
   the content changes (an overwrite with identical bytes may change it too: then the object is read again
   and deduplicated, never stored twice), so an equal ETag means the bytes the previous point stored.
   Unchanged objects reuse the blob the previous point names: nothing is read, nothing is written.
3. **Copy** each new or changed object (a bounded pool of ``concurrency`` threads), read **pinned to the
   version listed** (``read(..., pin=info)``), streamed chunk by chunk:

   - S3 listings give no MD5 but the ETag: a single-part ETag (32 hex digits) is taken as the MD5 to copy by,
     without a HEAD, once the read's own GET headers prove it (not SSE-KMS / SSE-C; else the HEAD path below);
     the destination's MD5 of what it stored must then equal it (step 4).
   - MD5 known before reading (GCS, Azure, S3 single-part non-KMS or written by this project): the blob key
     ``blobs/<md5[:2]>/<md5>-<size>`` is known; when that blob already exists with that MD5 (stored by an
     earlier point, an interrupted run, or another key with the same content) nothing is uploaded
     (**deduplicated**); else the stream goes straight into ``write``.
   - MD5 unknown (S3 multipart / SSE-KMS objects this project did not write): the stream is hashed while
     it is spooled to a temporary file (at most ``SPOOL_MEMORY`` in memory), then the blob key is known and
     the file is uploaded (or not, when the blob exists).

   An object overwritten while it is read raises ``ObjectChangedError`` (never mixed bytes): it is copied
   once more, pinned to its new version; a second change (or a deletion) records it as **failed**.
4. **Verify**: an object counts as backed up only when the destination's recorded MD5 and size equal the
   expected ones (and the CRC32C too when both sides know it). A blob that does not verify is deleted.

The caller writes the manifest only when every object verified (:mod:`include.backup.runner`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from include.backup.manifest import ManifestEntry, blob_key, write_object
from include.capabilities._spool import KnownChunks, SpooledChunks, spool
from include.capabilities.object_store import CHUNK_SIZE, ObjectChangedError, ObjectInfo, ObjectLock, ObjectStore
from include.clouds.errors import classify
from include.redaction import error_text

log = logging.getLogger(__name__)

Status = Literal["copied", "deduplicated", "reused", "failed", "not_attempted"]


def brief_error(exc: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line, scrubbed: Azure's multi-line errors without request ids and XML bodies."""
    lines = [line.strip() for line in error_text(exc, limit=4000).splitlines()]
    kept = [line for line in lines if line and not line.startswith(("RequestId:", "Time:", "Content:", "<"))]
    text = " ".join(kept)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VerificationError(RuntimeError):
    """The destination recorded other bytes than the source's (checksum or size mismatch)."""


@dataclass(frozen=True)
class Place:
    """A bucket / container prefix in one object store (a policy's source, or its backup store)."""

    store: ObjectStore
    container: str
    prefix: str
    label: str  # for messages and audit: "<target>:<container>/<prefix>"

    def url(self, key: str) -> str:
        return f"{self.label.split(':', 1)[0]}:{self.container}/{key}"


# ---- deciding what travels -------------------------------------------------------------------------------
def unchanged(info: ObjectInfo, previous: ManifestEntry | None) -> tuple[bool, str]:
    """Whether the listed object holds the bytes the previous point stored, and by which test."""
    if previous is None:
        return False, "new"
    if info.size != previous.size:
        return False, "changed (size)"
    if info.md5 and previous.md5:
        return info.md5 == previous.md5, "unchanged (md5)" if info.md5 == previous.md5 else "changed (md5)"
    if info.crc32c and previous.crc32c:
        same = info.crc32c == previous.crc32c
        return same, "unchanged (crc32c)" if same else "changed (crc32c)"
    if info.etag and previous.source_etag:
        # S3 listings: no MD5; the ETag changes with the content (multipart / KMS ETags included).
        same = info.etag == previous.source_etag
        return same, "unchanged (size + etag)" if same else "changed (etag)"
    return False, "changed (no checksum to compare)"


@dataclass(frozen=True)
class Planned:
    """One listed object and what the run does with it."""

    info: ObjectInfo
    action: Literal["reuse", "copy"]
    reason: str
    previous: ManifestEntry | None = None

    def describe(self) -> str:
        return f"{self.action} {self.info.key} ({self.info.size} bytes): {self.reason}"


@dataclass(frozen=True)
class CopyPlan:
    """What one run of a policy copies and reuses, decided from the listing and the previous point."""

    listed: tuple[ObjectInfo, ...]
    items: tuple[Planned, ...]
    previous_point: str | None
    started_at: datetime

    @property
    def to_copy(self) -> list[Planned]:
        return [item for item in self.items if item.action == "copy"]

    @property
    def to_reuse(self) -> list[Planned]:
        return [item for item in self.items if item.action == "reuse"]

    @property
    def bytes_to_copy(self) -> int:
        return sum(item.info.size for item in self.to_copy)

    @property
    def bytes_total(self) -> int:
        return sum(info.size for info in self.listed)


def list_source(source: Place) -> Iterator[ObjectInfo]:
    """Every object under the source prefix, in key order (as the store lists them: a page at a time)."""
    return iter(source.store.list_objects(source.container, source.prefix))


def plan_copy(
    listed: Iterable[ObjectInfo], previous: dict[str, ManifestEntry], *, started_at: datetime,
    previous_point: str | None,
) -> CopyPlan:
    """Decide, per object of the source listing (:func:`list_source`), reuse (unchanged) or copy (new / changed).

    ``listed`` may be the listing as it streams: each object is decided when it arrives, so the decisions of one
    page overlap the store's answer to the next request (a large unchanged prefix costs about the listing).
    """
    infos: list[ObjectInfo] = []
    items: list[Planned] = []
    for info in listed:
        infos.append(info)
        prev = previous.get(info.key)
        same, reason = unchanged(info, prev)
        items.append(Planned(info, "reuse" if same else "copy", reason, prev))
    return CopyPlan(listed=tuple(infos), items=tuple(items), previous_point=previous_point, started_at=started_at)


def reused_entry(info: ObjectInfo, previous: ManifestEntry) -> ManifestEntry:
    """The previous point's entry for an unchanged object, brought up to the version now listed (the previous
    entry itself when the listing adds nothing new: the usual case, and 10,000 copies fewer per unchanged run)."""
    crc32c = previous.crc32c or info.crc32c
    version = info.version or previous.source_version
    etag = info.etag or previous.source_etag
    modified = info.last_modified or previous.last_modified
    if (crc32c, version, etag, modified) == (previous.crc32c, previous.source_version, previous.source_etag,
                                             previous.last_modified):
        return previous
    return replace(previous, crc32c=crc32c, source_version=version, source_etag=etag, last_modified=modified)


# ---- copying one object ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What happened to one object in one run."""

    key: str
    status: Status
    size: int
    entry: ManifestEntry | None = None
    bytes_copied: int = 0  # uploaded to the backup store
    bytes_read: int = 0  # read from the source
    attempts: int = 0
    error: str | None = None
    kind: str | None = None  # unreachable | access_denied | changed | verification | error

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["entry"] = self.entry.to_dict() if self.entry else None
        return data


#: A single-part S3 ETag: 32 hex digits (a multipart one ends in ``-<parts>``).
_PLAIN_ETAG = re.compile(r"[0-9a-f]{32}")


class _NeedsHead(Exception):
    """The listing's ETag cannot be taken for the content MD5 (yet): stat the object first."""


def _etag_is_md5(stream: Iterable[bytes], candidate: str) -> Iterator[bytes]:
    """``stream``, once the source's answer proved ``candidate`` (its ETag) is the content MD5; else _NeedsHead.

    Checked when the first piece arrives (the GET's headers are known then), before any piece is passed on, so a
    destination has received nothing when the copy falls back to the HEAD path.
    """
    started = False
    for chunk in stream:
        if not started:
            _check_served(stream, candidate)
            started = True
        yield chunk
        del chunk
    if not started:
        _check_served(stream, candidate)


def _check_served(stream: Iterable[bytes], candidate: str) -> None:
    served: ObjectInfo | None = getattr(stream, "served", None)
    if served is None:
        raise _NeedsHead("this store's read does not say what it served")
    if served.md5 != candidate:
        raise _NeedsHead("its ETag is not a content MD5 (SSE-KMS / SSE-C)")


def _counted(chunks: Iterable[bytes], counter: list[int]) -> Iterator[bytes]:
    for chunk in chunks:
        counter[0] += len(chunk)
        yield chunk
        del chunk


def _stat_or_none(place: Place, key: str) -> ObjectInfo | None:
    try:
        return place.store.stat(place.container, key)
    except KeyError:
        return None


class BlobLocks:
    """One lock per blob key: two objects with the same content in one run upload it once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


@dataclass
class Copier:
    """Copies objects from ``source`` into the content-addressed blobs of ``destination``."""

    source: Place
    destination: Place
    policy: str
    lock: ObjectLock | None = None
    chunk_size: int = CHUNK_SIZE
    blob_locks: BlobLocks = field(default_factory=BlobLocks)
    #: The blobs in the backup store (from one listing, see :meth:`index_blobs`); None: ``stat`` each candidate.
    blobs: dict[str, ObjectInfo] | None = None

    def index_blobs(self) -> int:
        """List the store's blobs once, so that deduplication asks the store only about blobs that exist.

        One listing request per 1,000 blobs instead of one ``stat`` per object to copy. Only this run writes
        blobs while it holds the policy's lease, and it adds what it writes.
        """
        prefix = f"{self.destination.prefix}blobs/"
        self.blobs = {i.key: i for i in self.destination.store.list_objects(self.destination.container, prefix)}
        return len(self.blobs)

    def _existing(self, blob: str, md5: str, size: int) -> ObjectInfo | None:
        """The blob when it exists with exactly this content (its recorded MD5 and size), else None."""
        if self.blobs is None:
            found = _stat_or_none(self.destination, blob)
        else:
            found = self.blobs.get(blob)
            if found is not None and found.md5 is None:  # S3 listings carry no MD5: ask for it
                found = _stat_or_none(self.destination, blob)
        if found is not None and found.md5 == md5 and found.size == size:
            return found
        return None

    def _stored(self, written: ObjectInfo) -> None:
        if self.blobs is not None:
            self.blobs[written.key] = written

    def copy(self, info: ObjectInfo) -> Outcome:
        """Copy one object (pinned to ``info``); retry once, pinned to the new version, if it changes meanwhile."""
        pin = info
        for attempt in (1, 2):
            try:
                return replace(self._copy_once(pin), attempts=attempt)
            except ObjectChangedError as exc:
                if attempt == 2:
                    return Outcome(info.key, "failed", info.size, attempts=attempt, kind="changed",
                                   error=f"changed again while being copied: {brief_error(exc)}")
                log.info("%s changed while being copied; copying its new version", self.source.url(info.key))
                try:
                    pin = self.source.store.stat(self.source.container, info.key)
                except KeyError:
                    return Outcome(info.key, "failed", info.size, attempts=attempt, kind="changed",
                                   error="deleted while being backed up")
                except Exception as stat_exc:
                    return self._failed(info, stat_exc, attempt)
            except Exception as exc:
                return self._failed(info, exc, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, info: ObjectInfo, exc: BaseException, attempt: int) -> Outcome:
        kind = "verification" if isinstance(exc, VerificationError) else classify(exc)
        log.warning("%s: %s", self.source.url(info.key), brief_error(exc))
        return Outcome(info.key, "failed", info.size, attempts=attempt, kind=kind, error=brief_error(exc))

    def _copy_once(self, listed: ObjectInfo) -> Outcome:
        info = listed
        if info.md5 is None and listed.etag and _PLAIN_ETAG.fullmatch(listed.etag):
            try:
                return self._copy_listed_etag(listed, listed.etag)
            except _NeedsHead as why:
                log.debug("%s: %s; asking the source", self.source.url(listed.key), why)
        if info.md5 is None:
            # Listings without an MD5 (S3): a HEAD may know it (single-part non-KMS ETag, or the MD5 this
            # project stored) and names the version id. It must still be the version listed.
            stated = self.source.store.stat(self.source.container, info.key)
            if listed.etag and stated.etag != listed.etag:
                raise ObjectChangedError(self.source.url(info.key), listed.etag, f"now ETag {stated.etag}")
            info = replace(stated, crc32c=stated.crc32c or listed.crc32c)
        if info.md5:
            return self._copy_known(info)
        return self._copy_hashed(info)

    def _metadata(self) -> dict[str, str]:
        return {"backup_policy": self.policy}  # Azure metadata names are C identifiers

    def _copy_known(self, info: ObjectInfo) -> Outcome:
        """The content MD5 is known: dedup against the blob, else stream the pinned read into it."""
        assert info.md5 is not None
        blob = blob_key(self.destination.prefix, info.md5, info.size)
        read = [0]
        with self.blob_locks(blob):
            existing = self._existing(blob, info.md5, info.size)
            if existing is not None:
                return Outcome(info.key, "deduplicated", info.size, entry=self._entry(info, blob, existing))
            chunks = KnownChunks(_counted(
                self.source.store.read(self.source.container, info.key, pin=info, chunk_size=self.chunk_size), read,
            ), info.md5, info.size)
            written = write_object(self.destination.store, self.destination.container, blob, chunks,
                                   metadata=self._metadata(), lock=self.lock)
            self._verify(written, info.md5, info.size, info.crc32c)
            self._stored(written)
        return Outcome(info.key, "copied", info.size, entry=self._entry(info, blob, written),
                       bytes_copied=written.size, bytes_read=read[0])

    def _copy_listed_etag(self, listed: ObjectInfo, candidate: str) -> Outcome:
        """Copy an object whose listing gave no MD5 but a single-part ETag (S3), without a HEAD first.

        Such an ETag is the content MD5 unless the object is encrypted with SSE-KMS / SSE-C, which only the object's
        own headers tell. The read's GET answers with those headers (``served``): before the first byte is handed
        to the destination, :func:`_etag_is_md5` requires them to prove the ETag is the content MD5 (the rule of a
        HEAD); else :class:`_NeedsHead` and the caller falls back to HEAD + hashing. The read is pinned to the
        listed ETag (``If-Match``), and the version actually read (the GET's ``VersionId``) goes into the manifest.
        Deduplication against an existing blob is left to the HEAD path: it must rest on a proven MD5 before
        anything is read.
        """
        blob = blob_key(self.destination.prefix, candidate, listed.size)
        read = [0]
        with self.blob_locks(blob):
            if self._existing(blob, candidate, listed.size) is not None:
                raise _NeedsHead("its blob may exist already")
            stream = self.source.store.read(self.source.container, listed.key, pin=listed, chunk_size=self.chunk_size)
            chunks = KnownChunks(_counted(_etag_is_md5(stream, candidate), read), candidate, listed.size)
            written = write_object(self.destination.store, self.destination.container, blob, chunks,
                                   metadata=self._metadata(), lock=self.lock)
            # What proves the match: the destination's own MD5 of the bytes it stored (GCS md5Hash, the MD5 Azure
            # verified / computed, S3's MD5 check) equals the source's MD5, and the sizes agree.
            self._verify(written, candidate, listed.size, listed.crc32c)
            self._stored(written)
        served: ObjectInfo = stream.served  # type: ignore[attr-defined]  # _etag_is_md5 checked it is there
        info = replace(served, crc32c=served.crc32c or listed.crc32c)
        return Outcome(listed.key, "copied", listed.size, entry=self._entry(info, blob, written),
                       bytes_copied=written.size, bytes_read=read[0])

    def _copy_hashed(self, info: ObjectInfo) -> Outcome:
        """No content MD5 known upfront (S3 multipart / SSE-KMS): hash while spooling, then upload."""
        handle, md5, size = spool(
            self.source.store.read(self.source.container, info.key, pin=info, chunk_size=self.chunk_size)
        )
        try:
            blob = blob_key(self.destination.prefix, md5, size)
            known = replace(info, md5=md5, size=size)
            with self.blob_locks(blob):
                existing = self._existing(blob, md5, size)
                if existing is not None:
                    return Outcome(info.key, "deduplicated", size, entry=self._entry(known, blob, existing),
                                   bytes_read=size)
                written = write_object(self.destination.store, self.destination.container, blob,
                                       SpooledChunks(handle, md5, size, self.chunk_size), metadata=self._metadata(),
                                       lock=self.lock)
                self._verify(written, md5, size, info.crc32c)
                self._stored(written)
        finally:
            handle.close()
        return Outcome(info.key, "copied", size, entry=self._entry(known, blob, written), bytes_copied=written.size,
                       bytes_read=size)

    def _verify(self, written: ObjectInfo, md5: str, size: int, crc32c: str | None) -> None:
        """The destination recorded exactly the expected bytes, else the blob is removed and the copy fails."""
        problems = []
        if written.size != size:
            problems.append(f"size {written.size} != {size}")
        if written.md5 != md5:
            problems.append(f"md5 {written.md5} != {md5}")
        if crc32c and written.crc32c and written.crc32c != crc32c:
            problems.append(f"crc32c {written.crc32c} != {crc32c}")
        if problems:
            try:
                self.destination.store.delete(self.destination.container, written.key)
            finally:
                raise VerificationError(f"{self.destination.url(written.key)} did not verify: {', '.join(problems)}")

    def _entry(self, info: ObjectInfo, blob: str, stored: ObjectInfo) -> ManifestEntry:
        assert info.md5 is not None
        return ManifestEntry(
            key=info.key, size=info.size, md5=info.md5, blob=blob, crc32c=info.crc32c or stored.crc32c,
            source_version=info.version, source_etag=info.etag, last_modified=info.last_modified,
        )


# ---- the pool ----------------------------------------------------------------------------------------------
#: Failure kinds after which nothing new is dispatched: the store is down or refuses us, more tries only wait.
STOP_KINDS = frozenset({"unreachable", "access_denied"})


def copy_all(
    copier: Copier,
    items: Iterable[ObjectInfo],
    *,
    concurrency: int,
    should_stop: Callable[[], str | None] = lambda: None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Copy every object with at most ``concurrency`` in flight; return one outcome per object, in input order.

    Dispatching stops (the rest is ``not_attempted``) after a failure meaning the store is unreachable or
    denies access, or when ``should_stop`` returns a reason (e.g. the lease on the policy was lost).
    Copies already in flight finish.
    """
    pending = list(items)
    outcomes: dict[str, Outcome] = {}
    stop_reason: str | None = None
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="backup-copy") as pool:
        running: dict[Future[Outcome], ObjectInfo] = {}
        queue = iter(pending)
        exhausted = False
        while True:
            while not exhausted and stop_reason is None and len(running) < concurrency:
                stop_reason = should_stop()
                if stop_reason:
                    break
                info = next(queue, None)
                if info is None:
                    exhausted = True
                    break
                running[pool.submit(copier.copy, info)] = info
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                info = running.pop(future)
                outcome = future.result()
                outcomes[info.key] = outcome
                if progress is not None:
                    progress(outcome)
                if outcome.status == "failed" and outcome.kind in STOP_KINDS and stop_reason is None:
                    stop_reason = f"stopped after {info.key}: {outcome.kind}: {outcome.error}"
    for info in pending:
        if info.key not in outcomes:
            outcomes[info.key] = Outcome(info.key, "not_attempted", info.size, error=stop_reason, kind="not_attempted")
    log.info("copied %d objects in %.1f s", len(pending), time.monotonic() - started)
    return [outcomes[info.key] for info in pending]
