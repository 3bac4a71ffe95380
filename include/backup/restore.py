"""Restore objects from a backup point in time: the ``restore_objects`` runbook's own part, and the restore
engine ``restore_drill`` reuses.

A restore is a change set of the change engine (:mod:`include.changes`): one :class:`RestoreObjectStep` per
object of the point (after the prefix filter), on the destination object. Its state is the destination
object's size and content MD5 (read through the object store: the MD5 the cloud recorded, or the bytes
hashed when the cloud keeps none), its desired state the manifest entry's size and MD5. So each object is

- **written**: absent at the destination;
- **overwritten**: present with other content (destructive: approval first, see below);
- **left alone**: already identical (no change planned, nothing sent).

Objects at the destination that the point does not hold are **left alone** too (counted and listed in the
plan): a restore never deletes.

**Approval rule** (:func:`~include.changes.engine.destructive_changes`): a restore that would replace the
bytes of an existing object waits for a human (Airflow HITL) before anything is written; a restore that
only writes objects that do not exist yet (a new scratch prefix, objects deleted since the point) runs
without asking. Replacing bytes is destructive wherever it happens, so an overwrite in a scratch location
named by hand asks too; the drill's scratch prefixes are new and empty, so drills never wait.

**Apply** streams the blob from the backup store (a read pinned to the version stat-ed first) into the
destination key, hashing the bytes on the way: a blob whose bytes do not match the manifest's MD5 and
size makes the stream fail at its end, before the destination write commits (``ObjectStore.write``
consumes the whole stream before it replaces anything), so a corrupted backup never overwrites anything.
The destination's recorded MD5 must then equal the manifest's. An object that changed between the plan
(what was approved) and apply is refused, not overwritten. Memory per copy in flight: one chunk
(``CHUNK_SIZE``) plus the write's spool buffer, whatever the object size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from include.backup.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    iter_entries,
    list_points,
    read_manifest,
    select_point,
)
from include.backup.policies import BackupConfig, BackupPolicy, BackupPolicyError, Location, load_policies
from include.capabilities.object_store import ObjectInfo, ObjectStore, hash_stream
from include.changes.engine import Item, StepCache, changes, destructive_changes
from include.changes.model import Applied, Change, ChangeError, RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording
from include.changes.runbook import ChangeRunbook, ChangeSet, request_problems
from include.changes.step import LifecycleStep, State
from include.clouds.errors import is_not_found
from include.records import ResourceRecord
from include.targets import Target, TargetsConfig, TargetsError, load_targets

STEP_ID = "backup.restore_object"
#: Metadata set on each restored object: the point in time its bytes came from (a valid Azure metadata name).
RESTORED_FROM_META = "runbooks_restored_from"
#: How many keys of objects at the destination that are not in the point the plan lists by name.
NOT_IN_POINT_SAMPLE = 50
#: The form's ``destination``: ``original`` or ``<target>:<container>[/<prefix>]``.
DESTINATION_PATTERN = r"^(original|[a-z0-9][a-z0-9-]{0,62}:[A-Za-z0-9][A-Za-z0-9._-]{2,62}(/.*)?)$"
_DESTINATION = re.compile(DESTINATION_PATTERN)

WORDING = Wording(
    title="Restore objects from a backup point in time",
    results_dir="restore",
    noun="object restore",
    nouns="object restores",
    done_status="restored",
    nothing_status="nothing_to_restore",
    in_state="identical to the point, left alone",
)

#: cloud -> (resource type of one object, service, URL scheme of object_store locations)
OBJECT_KINDS: dict[str, tuple[str, str, str]] = {
    "aws": ("aws.s3.object", "s3", "s3"),
    "gcp": ("gcp.storage.object", "storage", "gs"),
    "azure": ("azure.storage.blob", "storage", "azure"),
}


class RestoreError(RequestError):
    """The restore request is wrong (unknown policy, point, target, an empty selection...): never retried."""


# ---- where a restore writes --------------------------------------------------------------------------
@dataclass(frozen=True)
class Destination:
    """Where restored objects go: each source key ``k`` is written to ``<container>/<prefix><k>``.

    The original location is the policy's source bucket / container with an empty prefix: every object goes
    back to its own key. A scratch location keeps the whole source key under its prefix.
    """

    target: str
    container: str
    prefix: str = ""
    region: str | None = None
    original: bool = False

    def key_for(self, source_key: str) -> str:
        return f"{self.prefix}{source_key}"

    def describe(self) -> str:
        where = f"{self.target}:{self.container}/{self.prefix}"
        return f"{where} (the original location)" if self.original else f"{where} (scratch)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Destination:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _overlaps(a: str, b: str) -> bool:
    """Two key prefixes select common keys (one is a prefix of the other)."""
    return a.startswith(b) or b.startswith(a)


def parse_destination(value: str | None, policy: BackupPolicy, targets: TargetsConfig) -> Destination:
    """``original`` (or empty) = the policy's source location; ``<target>:<container>[/<prefix>]`` = a scratch one.

    A scratch location is refused when it lies inside the policy's source (the next backup would copy the
    restored copy: use ``original`` to restore in place) or could write into the backup store itself.
    """
    source = policy.source
    if value in (None, "", "original"):
        return Destination(source.target, source.container, "", source.region, original=True)
    assert value is not None
    if not _DESTINATION.match(value):
        raise RestoreError(f"destination must be 'original' or '<target>:<container>[/<prefix>]', not {value!r}")
    target_name, rest = value.split(":", 1)
    container, _, prefix = rest.partition("/")
    try:
        target = targets.get(target_name)
    except TargetsError:
        known = ", ".join(t.name for t in targets.targets)
        raise RestoreError(f"destination: unknown target {target_name!r}; known: {known}") from None
    try:
        location = Location(target=target.name, container=container, prefix=prefix)
    except ValueError as exc:
        raise RestoreError(f"destination {value!r}: {exc}") from None
    scratch = Destination(target.name, container, location.prefix, None)
    check_scratch(scratch, policy, what=f"destination {value!r}")
    return scratch


def check_scratch(scratch: Destination, policy: BackupPolicy, *, what: str) -> None:
    """Refuse a scratch location whose restored keys could land in the policy's source or its backup store."""
    source, store = policy.source, policy.destination
    restored = f"{scratch.prefix}{source.prefix}"  # every restored key starts with this
    if (scratch.target, scratch.container) == (source.target, source.container) and restored.startswith(source.prefix):
        raise RestoreError(
            f"{what} lies inside the policy's source {source.describe()}: the next backup would copy the restored "
            "objects. Restore in place with destination 'original', or pick a prefix outside it"
        )
    # The store's own keys: everything under its prefix (or, for a store at the container's root, its blobs
    # and points).
    owned = [store.prefix] if store.prefix else ["blobs/", "points/"]
    if (scratch.target, scratch.container) == (store.target, store.container) and any(
        _overlaps(restored, prefix) for prefix in owned
    ):
        raise RestoreError(f"{what} overlaps the backup store {store.describe()}: restore elsewhere")


