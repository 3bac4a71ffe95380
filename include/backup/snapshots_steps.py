"""The ``backup_snapshots`` runbook's change-engine steps: create a snapshot, copy it, delete an expired one.

Each is a :class:`~include.changes.step.Step` over the snapshots capability (``include.capabilities.snapshots``),
so it plans (reads only), applies (re-reads first, writes only what is missing) and verifies (bounded
re-reads) like every change of the platform:

- ``snapshots.create`` on a tagged resource: *create*. In the desired state when the policy's schedule has
  not fired since our newest snapshot of the resource (``include.backup.schedule.is_due``), or when this run
  already made one (its ``runbooks:run`` mark: a retried apply finds it instead of snapshotting twice).
  ``force`` snapshots whatever the schedule says (still once per run).
- ``snapshots.copy`` on a tagged resource: *create* a copy of this run's snapshot (or, when none is due, of the
  newest one) in the policy's ``copy_to_region``; it waits (bounded) for the source to be available first.
  Depends on the create. Not planned for kinds the cloud cannot copy (DynamoDB backups).
- ``snapshots.delete`` on one of our snapshots: *delete*, destructive. It re-reads the snapshot and refuses,
  at plan and at apply, one that does not carry this platform's marks for the policy (a foreign snapshot is a
  failure, never a deletion); the capability checks the marks once more right before the delete call.

A step id names its policy (``snapshots.create@aws-tagged-daily``): one resource may be selected by two policies,
and the ledger keeps their changes apart. Every step declares the IAM permissions it needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from include.backup.policies import SnapshotPolicy
from include.backup.schedule import Due, is_due, previous_fire
from include.capabilities.snapshots import SNAPSHOT_KIND, Marks, PlannedCall, Resource, Snapshot, Snapshots
from include.capabilities.snapshots import Operation as SnapshotOperation
from include.changes.model import Change, ChangeError
from include.changes.step import LifecycleStep, State, Step, UpdateStep
from include.changes.waiting import poll_until
from include.clouds.aws.snapshots import PERMISSIONS, native_id
from include.records import ResourceRecord, utc_iso
from include.targets import TargetsConfig

CREATE, COPY, DELETE = "snapshots.create", "snapshots.copy", "snapshots.delete"
#: Stands for the snapshot a run is about to create (its id is known only once it exists).
NEW = "(the snapshot this run creates)"
#: Source types whose snapshots AWS copies across regions (DynamoDB backups: no).
COPYABLE = ("aws.ec2.volume", "aws.rds.instance")
#: How long apply waits for a snapshot it just made to show up in a listing (describe calls are eventually
#: consistent on AWS); the create has been sent by then, and a retry of the same run finds it by its marks.
LISTING_WAIT = 60.0


def step_id(base: str, policy: str) -> str:
    """``snapshots.create@<policy>``."""
    return f"{base}@{policy}"


def split_step(step: str) -> tuple[str, str]:
    """``(base, policy)`` of a step id; ValueError for anything else."""
    base, sep, policy = step.partition("@")
    if not sep or base not in (CREATE, COPY, DELETE) or not policy:
        raise ValueError(f"not a backup_snapshots step: {step!r}")
    return base, policy


def _permissions(*operations: SnapshotOperation, types: Sequence[str] = tuple(SNAPSHOT_KIND)) -> tuple[str, ...]:
    return tuple(sorted({p for op in operations for t in types for p in PERMISSIONS[op].get(t, ())}))


@dataclass(frozen=True)
class RunOptions:
    """What every step of a run shares: the policy, the run's clock and token, force, the wait bounds."""

    policy: SnapshotPolicy
    now: datetime
    token: str
    force: bool = False
    wait: float = 3600.0
    interval: float = 30.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunOptions:
        try:
            return cls(
                policy=SnapshotPolicy.model_validate(options["policy"]),
                now=datetime.fromisoformat(str(options["now"]).replace("Z", "+00:00")).astimezone(UTC),
                token=str(options["token"]),
                force=bool(options.get("force")),
                wait=float(options.get("wait", 3600.0)),
                interval=float(options.get("interval", 30.0)),
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"backup_snapshots step options are incomplete: {exc}") from exc


def snapshot_due(policy: SnapshotPolicy, snaps: Sequence[Snapshot], now: datetime, *, force: bool) -> Due:
    """Whether a new snapshot of the resource is due: its schedule fired since our newest usable one."""
    times = [s.point_time for s in snaps if s.status in ("available", "creating") and s.point_time is not None]
    newest = max((t for t in times if t is not None), default=None)
    if force:
        return Due(True, "forced (force=true)", previous_fire(policy.schedule, now), newest)
    return is_due(policy.schedule, newest, now)


