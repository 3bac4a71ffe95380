"""The backup store: content-addressed blobs plus one manifest per point in time.

Layout under a policy's destination (``<container>/<prefix>``)::

    blobs/<md5[:2]>/<md5>-<size>        the bytes of one object version, stored once whatever its key
    points/<point id>.json              one manifest per backup run: a restorable point in time

- A manifest lists every object of the source as it was read (key, size, content MD5, CRC32C where the
  cloud keeps one, the source version / generation that was read, the blob holding its bytes). Unchanged
  objects point at the blob an earlier run stored: stored once, every retained point restores completely.
- A manifest is written **last**, after every blob it names is verified at the destination: a run that
  stops half-way leaves blobs no manifest names (the next run reuses them, retention removes them), never
  a manifest that points at missing data.
- The point id starts with the UTC time the source listing began (``20261130T061500Z-<run id>``), so ids
  sort by time and a point restores the source "as of" that time.

Blobs are keyed by content MD5 and size. The MD5 is always a real content MD5: the source's own where the
cloud keeps one (GCS, Azure with Content-MD5, single-part non-KMS S3), otherwise computed while copying
(S3 multipart / SSE-KMS ETags are not MD5s).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.capabilities.object_store import ObjectInfo, ObjectLock, ObjectStore
from include.paths import safe_segment

FORMAT = "runbooks.backup.manifest/1"
_POINT_ID = re.compile(r"^(\d{8}T\d{6}Z)-(.+)$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")


class ManifestError(ValueError):
    """A manifest is malformed, or a requested point in time does not exist."""


def blob_key(prefix: str, md5: str, size: int) -> str:
    """Where the bytes of a ``size``-byte object with content MD5 ``md5`` live in the backup store."""
    if not _HEX32.match(md5):
        raise ManifestError(f"not a hex MD5: {md5!r}")
    return f"{prefix}blobs/{md5[:2]}/{md5}-{size}"


def points_prefix(prefix: str) -> str:
    return f"{prefix}points/"


def point_key(prefix: str, point_id: str) -> str:
    return f"{points_prefix(prefix)}{point_id}.json"


def new_point_id(as_of: datetime, run_id: str) -> str:
    """``<UTC yyyymmddTHHMMSSZ>-<run id made path-safe>``: sortable by time, unique per run."""
    return f"{as_of.astimezone(UTC):%Y%m%dT%H%M%SZ}-{safe_segment(run_id)[:120]}"


def point_time(point_id: str) -> datetime:
    """The "as of" time encoded in a point id."""
    match = _POINT_ID.match(point_id)
    if not match:
        raise ManifestError(f"not a point id: {point_id!r}")
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class ManifestEntry:
    """One source object as it was backed up."""

    key: str  # the object's key in the source, relative to nothing (the full key)
    size: int
    md5: str  # real content MD5, hex
    blob: str  # the blob's key in the backup store (blob_key)
    crc32c: str | None = None
    source_version: str | None = None  # S3 VersionId / GCS generation / Azure versionId that was read
    source_etag: str | None = None
    last_modified: str | None = None  # of the source object, ISO-8601 UTC

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ENTRY_FIELDS}  # flat: no asdict deep copy

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestEntry:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


_ENTRY_FIELDS = tuple(ManifestEntry.__dataclass_fields__)


@dataclass(frozen=True)
class Manifest:
    """One restorable point in time of one policy."""

    policy: str
    point_id: str
    run_id: str
    started_at: str  # ISO-8601 UTC: when the source listing began (the point's "as of" time)
    finished_at: str  # ISO-8601 UTC: when the manifest was written
    source: dict[str, Any]  # Location fields
    destination: dict[str, Any]
    entries: tuple[ManifestEntry, ...]
    #: Counters of the run that wrote it: listed, copied, reused, bytes_copied, seconds...
    stats: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))

    @property
    def by_key(self) -> dict[str, ManifestEntry]:
        return {entry.key: entry for entry in self.entries}

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries)

    def to_json(self) -> str:
        # Field by field, not dataclasses.asdict (which deep-copies every entry: a second of 10,000 entries).
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "entries"}
        data["entries"] = [entry.to_dict() for entry in self.entries]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ManifestError(f"unknown manifest format {data.get('format')!r} (expected {FORMAT})")
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            fields["entries"] = tuple(ManifestEntry.from_dict(e) for e in data["entries"])
            return cls(**fields)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"not a backup manifest: {exc}") from exc


# ---- reading and writing manifests in a backup store ----------------------------------------------------
def list_points(store: ObjectStore, container: str, prefix: str) -> list[str]:
    """The point ids stored under ``prefix``, oldest first."""
    found = []
    for info in store.list_objects(container, points_prefix(prefix)):
        name = info.key[len(points_prefix(prefix)):]
        if name.endswith(".json") and "/" not in name and _POINT_ID.match(name[:-5]):
            found.append(name[:-5])
    return sorted(found)


def read_manifest(store: ObjectStore, container: str, prefix: str, point_id: str) -> Manifest:
    try:
        raw = b"".join(store.read(container, point_key(prefix, point_id)))
    except KeyError as exc:
        raise ManifestError(f"no point {point_id} under {container}/{prefix}") from exc
    return Manifest.from_json(raw)


def write_object(
    store: ObjectStore, container: str, key: str, chunks: Iterable[bytes], *, metadata: dict[str, str],
    lock: ObjectLock | None = None,
) -> ObjectInfo:
    """``store.write``, under S3 Object Lock retention when ``lock`` is given (stores with ``supports_object_lock``)."""
    if lock is None:
        return store.write(container, key, chunks, metadata=metadata)
    if not getattr(store, "supports_object_lock", False):
        raise ManifestError(f"{container}/{key}: this store cannot write with Object Lock (S3 destinations only)")
    writer: Any = store  # S3ObjectStore.write(..., lock=): not part of the ObjectStore protocol
    written: ObjectInfo = writer.write(container, key, chunks, metadata=metadata, lock=lock)
    return written


def write_manifest(
    store: ObjectStore, container: str, prefix: str, manifest: Manifest, *, lock: ObjectLock | None = None,
) -> str:
    """Store the manifest (the last write of a backup run) and check what the store recorded; return its key.

    ``lock``: write it under S3 Object Lock retention (immutable backups).
    """
    key = point_key(prefix, manifest.point_id)
    body = manifest.to_json().encode()
    written = write_object(store, container, key, [body], metadata={"format": FORMAT}, lock=lock)
    expected = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if written.size != len(body) or (written.md5 is not None and written.md5 != expected):
        raise ManifestError(f"{container}/{key}: the store recorded {written.size} bytes, md5 {written.md5}; "
                            f"expected {len(body)} bytes, md5 {expected}")
    return key


_HEX8 = re.compile(r"^[0-9a-f]{8}$")


def structure_problems(manifest: Manifest, listed_keys: Iterable[str] | None, prefix: str) -> list[str]:
    """What is structurally wrong with ``manifest`` (empty: nothing), in plain Python, without great-expectations.

    The rules of :mod:`include.backup.validation`'s structural checks (unique keys, a hex MD5 and, where present, an
    8-hex-digit CRC32C per entry, sizes >= 0, each blob named by its content, exactly the keys listed): the backup
    run applies them before it writes a manifest, great-expectations validates the stored manifest afterwards.
    """
    problems: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    for entry in manifest.entries:
        if entry.key in seen:
            duplicates.append(entry.key)
        seen.add(entry.key)
        if not isinstance(entry.md5, str) or not _HEX32.match(entry.md5):
            problems.append(f"{entry.key}: not a hex MD5: {entry.md5!r}")
        elif entry.crc32c is not None and not _HEX8.match(str(entry.crc32c)):
            problems.append(f"{entry.key}: not a hex CRC32C: {entry.crc32c!r}")
        elif entry.size < 0:
            problems.append(f"{entry.key}: negative size {entry.size}")
        elif entry.blob != blob_key(prefix, entry.md5, entry.size):
            problems.append(f"{entry.key}: blob {entry.blob!r} is not the blob its MD5 and size name")
    if duplicates:
        problems.append(f"{len(duplicates)} duplicate keys, e.g. {sorted(duplicates)[:3]}")
    if listed_keys is not None:
        listed = set(listed_keys)
        missing, extra = sorted(listed - seen), sorted(seen - listed)
        if missing or extra or len(manifest.entries) != len(listed):
            problems.append(f"not complete against the source listing: missing {missing[:3]} ({len(missing)}), "
                            f"not listed {extra[:3]} ({len(extra)})")
    return problems[:20]


def _run_of(point_id: str) -> str | None:
    match = _POINT_ID.match(point_id)
    return match.group(2) if match else None


def select_point(point_ids: Iterable[str], at: str | datetime | None = None) -> str:
    """The point to restore: the newest one (``at`` None), the one of a run id / point id, or the newest at
    or before a timestamp (ISO-8601). A clear :class:`ManifestError` when none matches."""
    points = sorted(point_ids)
    if not points:
        raise ManifestError("no restorable point exists yet: run the backup first")
    if at is None or at == "":
        return points[-1]
    if isinstance(at, str):
        exact = [p for p in points if p == at or _run_of(p) == safe_segment(at)]
        if exact:
            return exact[-1]
        try:
            when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise ManifestError(f"no point with id or run id {at!r}; points: {', '.join(points[-5:])}") from None
    else:
        when = at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    earlier = [p for p in points if point_time(p) <= when]
    if not earlier:
        raise ManifestError(f"no point at or before {when:%Y-%m-%dT%H:%M:%SZ}; the oldest is {points[0]}")
    return earlier[-1]


def referenced_blobs(manifests: Iterable[Manifest]) -> set[str]:
    """Every blob key the given manifests need."""
    return {entry.blob for manifest in manifests for entry in manifest.entries}


def iter_entries(manifest: Manifest, prefix_filter: str = "") -> Iterator[ManifestEntry]:
    """The manifest's entries whose key starts with ``prefix_filter``, in key order."""
    for entry in sorted(manifest.entries, key=lambda e: e.key):
        if entry.key.startswith(prefix_filter):
            yield entry