# ---- the request ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreRequest:
    """What to restore and where (validated; built from the DAG params)."""

    policy: str
    #: A point id, a run id, or an ISO-8601 time (the newest point at or before it); None = the newest point.
    point: str | None = None
    #: Only source keys starting with this.
    prefix: str = ""
    #: ``original`` / None, or ``<target>:<container>[/<prefix>]``.
    destination: str | None = None
    dry_run: bool = True
    reason: str = ""
    max_concurrency: str = "8"
    max_errors: str = "100%"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not isinstance(self.policy, str):
            problems.append("policy must be a policy name from config/backup/policies.yaml")
        problems += request_problems(dry_run=self.dry_run, reason=self.reason,
                                    max_concurrency=self.max_concurrency, max_errors=self.max_errors)
        if problems:
            raise RestoreError("; ".join(problems))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RestoreRequest:
        """Build from DAG params / run conf (null and empty strings mean "not given")."""

        def text(name: str) -> str | None:
            value = params.get(name)
            return (str(value).strip() or None) if value not in (None, "") else None

        return cls(
            policy=text("policy") or "",
            point=text("point"),
            prefix=str(params.get("prefix") or ""),
            destination=text("destination"),
            dry_run=params.get("dry_run") is not False,  # only an explicit false applies
            reason=str(params.get("reason") or ""),
            max_concurrency=str(params.get("max_concurrency") or "8"),
            max_errors=str(params.get("max_errors") or "100%"),
        )

    @property
    def rate(self) -> RateControl:
        return RateControl(self.max_concurrency, self.max_errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RestoreRequest:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# ---- the backup store ----------------------------------------------------------------------------------
def store_for(target: Target, region: str | None = None) -> ObjectStore:
    """The object store of ``target`` (S3 in ``region`` when given).

    Through ``capability()``: the ``object_store()`` shortcut of include/capabilities is shadowed by the
    submodule of the same name once that is imported (as it is here).
    """
    from include.capabilities import capability

    store: ObjectStore = capability("object_store", target, **({"region": region} if target.cloud == "aws" and region else {}))
    return store


def newest_or_selected(store: ObjectStore, location: Location, at: str | None) -> Manifest:
    """The manifest of the point ``at`` selects (newest when None) in the backup store at ``location``."""
    points = list_points(store, location.container, location.prefix)
    if not points:
        raise ManifestError(f"no restorable point in {location.describe()} yet: run the backup first")
    return read_manifest(store, location.container, location.prefix, select_point(points, at))


def point_summary(manifest: Manifest) -> dict[str, Any]:
    """What the result says about the point restored."""
    return {
        "id": manifest.point_id,
        "as_of": manifest.started_at,
        "backup_run_id": manifest.run_id,
        "policy": manifest.policy,
        "objects": len(manifest.entries),
        "bytes": manifest.total_bytes,
    }


# ---- items ---------------------------------------------------------------------------------------------
def location_url(cloud: str, container: str, key: str) -> str:
    """``s3://`` / ``gs://`` / ``azure://`` URL of an object (the object stores' own naming)."""
    return f"{OBJECT_KINDS[cloud][2]}://{container}/{key}"


def item_for(entry: ManifestEntry, manifest: Manifest, destination: Destination, target: Target) -> Item:
    """The change-engine item restoring ``entry`` to its key under ``destination``."""
    resource_type, service, _ = OBJECT_KINDS[target.cloud]
    key = destination.key_for(entry.key)
    record = ResourceRecord(
        cloud=target.cloud, target=target.name, account=target.account,
        region=destination.region or target.regions[0], service=service, resource_type=resource_type,
        resource_id=location_url(target.cloud, destination.container, key), name=key,
        attributes={"container": destination.container, "key": key, "size": entry.size, "md5": entry.md5,
                    "blob": entry.blob, "source_key": entry.key},
    )
    return Item(step=STEP_ID, record=record, labels={"point": manifest.point_id, "source_key": entry.key})


def items_for(manifest: Manifest, destination: Destination, target: Target, prefix: str = "") -> list[Item]:
    """One item per object of the point whose source key starts with ``prefix`` (key order)."""
    return [item_for(entry, manifest, destination, target) for entry in iter_entries(manifest, prefix)]


def not_in_point(
    store: ObjectStore, destination: Destination, policy: BackupPolicy, prefix: str, restored: Iterable[str],
) -> dict[str, Any]:
    """Objects at the destination (under the restored keys' common prefix) that the point does not hold.

    They are left alone (a restore never deletes); the plan counts them and names the first few.
    """
    source_prefix = policy.source.prefix
    common = prefix if prefix.startswith(source_prefix) else source_prefix
    wanted = set(restored)
    extra = [info.key for info in store.list_objects(destination.container, destination.key_for(common))
             if info.key not in wanted]
    return {"count": len(extra), "keys": extra[:NOT_IN_POINT_SAMPLE],
            "note": "left alone: a restore writes the point's objects and never deletes"}


# ---- the step ------------------------------------------------------------------------------------------
def _where(record: ResourceRecord) -> tuple[str, str]:
    """(container, key) of the destination object (attributes at plan time, the URL when only identity is left)."""
    attrs = record.attributes
    if attrs.get("container") and attrs.get("key"):
        return str(attrs["container"]), str(attrs["key"])
    container, _, key = record.resource_id.split("://", 1)[1].partition("/")
    return container, key


class CorruptBlob(ChangeError):
    """A blob in the backup store does not hold the bytes its manifest entry describes."""


def checked_stream(chunks: Iterable[bytes], *, md5: str, size: int, what: str) -> Iterator[bytes]:
    """Pass ``chunks`` through, hashing them; raise :class:`CorruptBlob` at the end (before a consumer that
    writes only once the stream is exhausted commits anything) unless MD5 and size are as expected."""
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > size:
            raise CorruptBlob(f"{what}: more than the manifest's {size} bytes: corrupted in the backup store")
        digest.update(chunk)
        yield chunk
        del chunk
    if seen != size or digest.hexdigest() != md5:
        raise CorruptBlob(f"{what}: its bytes hash to md5 {digest.hexdigest()} ({seen} bytes), the manifest says "
                          f"{md5} ({size} bytes): corrupted in the backup store")


class RestoreObjectStep(LifecycleStep):
    """Make one destination object hold the bytes of one manifest entry (see the module docstring).

    Options: ``backup_store`` (the policy's destination :class:`Location` as a dict) and ``point_id``.
    One subclass per destination cloud (its resource type and permissions); the backup store's own read
    permissions are listed in docs/restore.md.
    """

    id = STEP_ID
    # One ledger key per destination object whatever it held (a create and an overwrite are one change), so
    # a rerun under the same idempotency key never writes an object that key already restored.
    operation = "action"

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        super().__init__(options, targets)
        self.backup = Location.model_validate(self.options["backup_store"])
        self.point_id = str(self.options.get("point_id") or "")

    # ---- stores (one client per store for the life of this step instance: one thread) ----
    def _store(self, target_name: str, region: str | None) -> ObjectStore:
        targets = self._targets or load_targets()
        store: ObjectStore = self.client(("store", target_name, region or ""),
                                         lambda: store_for(targets.get(target_name), region))
        return store

    def backup_store(self) -> ObjectStore:
        return self._store(self.backup.target, self.backup.region)

    def destination_store(self, record: ResourceRecord) -> ObjectStore:
        return self._store(record.target, record.region if record.cloud == "aws" else None)

    # ---- read / desired / compare ----
    def read(self, record: ResourceRecord) -> State | None:
        store = self.destination_store(record)
        container, key = _where(record)
        try:
            info = store.stat(container, key)
        except KeyError:
            return None
        return {"size": info.size, "md5": self._md5(store, info)}

    @staticmethod
    def _md5(store: ObjectStore, info: ObjectInfo) -> str:
        """The recorded content MD5, or the bytes hashed (S3 multipart / SSE-KMS objects written by others)."""
        if info.md5:
            return info.md5
        return hash_stream(store.read(info.container, info.key, pin=info))[0]

    def desired(self, state: State | None, record: ResourceRecord) -> State | None:
        attrs = record.attributes
        return {"size": int(attrs["size"]), "md5": str(attrs["md5"]), "blob": str(attrs["blob"])}

    def satisfied(self, state: State | None, desired: State | None) -> bool:
        if state is None or desired is None:
            return state is desired
        return (state.get("size"), state.get("md5")) == (desired.get("size"), desired.get("md5"))

    def project(self, state: State | None, desired: State | None) -> State | None:
        return None if state is None else {"size": state.get("size"), "md5": state.get("md5")}

    # ---- how the change reads ----
    def blob_url(self, blob: str) -> str:
        return location_url(self._backup_cloud(), self.backup.container, blob)

    def _backup_cloud(self) -> str:
        return (self._targets or load_targets()).get(self.backup.target).cloud

    def request_for(self, record: ResourceRecord, state: State | None, desired: State | None) -> dict[str, Any]:
        assert desired is not None
        return {"from": self.blob_url(str(desired["blob"])), "to": record.resource_id, "bytes": desired["size"],
                "md5": desired["md5"], "point": self.point_id}

    def describe(self, record: ResourceRecord, before: State | None, after: State | None) -> str:
        assert after is not None
        if before is None:
            return f"{record.name}: write (absent at the destination) {after['size']} bytes, md5 {after['md5']}"
        return (f"{record.name}: OVERWRITE {before.get('size')} bytes md5 {before.get('md5')} with the point's "
                f"{after['size']} bytes md5 {after['md5']}")

    def plan(self, record: ResourceRecord) -> Change | None:
        change = super().plan(record)
        # Replacing existing bytes is destructive (it needs approval); writing an absent object is not.
        return None if change is None else replace(change, destructive=change.before is not None)

    # ---- apply ----
    def apply(self, change: Change) -> Applied:
        """Re-read; write only when the object is still as planned (approved), never over a newer change."""
        record = change.record
        self.check_type(record)
        state = self.read(record)
        want = change.after
        before = self.project(state, want)
        if self.satisfied(state, want):
            return Applied(changed=False, before=before, after=before)
        if before != change.before:
            raise ChangeError(
                f"{record.resource_id} changed since the plan (planned {change.before or 'absent'}, now "
                f"{before or 'absent'}): nothing written; plan the restore again"
            )
        sent = self.write(record, state, want)
        now = self.read(record)
        if not self.satisfied(now, want):
            raise ChangeError(f"{record.resource_id}: read back {self.project(now, want)} after the restore, wanted {want}")
        return Applied(changed=True, before=before, after=self.project(now, want), request=sent)

    def write(self, record: ResourceRecord, state: State | None, desired: State | None) -> dict[str, Any]:
        assert desired is not None
        container, key = _where(record)
        size, md5, blob = int(desired["size"]), str(desired["md5"]), str(desired["blob"])
        url = self.blob_url(blob)
        backup = self.backup_store()
        try:
            info = backup.stat(self.backup.container, blob)
        except KeyError:
            raise CorruptBlob(f"{url}: missing from the backup store (needed for {key})") from None
        if info.size != size or (info.md5 and info.md5 != md5):
            raise CorruptBlob(f"{url}: the backup store records {info.size} bytes md5 {info.md5}, the manifest says "
                              f"{size} bytes md5 {md5}: corrupted in the backup store; {key} not written")
        stream = checked_stream(backup.read(self.backup.container, blob, pin=info), md5=md5, size=size, what=url)
        destination = self.destination_store(record)
        written = destination.write(container, key, stream, metadata={RESTORED_FROM_META: self.point_id})
        recorded = self._md5(destination, written)
        if (written.size, recorded) != (size, md5):
            raise ChangeError(f"{record.resource_id}: the destination recorded {written.size} bytes md5 {recorded}, "
                              f"the manifest says {size} bytes md5 {md5}")
        return {"from": url, "to": record.resource_id, "bytes": size, "md5": md5, "point": self.point_id}


class RestoreToS3(RestoreObjectStep):
    cloud = "aws"
    resource_types = ("aws.s3.object",)
    action = "s3:PutObject"
    # List (extras), read (state: HEAD, a GET when the object has no plain MD5), write (single or multipart);
    # kms:* only for a bucket encrypted with SSE-KMS.
    permissions = ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload",
                   "kms:GenerateDataKey", "kms:Decrypt")


