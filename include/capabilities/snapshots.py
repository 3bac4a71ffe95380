"""The snapshots capability: point-in-time copies of volumes, databases and tables, marked as this platform's.

A runbook asks the registry for the snapshots of a target (``include.capabilities.snapshots(target)``) and
uses only this interface: list the resources that carry a tag, snapshot one, copy a snapshot to another
region, list the snapshots *this platform* made under a policy, read / delete one, wait (bounded) until one is
usable.

**Ours, and only ours.** Every snapshot this platform creates carries its :class:`Marks`: who made it
(``runbooks:managed-by=backup_snapshots``), under which policy (``runbooks:policy``), of which resource
(``runbooks:source``), the point in time it stands for (``runbooks:created-at``), the run that made it
(``runbooks:run``) and, for a copy, the snapshot it was copied from (``runbooks:copy-of``). ``ours`` lists only
snapshots with those marks; ``delete`` re-reads the snapshot and refuses (:class:`NotOursError`) one whose marks
do not name the caller's policy, so a foreign snapshot (made by a person, AWS Backup, another tool or another
policy) is never deleted, whatever a caller passes in. Where a cloud cannot tag a backup (DynamoDB on-demand
backups) the marks live in the backup's name; the implementation says so.

**Permissions.** Every operation declares the cloud permissions it needs per resource type
(:meth:`Snapshots.permissions`), so a least-privilege policy per runbook can be generated.

This module imports no cloud SDK; implementations live in ``include/clouds/<cloud>/snapshots.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from include.records import utc_iso

#: Tag keys of the marks (see the module docstring). Colons are allowed in EC2 and RDS tag keys.
MANAGED_BY_KEY = "runbooks:managed-by"
POLICY_KEY = "runbooks:policy"
SOURCE_KEY = "runbooks:source"
CREATED_AT_KEY = "runbooks:created-at"
RUN_KEY = "runbooks:run"
COPY_OF_KEY = "runbooks:copy-of"
#: The value of ``runbooks:managed-by`` on every snapshot this platform makes (the runbook's id).
MANAGED_BY = "backup_snapshots"

#: What a snapshot of each resource type is called (its resource type in records and reports).
SNAPSHOT_KIND = {
    "aws.ec2.volume": "aws.ec2.snapshot",
    "aws.rds.instance": "aws.rds.snapshot",
    "aws.dynamodb.table": "aws.dynamodb.backup",
}
SOURCE_TYPE = {kind: source for source, kind in SNAPSHOT_KIND.items()}

#: Normalised snapshot states: ``creating`` (not usable yet), ``available``, ``failed`` (never usable),
#: ``deleting``.
Status = Literal["creating", "available", "failed", "deleting"]
#: The operations whose permissions an implementation declares.
Operation = Literal["list_resources", "create", "copy", "list_ours", "get", "delete"]
OPERATIONS: tuple[Operation, ...] = ("list_resources", "create", "copy", "list_ours", "get", "delete")


class SnapshotError(RuntimeError):
    """A snapshot operation cannot be done (the cloud refused, a snapshot failed, a bad input)."""


class NotOursError(SnapshotError):
    """A snapshot is not this platform's under the given policy: it is never deleted."""


class CopyNotSupportedError(SnapshotError):
    """The cloud cannot copy this kind of snapshot to another region (said plainly, never faked)."""


def run_token(run_key: str) -> str:
    """The short, tag- and name-safe token of a run's ledger key (``runbooks:run``)."""
    return hashlib.sha256(run_key.encode()).hexdigest()[:12]


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Marks:
    """What makes a snapshot this platform's: policy, source resource, point in time, run, copy origin."""

    policy: str
    source: str  # the resource id (ARN) of what was snapshotted
    created_at: datetime  # the point in time the snapshot stands for (a copy keeps its original's)
    run: str  # run_token() of the run that made it: a retried run finds its own snapshot instead of making another
    copy_of: str | None = None  # for a copy: the id of the snapshot it was copied from

    def __post_init__(self) -> None:
        moment = self.created_at if self.created_at.tzinfo else self.created_at.replace(tzinfo=UTC)
        object.__setattr__(self, "created_at", moment.astimezone(UTC).replace(microsecond=0))

    def tags(self) -> dict[str, str]:
        """The marks as tags (EC2, RDS)."""
        tags = {
            MANAGED_BY_KEY: MANAGED_BY,
            POLICY_KEY: self.policy,
            SOURCE_KEY: self.source,
            CREATED_AT_KEY: str(utc_iso(self.created_at)),
            RUN_KEY: self.run,
        }
        if self.copy_of:
            tags[COPY_OF_KEY] = self.copy_of
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Marks | None:
        """The marks of a tagged snapshot, or None when it is not this platform's (any mark missing)."""
        if tags.get(MANAGED_BY_KEY) != MANAGED_BY:
            return None
        policy, source = tags.get(POLICY_KEY), tags.get(SOURCE_KEY)
        created = _parse_time(tags.get(CREATED_AT_KEY, ""))
        if not policy or not source or created is None:
            return None
        return cls(policy=policy, source=source, created_at=created, run=tags.get(RUN_KEY, ""),
                   copy_of=tags.get(COPY_OF_KEY) or None)

    def copied(self, from_snapshot: str, run: str) -> Marks:
        """The marks of a copy of the snapshot carrying these marks (same point in time)."""
        return Marks(policy=self.policy, source=self.source, created_at=self.created_at, run=run,
                     copy_of=from_snapshot)