def resource_of(record: ResourceRecord) -> Resource:
    """The capability's view of a tagged resource's record (at apply time the engine passes the record's
    identity only: the native id comes from the ARN)."""
    return Resource(resource_type=record.resource_type, resource_id=record.resource_id,
                    native_id=native_id(record.resource_type, record.resource_id), region=record.region,
                    name=record.name, tags=dict(record.tags), attributes=dict(record.attributes))


def _with_step(change: Change | None, step: str) -> Change | None:
    """The change under the policy's step id (the key the ledger records it by)."""
    return None if change is None else replace(change, step=step)


class _PolicyStep:
    """What the three steps share: the run options and the policy's step id."""

    run: RunOptions
    step_id: str

    def setup(self, options: Mapping[str, Any], base: str) -> None:
        self.run = RunOptions.from_options(options)
        self.step_id = step_id(base, self.run.policy.name)


def _capability(step: Step[Any], record: ResourceRecord) -> Snapshots:
    """The snapshots capability of the record's target, one per step instance (its clients are reused)."""
    from include.capabilities import snapshots_for

    target = step.target(record)
    made: Snapshots = step.client(("snapshots", target.name), lambda: snapshots_for(target))
    return made


class CreateSnapshot(UpdateStep, _PolicyStep):
    """Snapshot a tagged resource when its policy's schedule makes one due (once per run)."""

    id = CREATE
    cloud = "aws"
    resource_types = tuple(SNAPSHOT_KIND)
    permissions = _permissions("create", "list_ours", "get")
    operation = "create"
    action = "ec2:CreateSnapshot | rds:CreateDBSnapshot | dynamodb:CreateBackup"

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        super().__init__(options, targets)
        self.setup(self.options, CREATE)
        self.verify_wait, self.verify_interval = self.run.wait, self.run.interval

    def snaps(self, record: ResourceRecord) -> Snapshots:
        return _capability(self, record)

    def marks(self, record: ResourceRecord) -> Marks:
        return Marks(policy=self.run.policy.name, source=record.resource_id, created_at=self.run.now, run=self.run.token)

    def call(self, record: ResourceRecord) -> PlannedCall:
        return self.snaps(record).create_call(resource_of(record), self.marks(record))

    def plan(self, record: ResourceRecord) -> Change | None:
        return _with_step(super().plan(record), self.step_id)

    def read(self, record: ResourceRecord) -> State:
        snaps = self.snaps(record).ours(self.run.policy.name, record.region, source=record.resource_id)
        mine = [s for s in snaps if s.marks is not None and s.marks.run == self.run.token]
        due = snapshot_due(self.run.policy, snaps, self.run.now, force=self.run.force)
        return {
            "due": due.due, "reason": due.reason, "newest_point": utc_iso(due.newest_point),
            "snapshot": mine[-1].snapshot_id if mine else None, "status": mine[-1].status if mine else None,
        }

    def desired(self, state: State, record: ResourceRecord) -> State:
        return {"snapshot": state.get("snapshot") or NEW, "newest_point": utc_iso(self.run.now)}

    def satisfied(self, state: State, desired: State) -> bool:
        return bool(state.get("snapshot")) or not state.get("due")

    def project(self, state: State, desired: State) -> State:
        return {"snapshot": state.get("snapshot"), "newest_point": state.get("newest_point"),
                "schedule": state.get("reason")}

    def request_for(self, record: ResourceRecord, state: State, desired: State) -> dict[str, Any]:
        return self.call(record).request

    def action_for(self, record: ResourceRecord) -> str:
        return self.call(record).action

    def describe(self, record: ResourceRecord, before: State, after: State) -> str:
        return f"{record.name}: new snapshot ({self.run.policy.name}: {before.get('schedule')})"

    def write(self, record: ResourceRecord, state: State, desired: State) -> dict[str, Any]:
        call = self.call(record)
        made = self.snaps(record).create(resource_of(record), self.marks(record))
        # Wait (bounded) until the listing shows it, so the read-back and a retry both find it by its marks.
        poll_until(lambda: self.read(record), lambda s: bool(s.get("snapshot")), timeout=min(LISTING_WAIT, self.run.wait),
                   interval=min(2.0, self.run.interval), what=f"{made.snapshot_id} to be listed", clock=self.clock,
                   sleep=self.sleep)
        return call.request

    def verify(self, record: ResourceRecord) -> bool:
        """This run's snapshot is available (bounded wait); without one, the schedule is met."""
        self.check_type(record)

        def usable(state: State) -> bool:  # waits only while a snapshot exists and is still being created
            if not state.get("snapshot"):
                if state.get("due"):
                    raise ChangeError(f"no snapshot of {record.resource_id} was made although one is due")
                return True
            if state.get("status") not in ("available", "creating"):
                raise ChangeError(f"snapshot {state.get('snapshot')} of {record.resource_id} is {state.get('status')}")
            return state.get("status") == "available"

        poll_until(lambda: self.read(record), usable, timeout=self.verify_wait, interval=self.verify_interval,
                   what=f"{self.step_id} on {record.resource_id}", clock=self.clock, sleep=self.sleep)
        return True