class RestoreToGCS(RestoreObjectStep):
    cloud = "gcp"
    resource_types = ("gcp.storage.object",)
    action = "storage.objects.insert"
    # Replacing an existing object needs storage.objects.delete as well.
    permissions = ("storage.objects.list", "storage.objects.get", "storage.objects.create", "storage.objects.delete")


class RestoreToBlob(RestoreObjectStep):
    cloud = "azure"
    resource_types = ("azure.storage.blob",)
    action = "Put Blob / Put Block List"
    permissions = ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
                   "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write")


STEPS: dict[str, type[RestoreObjectStep]] = {"aws": RestoreToS3, "gcp": RestoreToGCS, "azure": RestoreToBlob}
#: What reading the backup store needs, per cloud of the store (list points, read manifests, stat and read blobs).
#: S3: reads are pinned to the version listed (``VersionId``) in a versioned store (Object Lock makes it one).
BACKUP_STORE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "aws": ("s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"),
    "gcp": ("storage.objects.list", "storage.objects.get"),
    "azure": ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",),
}


def step_options(policy: BackupPolicy, manifest: Manifest) -> dict[str, Any]:
    return {"backup_store": policy.destination.model_dump(), "point_id": manifest.point_id}


def resolver(options: Mapping[str, Any], targets: TargetsConfig | None = None) -> StepCache:
    """The engine's step resolver: the restore step of each item's destination cloud, with the run's options."""
    return StepCache(lambda item: STEPS[item.record.cloud](options, targets))