@dataclass(frozen=True)
class Resource:
    """A resource that can be snapshotted (a volume, a DB instance, a table) and its tags."""

    resource_type: str  # aws.ec2.volume | aws.rds.instance | aws.dynamodb.table
    resource_id: str  # ARN
    native_id: str  # vol-..., the DB instance identifier, the table name
    region: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)  # e.g. engine, encrypted, status


@dataclass(frozen=True)
class Snapshot:
    """One snapshot / backup as the cloud reports it, with this platform's marks when it has them."""

    kind: str  # aws.ec2.snapshot | aws.rds.snapshot | aws.dynamodb.backup
    snapshot_id: str  # snap-..., the DB snapshot identifier, the backup ARN
    resource_id: str  # ARN
    region: str
    status: Status
    cloud_created_at: datetime | None  # the cloud's own creation time
    marks: Marks | None  # None: not this platform's (a foreign snapshot)
    tags: dict[str, str] = field(default_factory=dict)
    name: str = ""
    encrypted: bool | None = None

    @property
    def point_time(self) -> datetime | None:
        """The point in time this snapshot stands for: its ``runbooks:created-at`` mark, else the cloud's time.

        A copy carries its original's mark, so the two land in the same retention bucket.
        """
        return self.marks.created_at if self.marks else self.cloud_created_at

    def is_ours(self, policy: str | None = None) -> bool:
        """Made by this platform (under ``policy`` when given)."""
        return self.marks is not None and (policy is None or self.marks.policy == policy)


@dataclass(frozen=True)
class PlannedCall:
    """The exact API call an operation makes (shown in the plan; what is sent)."""

    action: str  # e.g. "ec2:CreateSnapshot"
    request: dict[str, Any]


@runtime_checkable
class Snapshots(Protocol):
    """Snapshots of one target's volumes / databases / tables, bound to its connection."""

    def tagged_resources(
        self, tag_key: str, tag_value: str | None, resource_types: Sequence[str], regions: Sequence[str] | None = None,
    ) -> list[Resource]:
        """Resources of ``resource_types`` carrying tag ``tag_key`` (= ``tag_value``; None: any value), in
        ``regions`` (default: the target's regions). An untagged resource is never returned."""
        ...

    def create_call(self, resource: Resource, marks: Marks) -> PlannedCall:
        """The call :meth:`create` makes for ``resource`` (reads nothing, changes nothing)."""
        ...

    def create(self, resource: Resource, marks: Marks) -> Snapshot:
        """Snapshot ``resource`` (in its region), marked with ``marks``; returns it as the cloud reports it."""
        ...

    def copy_refusal(self, resource_type: str) -> str | None:
        """Why snapshots of ``resource_type`` cannot be copied to another region (None: they can)."""
        ...

    def copy_call(self, snapshot: Snapshot, region: str, marks: Marks) -> PlannedCall:
        """The call :meth:`copy` makes (reads nothing, changes nothing)."""
        ...

    def copy(self, snapshot: Snapshot, region: str, marks: Marks) -> Snapshot:
        """Copy ``snapshot`` (which must be available) to ``region``, marked with ``marks``.

        Raises :class:`CopyNotSupportedError` for kinds the cloud cannot copy across regions.
        """
        ...

    def ours(self, policy: str, region: str, *, source: str | None = None,
             kinds: Sequence[str] | None = None) -> list[Snapshot]:
        """This platform's snapshots under ``policy`` in ``region`` (of ``source`` when given; of ``kinds``:
        default every kind). Foreign snapshots are never listed."""
        ...

    def get(self, kind: str, snapshot_id: str, region: str) -> Snapshot | None:
        """One snapshot (ours or not) by id, or None when it does not exist (or is deleted)."""
        ...

    def delete_call(self, snapshot: Snapshot) -> PlannedCall:
        """The call :meth:`delete` makes (reads nothing, changes nothing)."""
        ...

    def delete(self, snapshot: Snapshot, policy: str) -> None:
        """Delete ``snapshot`` after re-reading it: :class:`NotOursError` unless its marks name ``policy``.

        No error when it is already gone.
        """
        ...

    def wait_available(self, snapshot: Snapshot, *, timeout: float, interval: float) -> Snapshot:
        """Re-read until ``snapshot`` is available, at most ``timeout`` seconds (``WaitTimeout`` after that);
        :class:`SnapshotError` when it failed or disappeared."""
        ...

    def permissions(self, operation: Operation, resource_type: str | None = None) -> tuple[str, ...]:
        """The cloud permissions ``operation`` needs (for one source resource type, or for all)."""
        ...