class CopySnapshot(UpdateStep, _PolicyStep):
    """Copy the resource's newest snapshot (this run's, when one is made) to the policy's copy region."""

    id = COPY
    cloud = "aws"
    resource_types = COPYABLE
    permissions = _permissions("copy", "list_ours", "get", types=COPYABLE)
    operation = "create"
    action = "ec2:CopySnapshot | rds:CopyDBSnapshot"
    #: The source snapshot is known only at apply time (this run's new one): recompute from a fresh read.
    recompute_on_apply = True

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        super().__init__(options, targets)
        self.setup(self.options, COPY)
        if not self.run.policy.copy_to_region:
            raise ValueError(f"policy {self.run.policy.name} names no copy_to_region")
        self.region: str = self.run.policy.copy_to_region
        self.verify_wait, self.verify_interval = self.run.wait, self.run.interval

    def snaps(self, record: ResourceRecord) -> Snapshots:
        return _capability(self, record)

    def plan(self, record: ResourceRecord) -> Change | None:
        return _with_step(super().plan(record), self.step_id)

    def _source(self, record: ResourceRecord) -> Snapshot | None:
        """This run's snapshot; else, when none is due, the newest usable one; else None (one is coming)."""
        home = self.snaps(record).ours(self.run.policy.name, record.region, source=record.resource_id)
        mine = [s for s in home if s.marks is not None and s.marks.run == self.run.token]
        if mine:
            return mine[-1]
        if snapshot_due(self.run.policy, home, self.run.now, force=self.run.force).due:
            return None
        usable = [s for s in home if s.status in ("available", "creating")]
        return usable[-1] if usable else None

    def read(self, record: ResourceRecord) -> State:
        source = self._source(record)
        copy = None
        if source is not None:
            copies = self.snaps(record).ours(self.run.policy.name, self.region, source=record.resource_id)
            copy = next((c for c in copies if c.marks is not None and c.marks.copy_of == source.snapshot_id), None)
        return {
            "copy_region": self.region, "copy_of": source.snapshot_id if source else None,
            "copy": copy.snapshot_id if copy else None, "status": copy.status if copy else None,
        }

    def desired(self, state: State, record: ResourceRecord) -> State:
        return {"copy_region": self.region, "copy_of": state.get("copy_of") or NEW,
                "copy": state.get("copy") or f"(a copy in {self.region})"}

    def satisfied(self, state: State, desired: State) -> bool:
        return bool(state.get("copy"))

    def project(self, state: State, desired: State) -> State:
        return {"copy_region": self.region, "copy_of": state.get("copy_of"), "copy": state.get("copy")}

    def _call(self, record: ResourceRecord, source: Snapshot | None) -> PlannedCall:
        if source is None:  # the plan of a copy of a snapshot not made yet: shown with a stand-in id
            kind = SNAPSHOT_KIND[record.resource_type]
            source = Snapshot(kind=kind, snapshot_id=NEW, resource_id=NEW, region=record.region, status="available",
                              cloud_created_at=None, marks=None, encrypted=bool(record.attributes.get("encrypted")))
        marks = Marks(policy=self.run.policy.name, source=record.resource_id,
                      created_at=source.marks.created_at if source.marks else self.run.now, run=self.run.token,
                      copy_of=source.snapshot_id)
        return self.snaps(record).copy_call(source, self.region, marks)

    def request_for(self, record: ResourceRecord, state: State, desired: State) -> dict[str, Any]:
        return self._call(record, self._source(record)).request

    def action_for(self, record: ResourceRecord) -> str:
        return self._call(record, None).action

    def describe(self, record: ResourceRecord, before: State, after: State) -> str:
        what = before.get("copy_of") or "the new snapshot"
        return f"{record.name}: copy {what} to {self.region} ({self.run.policy.name})"

    def write(self, record: ResourceRecord, state: State, desired: State) -> dict[str, Any]:
        source = self._source(record)
        if source is None:
            raise ChangeError(f"{record.resource_id}: no snapshot to copy (this run's snapshot was not made)")
        # A snapshot is copied only once it is complete (EBS and RDS refuse a pending one): bounded wait.
        source = self.snaps(record).wait_available(source, timeout=self.run.wait, interval=self.run.interval)
        call = self._call(record, source)
        assert source.marks is not None  # listed by ours(): it carries our marks
        made = self.snaps(record).copy(source, self.region, source.marks.copied(source.snapshot_id, self.run.token))
        poll_until(lambda: self.read(record), lambda s: bool(s.get("copy")), timeout=min(LISTING_WAIT, self.run.wait),
                   interval=min(2.0, self.run.interval), what=f"{made.snapshot_id} to be listed", clock=self.clock,
                   sleep=self.sleep)
        return call.request

    def verify(self, record: ResourceRecord) -> bool:
        """The copy exists in the copy region and is available (bounded wait)."""
        self.check_type(record)

        def usable(state: State) -> bool:  # waits only while the copy exists and is still being made
            if not state.get("copy"):
                what = state.get("copy_of") or "this run's snapshot"
                raise ChangeError(f"no copy of {what} ({record.resource_id}) in {self.region}")
            if state.get("status") not in ("available", "creating"):
                raise ChangeError(f"copy {state.get('copy')} in {self.region} is {state.get('status')}")
            return state.get("status") == "available"

        poll_until(lambda: self.read(record), usable, timeout=self.verify_wait, interval=self.verify_interval,
                   what=f"{self.step_id} on {record.resource_id}", clock=self.clock, sleep=self.sleep)
        return True