# ---- resolve a request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    """A validated request with what it names: the policy, the point's manifest, the destination, the items."""

    request: RestoreRequest
    policy: BackupPolicy
    manifest: Manifest
    destination: Destination
    items: tuple[Item, ...]
    not_in_point: dict[str, Any]

    def change_set(self) -> ChangeSet:
        resolved = {"policy": self.policy.name, "point_id": self.manifest.point_id,
                    "backup_store": self.policy.destination.model_dump(), "destination": self.destination.to_dict()}
        extra = {"point": point_summary(self.manifest), "destination": self.destination.describe(),
                 "not_in_point": self.not_in_point}
        return ChangeSet(request={**self.request.to_dict(), "resolved": resolved}, items=self.items,
                         dry_run=self.request.dry_run, reason=self.request.reason, extra=extra)


def resolve(
    request: RestoreRequest, *, targets: TargetsConfig | None = None, policies: BackupConfig | None = None,
) -> Resolved:
    """Check the request against the policies, targets and the backup store; list what it would restore.

    Reads (the backup store's points and one manifest, a listing of the destination); writes nothing. A
    request that cannot be right is one :class:`RestoreError` naming the allowed values.
    """
    targets = targets or load_targets()
    config = policies or load_policies()
    if not request.policy:
        raise RestoreError(f"policy is required; known: {', '.join(p.name for p in config.policies) or 'none'}")
    try:
        policy = config.get(request.policy)
    except BackupPolicyError as exc:
        raise RestoreError(str(exc)) from None
    destination = parse_destination(request.destination, policy, targets)
    store = store_for(targets.get(policy.destination.target), policy.destination.region)
    try:
        manifest = newest_or_selected(store, policy.destination, request.point)
    except ManifestError as exc:
        raise RestoreError(f"policy {policy.name}: {exc}") from None
    target = targets.get(destination.target)
    items = items_for(manifest, destination, target, request.prefix)
    if not items:
        raise RestoreError(
            f"no object of point {manifest.point_id} has a key starting with {request.prefix!r} (the point holds "
            f"{len(manifest.entries)} object(s) under {policy.source.describe()})"
        )
    dest_store = store_for(target, destination.region)
    try:
        extra = not_in_point(dest_store, destination, policy, request.prefix, (i.record.name for i in items))
    except Exception as exc:
        if is_not_found(exc):
            raise RestoreError(f"destination {destination.describe()}: the bucket / container does not exist") from None
        raise
    return Resolved(request, policy, manifest, destination, tuple(items), extra)


def classify(items: Sequence[Item]) -> dict[str, list[str]]:
    """Destination keys by what the plan does to them: written / overwritten / left alone / could not plan."""
    out: dict[str, list[str]] = {"written": [], "overwritten": [], "left_alone": [], "plan_failed": []}
    for item in items:
        if item.plan_error:
            out["plan_failed"].append(item.record.name)
        elif item.change is None:
            out["left_alone"].append(item.record.name)
        elif item.change.before is None:
            out["written"].append(item.record.name)
        else:
            out["overwritten"].append(item.record.name)
    return out


# ---- the runbook ---------------------------------------------------------------------------------------
def _options(request: Mapping[str, Any]) -> dict[str, Any]:
    return dict(request["resolved"])


#: The restore runbook as the change engine sees it: its wording, its steps, its rate, its approval rule.
RESTORE = ChangeRunbook(
    wording=WORDING,
    resolver=lambda request: resolver(_options(request)),
    rate=lambda request: RestoreRequest.from_dict(request).rate,
    approval=destructive_changes,
)


def resolve_request(context: Mapping[str, Any]) -> dict[str, Any]:
    """The ``resolve_point`` task: refuse unknown parameters, validate the request, list the objects to restore.

    A bad request fails with ``AirflowFailException`` (no retry): unknown parameter, policy, point, target,
    a prefix that selects nothing, a destination inside the source or the backup store.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from include.params import check_conf

    check_conf(context)
    try:
        resolved = resolve(RestoreRequest.from_params(context.get("params") or {}))
    except RequestError as exc:
        raise AirflowFailException(str(exc)) from None
    print(f"point {resolved.manifest.point_id} of policy {resolved.policy.name} (as of {resolved.manifest.started_at}): "
          f"{len(resolved.items)} object(s) to {resolved.destination.describe()}; "
          f"{resolved.not_in_point['count']} object(s) there are not in the point and are left alone")
    return resolved.change_set().to_dict()


def plan_restore(context: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The ``plan_restore`` task: the engine's plan, plus what it means per object (written / overwritten / left
    alone), kept in the change set and so in the result."""
    planned = ChangeSet.from_dict(RESTORE.plan(context, resolved))
    objects = classify(planned.items)
    for what in ("written", "overwritten", "left_alone", "plan_failed"):
        for key in objects[what]:
            print(f"{what.replace('_', ' ')}: {key}")
    missing = planned.extra["not_in_point"]
    if missing["count"]:
        print(f"not in the point, left alone (never deleted): {missing['count']} object(s), e.g. "
              + ", ".join(missing["keys"][:10]))
    counts = {what: len(keys) for what, keys in objects.items()}
    # What applying this plan asks for (also shown in a dry run, where nothing is applied).
    required = bool(planned.approval_required)
    approval = {"required": required, "rule": "only a restore that overwrites existing objects waits for approval"}
    print(f"{counts}; {len(changes(planned.items))} object(s) to write; applying it "
          f"{'needs approval (it overwrites)' if required else 'needs no approval (nothing is overwritten)'}")
    return replace(planned, extra={**planned.extra, "objects": objects, "counts": counts,
                                   "approval": approval}).to_dict()