class DeleteSnapshot(LifecycleStep, _PolicyStep):
    """Delete one of our snapshots that the policy's retention no longer keeps (never a foreign one)."""

    id = DELETE
    cloud = "aws"
    resource_types = tuple(SNAPSHOT_KIND.values())
    permissions = _permissions("get", "delete")
    destructive = True
    action = "ec2:DeleteSnapshot | rds:DeleteDBSnapshot | dynamodb:DeleteBackup"

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        super().__init__(options, targets)
        self.setup(self.options, DELETE)

    def snaps(self, record: ResourceRecord) -> Snapshots:
        return _capability(self, record)

    def plan(self, record: ResourceRecord) -> Change | None:
        return _with_step(super().plan(record), self.step_id)

    def _current(self, record: ResourceRecord) -> Snapshot | None:
        snapshot_id = native_id(record.resource_type, record.resource_id)
        return self.snaps(record).get(record.resource_type, snapshot_id, record.region)

    def read(self, record: ResourceRecord) -> State | None:
        snap = self._current(record)
        if snap is None:
            return None
        if not snap.is_ours(self.run.policy.name):
            whose = f"policy {snap.marks.policy!r}" if snap.marks else "no runbooks marks"
            raise ChangeError(f"refusing to delete {snap.snapshot_id} ({snap.region}): not made by this platform "
                              f"under policy {self.run.policy.name!r} ({whose})")
        return {"snapshot": snap.snapshot_id, "status": snap.status, "point_time": utc_iso(snap.point_time),
                "source": snap.marks.source if snap.marks else None}

    def desired(self, state: State | None, record: ResourceRecord) -> State | None:
        return None

    def request_for(self, record: ResourceRecord, state: State | None, desired: State | None) -> dict[str, Any]:
        snap = self._current(record)
        return self.snaps(record).delete_call(snap).request if snap else {}

    def action_for(self, record: ResourceRecord) -> str:
        return {"aws.ec2.snapshot": "ec2:DeleteSnapshot", "aws.rds.snapshot": "rds:DeleteDBSnapshot",
                "aws.dynamodb.backup": "dynamodb:DeleteBackup"}[record.resource_type]

    def describe(self, record: ResourceRecord, before: State | None, after: State | None) -> str:
        why = record.attributes.get("reason") or "expired"
        return f"{record.name}: delete ({self.run.policy.name}: {why})"

    def write(self, record: ResourceRecord, state: State | None, desired: State | None) -> dict[str, Any]:
        snap = self._current(record)
        if snap is None:
            return {}
        call = self.snaps(record).delete_call(snap)
        self.snaps(record).delete(snap, self.run.policy.name)  # re-reads and refuses a snapshot not ours
        return call.request


STEPS: dict[str, type[CreateSnapshot] | type[CopySnapshot] | type[DeleteSnapshot]] = {
    CREATE: CreateSnapshot, COPY: CopySnapshot, DELETE: DeleteSnapshot,
}


def all_permissions() -> list[str]:
    """Every IAM action the runbook's steps (and its listing) need: the least-privilege policy's actions."""
    listing = _permissions("list_resources", "list_ours")
    return sorted({*listing, *(p for cls in STEPS.values() for p in cls.permissions)})
