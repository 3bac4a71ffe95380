"""The backup_snapshots runbook: the snapshots capability, its steps on the change engine, retention, the DAG.

Everything runs against moto through the provider hooks the runbook uses (``client_for``: EC2Hook, RdsHook,
AwsBaseHook). moto cannot backdate a snapshot's creation time, so "old" snapshots of ours are made through the
capability with a backdated ``runbooks:created-at`` mark (the point in time a snapshot of ours stands for), and
the runs take an injected clock (``now``). Retention expectations below are derived by hand from the policy's
GFS rules and the calendar (2026-11-28 is a Saturday in ISO week 48).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from include.backup import snapshots as runbook
from include.backup.policies import BackupConfig, BackupPolicyError, Retention, SnapshotPolicy, parse_policies
from include.backup.snapshots_retention import PERIODS, Point, expired, keep
from include.backup.snapshots_steps import COPY, CREATE, DELETE, STEPS, all_permissions, snapshot_due, split_step
from include.capabilities import REGISTRY, snapshots_for
from include.capabilities.snapshots import (
    MANAGED_BY_KEY,
    CopyNotSupportedError,
    Marks,
    NotOursError,
    Snapshot,
    SnapshotError,
    Snapshots,
    run_token,
)
from include.changes.ledger import Ledger
from include.changes.model import RequestError
from include.changes.runbook import ChangeSet
from include.clouds.aws import snapshots as aws_snapshots
from include.clouds.aws.clients import client_for
from include.targets import Target, load_targets

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # a Saturday, ISO week 48
HOME, DR = "us-east-1", "eu-west-1"
POLICY = SnapshotPolicy(
    name="test-daily", target="aws-prod", tag_key="backup", tag_value="daily", schedule="15 2 * * *",
    copy_to_region=DR, retention=Retention(daily=3, weekly=2, monthly=2),
)
OTHER = SnapshotPolicy(name="other-daily", target="aws-prod", tag_key="backup", tag_value="daily",
                       schedule="@daily", copy_to_region=DR)
CONFIG = BackupConfig(snapshot_policies=(POLICY, OTHER))


def aws(service: str, region: str = HOME) -> Any:
    return client_for("aws_estate", service, region)


def target() -> Target:
    return load_targets().get("aws-prod")


def cap() -> Snapshots:
    return snapshots_for(target())


# ---- a small estate: what is tagged, what is not, and snapshots that are not ours ---------------------
@dataclass
class Estate:
    vol_a: str
    vol_b: str
    vol_untagged: str
    vol_weekly: str
    db: str
    db_untagged: str
    table: str
    table_untagged: str
    foreign_ebs: str
    foreign_rds: str
    foreign_ddb: str

    def arn(self, kind: str, ident: str) -> str:
        account = target().account
        return {"volume": f"arn:aws:ec2:{HOME}:{account}:volume/{ident}",
                "db": f"arn:aws:rds:{HOME}:{account}:db:{ident}",
                "table": f"arn:aws:dynamodb:{HOME}:{account}:table/{ident}"}[kind]

    @property
    def tagged(self) -> list[str]:
        return [self.arn("volume", self.vol_a), self.arn("volume", self.vol_b), self.arn("db", self.db),
                self.arn("table", self.table)]

    @property
    def untagged(self) -> list[str]:
        return [self.arn("volume", self.vol_untagged), self.arn("volume", self.vol_weekly),
                self.arn("db", self.db_untagged), self.arn("table", self.table_untagged)]


def _tags(**tags: str) -> list[dict[str, str]]:
    return [{"Key": k.replace("_", "-"), "Value": v} for k, v in tags.items()]


def _volume(name: str, encrypted: bool = False, **tags: str) -> str:
    spec = [{"ResourceType": "volume", "Tags": _tags(Name=name, **tags)}]
    return str(aws("ec2").create_volume(AvailabilityZone=f"{HOME}a", Size=4, Encrypted=encrypted,
                                         TagSpecifications=spec)["VolumeId"])


def _db(ident: str, **tags: str) -> str:
    key = aws("kms").create_key(Description=f"key of {ident}")["KeyMetadata"]["Arn"]
    aws("rds").create_db_instance(
        DBInstanceIdentifier=ident, DBInstanceClass="db.t3.small", Engine="postgres", AllocatedStorage=20,
        MasterUsername="runbooks", MasterUserPassword="not-a-real-password-1", StorageEncrypted=True, KmsKeyId=key,
        Tags=_tags(**tags),
    )
    return ident


def _table(name: str, **tags: str) -> str:
    args: dict[str, Any] = {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    }
    if tags:
        args["Tags"] = _tags(**tags)
    aws("dynamodb").create_table(**args)
    return name


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path) -> Estate:
    vol_a = _volume("vol-a", backup="daily", owner="app-team")
    vol_b = _volume("vol-b", encrypted=True, backup="daily")
    foreign_ebs = aws("ec2").create_snapshot(VolumeId=vol_a, Description="made by a person",
                                             TagSpecifications=[{"ResourceType": "snapshot",
                                                                 "Tags": _tags(owner="app-team")}])["SnapshotId"]
    db = _db("db-daily", backup="daily")
    aws("rds").create_db_snapshot(DBSnapshotIdentifier="before-upgrade", DBInstanceIdentifier=db)
    table = _table("tbl-daily", backup="daily")
    foreign_ddb = aws("dynamodb").create_backup(TableName=table, BackupName="manual-before-migration")[
        "BackupDetails"]["BackupArn"]
    return Estate(
        vol_a=vol_a, vol_b=vol_b, vol_untagged=_volume("vol-untagged", owner="app-team"),
        vol_weekly=_volume("vol-weekly", backup="weekly"), db=db, db_untagged=_db("db-untagged", owner="x"),
        table=table, table_untagged=_table("tbl-untagged"), foreign_ebs=foreign_ebs, foreign_rds="before-upgrade",
        foreign_ddb=foreign_ddb,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.from_url(f"sqlite:///{tmp_path / 'ledger.db'}")


def run(
    ledger: Ledger | None, *, now: datetime = NOW, dry_run: bool = False, force: bool = False,
    key: str = "backup_snapshots:run-1", policies: list[str] | None = None,
) -> tuple[ChangeSet, ChangeSet | None]:
    """One run through the runbook's own functions: (the plan, the verified result or None when not applied)."""
    request = runbook.select({"policies": policies or ["test-daily"], "force": force}, dry_run=dry_run, run_key=key,
                             now=now, config=CONFIG, wait=3, interval=0.1)
    planned = runbook.plan(request, runbook.find_resources(request))
    if not runbook.applies(planned):
        return planned, None
    assert ledger is not None
    applied = runbook.apply(planned, ledger=ledger, ledger_key=key, holder="test")
    return planned, runbook.verify(applied)


def ours(region: str, source: str | None = None, policy: str = "test-daily") -> list[Snapshot]:
    return cap().ours(policy, region, source=source)


def all_ebs_ids(region: str) -> set[str]:
    own = [{"Name": "owner-id", "Values": [target().account]}]  # moto ignores OwnerIds (AMI snapshots)
    pages = aws("ec2", region).get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=own)
    return {s["SnapshotId"] for page in pages for s in page["Snapshots"]}


def outcomes(change_set: ChangeSet) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in change_set.items:
        found.setdefault(str(item.outcome), []).append(f"{split_step(item.step)[0]} {item.resource_id}")
    return found


def backdated(source: str, day: datetime, policy: str = "test-daily", run: str = "seed") -> Marks:
    return Marks(policy=policy, source=source, created_at=day, run=run_token(f"{run}:{day.isoformat()}"))


# ---- the capability ------------------------------------------------------------------------------------
def test_registry_has_the_snapshots_capability() -> None:
    assert REGISTRY["snapshots"] == {"aws": "include.clouds.aws.snapshots:AwsSnapshots"}
    assert isinstance(cap(), Snapshots)


def test_capability_ebs(estate: Estate) -> None:
    snaps = cap()
    found = {r.native_id for r in snaps.tagged_resources("backup", "daily", ["aws.ec2.volume"])}
    assert found == {estate.vol_a, estate.vol_b}, "only volumes tagged backup=daily"
    any_value = {r.native_id for r in snaps.tagged_resources("backup", None, ["aws.ec2.volume"])}
    assert any_value == {estate.vol_a, estate.vol_b, estate.vol_weekly}
    vol_b = next(r for r in snaps.tagged_resources("backup", "daily", ["aws.ec2.volume"]) if r.native_id == estate.vol_b)

    marks = Marks(policy="test-daily", source=vol_b.resource_id, created_at=NOW, run=run_token("k"))
    call = snaps.create_call(vol_b, marks)
    made = snaps.create(vol_b, marks)
    assert call.action == "ec2:CreateSnapshot" and call.request["VolumeId"] == estate.vol_b
    assert made.is_ours("test-daily") and made.marks == marks and made.point_time == NOW
    assert made.tags[MANAGED_BY_KEY] == "backup_snapshots" and made.encrypted is True
    assert [s.snapshot_id for s in snaps.ours("test-daily", HOME, source=vol_b.resource_id)] == [made.snapshot_id]
    assert snaps.ours("other-daily", HOME) == [], "ours is per policy"
    available = snaps.wait_available(made, timeout=5, interval=0.1)

    copy = snaps.copy(available, DR, marks.copied(made.snapshot_id, run_token("k")))
    assert copy.region == DR and copy.marks is not None and copy.marks.copy_of == made.snapshot_id
    assert copy.point_time == NOW, "a copy stands for its original's point in time"
    assert copy.encrypted is True
    assert [s.snapshot_id for s in snaps.ours("test-daily", DR)] == [copy.snapshot_id]
    with pytest.raises(SnapshotError, match="another region"):
        snaps.copy_call(made, HOME, marks)

    # never a foreign snapshot, never another policy's
    foreign = snaps.get("aws.ec2.snapshot", estate.foreign_ebs, HOME)
    assert foreign is not None and not foreign.is_ours()
    with pytest.raises(NotOursError):
        snaps.delete(foreign, "test-daily")
    with pytest.raises(NotOursError, match="other-daily"):
        snaps.delete(made, "other-daily")
    assert snaps.get("aws.ec2.snapshot", estate.foreign_ebs, HOME) is not None
    snaps.delete(made, "test-daily")
    assert snaps.get("aws.ec2.snapshot", made.snapshot_id, HOME) is None
    snaps.delete(made, "test-daily")  # already gone: no error
    assert snaps.get("aws.ec2.snapshot", copy.snapshot_id, DR) is not None


def test_capability_rds_cross_region_copy(estate: Estate) -> None:
    snaps = cap()
    (db,) = snaps.tagged_resources("backup", "daily", ["aws.rds.instance"])
    assert db.native_id == estate.db and db.attributes["encrypted"] is True
    marks = Marks(policy="test-daily", source=db.resource_id, created_at=NOW, run=run_token("k"))
    made = snaps.create(db, marks)
    assert made.kind == "aws.rds.snapshot" and made.snapshot_id == "rb-test-daily-db-daily-20261128-100000"
    assert made.is_ours("test-daily") and made.status == "available"
    call = snaps.copy_call(made, DR, marks.copied(made.snapshot_id, "t"))
    assert call.action == "rds:CopyDBSnapshot"
    assert call.request["SourceDBSnapshotIdentifier"] == made.resource_id, "cross-region: the source's ARN"
    assert made.resource_id.startswith(f"arn:aws:rds:{HOME}:")
    assert call.request["SourceRegion"] == HOME and call.request["KmsKeyId"] == "alias/aws/rds"
    copy = snaps.copy(made, DR, marks.copied(made.snapshot_id, "t"))
    assert copy.region == DR and copy.resource_id.startswith(f"arn:aws:rds:{DR}:") and copy.is_ours("test-daily")
    assert [s.snapshot_id for s in snaps.ours("test-daily", DR, source=db.resource_id)] == [copy.snapshot_id]
    foreign = snaps.get("aws.rds.snapshot", estate.foreign_rds, HOME)
    assert foreign is not None and not foreign.is_ours()
    assert estate.foreign_rds not in {s.snapshot_id for s in snaps.ours("test-daily", HOME)}
    with pytest.raises(NotOursError):
        snaps.delete(foreign, "test-daily")
    snaps.delete(copy, "test-daily")
    assert snaps.get("aws.rds.snapshot", copy.snapshot_id, DR) is None
    assert snaps.get("aws.rds.snapshot", estate.foreign_rds, HOME) is not None


def test_capability_dynamodb_backups_are_named_ours_and_never_copied(estate: Estate) -> None:
    snaps = cap()
    (table,) = snaps.tagged_resources("backup", "daily", ["aws.dynamodb.table"])
    assert table.native_id == estate.table
    marks = Marks(policy="test-daily", source=table.resource_id, created_at=NOW, run=run_token("k"))
    made = snaps.create(table, marks)
    assert made.kind == "aws.dynamodb.backup" and made.name == f"backup_snapshots.test-daily.20261128T100000Z.{marks.run}"
    assert made.marks == marks, "the marks round-trip through the backup's name"
    assert [s.snapshot_id for s in snaps.ours("test-daily", HOME, source=table.resource_id)] == [made.snapshot_id]
    assert estate.foreign_ddb not in {s.snapshot_id for s in snaps.ours("test-daily", HOME)}
    refusal = snaps.copy_refusal("aws.dynamodb.table")
    assert refusal is not None and "cannot be copied to another region" in refusal
    assert snaps.copy_refusal("aws.ec2.volume") is None and snaps.copy_refusal("aws.rds.instance") is None
    with pytest.raises(CopyNotSupportedError):
        snaps.copy(made, DR, marks)
    foreign = snaps.get("aws.dynamodb.backup", estate.foreign_ddb, HOME)
    assert foreign is not None and not foreign.is_ours()
    with pytest.raises(NotOursError):
        snaps.delete(foreign, "test-daily")
    snaps.delete(made, "test-daily")
    assert snaps.get("aws.dynamodb.backup", made.snapshot_id, HOME) is None
    assert snaps.get("aws.dynamodb.backup", estate.foreign_ddb, HOME) is not None


def test_marks_are_all_or_nothing() -> None:
    marks = Marks(policy="p", source="arn:aws:ec2:us-east-1:1:volume/vol-1", created_at=NOW, run="abc",
                  copy_of="snap-1")
    assert Marks.from_tags(marks.tags()) == marks
    for missing in marks.tags():
        if missing in ("runbooks:copy-of", "runbooks:run"):  # optional: a copy's origin, the run that made it
            continue
        partial = {k: v for k, v in marks.tags().items() if k != missing}
        assert Marks.from_tags(partial) is None, f"without {missing} a snapshot is not ours"
    assert Marks.from_tags({**marks.tags(), MANAGED_BY_KEY: "someone-else"}) is None
    assert aws_snapshots.dynamodb_marks("manual-before-migration", "arn:aws:dynamodb:us-east-1:1:table/t") is None
    name = aws_snapshots.dynamodb_backup_name(marks)
    assert aws_snapshots.dynamodb_marks(name, "arn:x", backup_type="SYSTEM") is None, "only USER backups are ours"


def test_every_call_declares_its_permissions() -> None:
    snaps = aws_snapshots.AwsSnapshots(target())
    for action in aws_snapshots._CALLS:
        operation = {"Create": "create", "Copy": "copy", "Delete": "delete"}[
            next(v for v in ("Create", "Copy", "Delete") if action.split(":")[1].startswith(v))]
        assert action in snaps.permissions(operation), f"{action} is made but not declared under {operation}"
    for operation in ("list_resources", "create", "list_ours", "get", "delete"):
        for kind in ("aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table"):
            assert snaps.permissions(operation, kind), f"{operation} on {kind} declares nothing"
    assert snaps.permissions("copy", "aws.dynamodb.table") == (), "DynamoDB backups are never copied"
    assert "ec2:CreateTags" in STEPS[CREATE].permissions and "rds:AddTagsToResource" in STEPS[CREATE].permissions
    assert "rds:CopyDBSnapshot" in STEPS[COPY].permissions and "dynamodb:DeleteBackup" in STEPS[DELETE].permissions
    assert not any(p.startswith("dynamodb:") for p in STEPS[COPY].permissions)
    assert {"ec2:DescribeVolumes", "rds:DescribeDBInstances", "dynamodb:ListTagsOfResource"} <= set(all_permissions())


# ---- schedule and GFS retention (pure) ------------------------------------------------------------------
def _snap(at: datetime, status: str = "available") -> Snapshot:
    return Snapshot(kind="aws.ec2.snapshot", snapshot_id=f"snap-{at:%m%d%H%M}", resource_id="x", region=HOME,
                    status=status, cloud_created_at=at, marks=backdated("arn:src", at))


def test_due_by_the_policy_schedule() -> None:
    fired = datetime(2026, 11, 28, 2, 15, tzinfo=UTC)
    assert snapshot_due(POLICY, [], NOW, force=False).due, "never snapshotted: due"
    assert not snapshot_due(POLICY, [_snap(fired + timedelta(minutes=1))], NOW, force=False).due
    assert snapshot_due(POLICY, [_snap(fired - timedelta(minutes=1))], NOW, force=False).due
    assert not snapshot_due(POLICY, [_snap(fired - timedelta(minutes=1)), _snap(fired, "creating")], NOW,
                            force=False).due, "a snapshot being created counts"
    assert snapshot_due(POLICY, [_snap(fired, "failed")], NOW, force=False).due, "a failed one does not"
    assert snapshot_due(POLICY, [_snap(NOW)], NOW, force=True).due, "force: always"
    before_fire = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)
    assert not snapshot_due(POLICY, [_snap(datetime(2026, 11, 27, 2, 16, tzinfo=UTC))], before_fire, force=False).due


def _daily(first: datetime, days: int) -> list[Point]:
    return [Point(f"d{i}", first - timedelta(days=i)) for i in range(days)]


def test_gfs_keeps_the_newest_of_each_period() -> None:
    retention = Retention(daily=3, weekly=2, monthly=2)
    points = _daily(datetime(2026, 11, 28, 2, 15, tzinfo=UTC), 41)  # 2026-11-28 back to 2026-10-19
    kept = keep(points, retention)
    by_day = {p.id: p.at.strftime("%m-%d") for p in points}
    # daily: 11-28, 11-27, 11-26; weekly: W48 -> 11-28, W47 -> 11-22 (Sunday); monthly: Nov -> 11-28, Oct -> 10-31
    assert sorted(by_day[i] for i in kept) == ["10-31", "11-22", "11-26", "11-27", "11-28"]
    assert kept["d0"] == ["daily 2026-11-28", "weekly 2026-W48", "monthly 2026-11"]
    assert len(expired(points, retention)) == 36
    assert expired(points, retention)[0].at < expired(points, retention)[-1].at, "oldest first"


def test_gfs_counts_periods_that_have_a_point() -> None:
    # Backups stopped for two months: daily 3 keeps the three newest days that have a point, not nothing.
    points = [Point("a", datetime(2026, 9, 1, tzinfo=UTC)), Point("b", datetime(2026, 9, 2, tzinfo=UTC)),
              Point("c", datetime(2026, 9, 3, tzinfo=UTC)), Point("d", datetime(2026, 9, 4, tzinfo=UTC))]
    assert set(keep(points, Retention(daily=3, weekly=0, monthly=0))) == {"b", "c", "d"}
    assert set(keep(points, Retention(hourly=1, daily=0, weekly=0, monthly=0))) == {"d"}


@settings(max_examples=60, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=400 * 24), min_size=1, max_size=60, unique=True),
    rules=st.tuples(*(st.integers(min_value=0, max_value=6) for _ in range(4))).filter(any),
)
def test_gfs_properties(offsets: list[int], rules: tuple[int, int, int, int]) -> None:
    retention = Retention(hourly=rules[0], daily=rules[1], weekly=rules[2], monthly=rules[3])
    points = [Point(f"p{h}", NOW - timedelta(hours=h)) for h in offsets]
    kept = keep(points, retention)
    newest = max(points, key=lambda p: p.at)
    assert newest.id in kept, "the newest point is always kept"
    assert len(kept) <= sum(rules)
    assert {p.id for p in expired(points, retention)} == {p.id for p in points} - set(kept)
    for point_id, reasons in kept.items():  # each kept point is the newest of a period it is kept for
        at = next(p.at for p in points if p.id == point_id)
        for reason in reasons:
            rule, period = reason.split(" ")
            same = [p for p in points if PERIODS[rule](p.at) == period]
            assert max(same, key=lambda p: p.at).at == at


# ---- runs ----------------------------------------------------------------------------------------------
def test_a_run_snapshots_each_tagged_resource_once_and_copies_them(estate: Estate, ledger: Ledger) -> None:
    planned, verified = run(ledger)
    assert verified is not None
    kinds = sorted(split_step(i.step)[0] for i in planned.items if i.change is not None)
    assert kinds == [COPY] * 3 + [CREATE] * 4, "one snapshot per tagged resource, one copy per EBS / RDS one"
    assert all(i.outcome == "changed" and i.verified for i in verified.items), outcomes(verified)
    for source in estate.tagged:
        (home,) = ours(HOME, source)
        assert home.status == "available" and home.point_time == NOW
    for source in estate.tagged[:3]:  # EBS, EBS, RDS: one copy each in the second region, of that snapshot
        (copy,) = ours(DR, source)
        (home,) = ours(HOME, source)
        assert copy.marks is not None and copy.marks.copy_of == home.snapshot_id
    assert ours(DR, estate.tagged[3]) == [], "DynamoDB backups stay in their region"
    for source in estate.untagged:
        assert ours(HOME, source) == [], f"{source} is not tagged backup=daily: never snapshotted"
    assert len(ours(HOME)) == 4 and len(ours(DR)) == 3
    # the DynamoDB limit is reported, plainly
    (not_copied,) = planned.extra["policies"]["test-daily"]["not_copied"]
    assert not_copied["resource_id"] == estate.tagged[3] and "cannot be copied" in not_copied["reason"]

    written = runbook.write_reports(verified, run_id="run-1", final=True)
    saved = json.loads(Path(written["paths"]["test-daily"]).read_text())
    assert Path(written["paths"]["test-daily"]) == runbook.report_path("test-daily", "run-1")
    assert saved["status"] == "backed_up" and saved["approver"] == "policy:test-daily"
    assert len(saved["snapshots"]["created"]) == 4 and len(saved["snapshots"]["copied"]) == 3
    assert saved["snapshots"]["deleted"] == [] and written["problems"] == []
    assert {c["resource_id"] for c in saved["snapshots"]["created"]} == set(estate.tagged)


def test_a_second_run_the_same_day_creates_nothing(estate: Estate, ledger: Ledger) -> None:
    first, _ = run(ledger)
    before_home, before_dr = all_ebs_ids(HOME), all_ebs_ids(DR)
    later, applied = run(ledger, now=NOW + timedelta(hours=6), key="backup_snapshots:run-2")
    assert applied is None and not runbook.applies(later), "nothing due: the run takes the report_plan path"
    assert all(i.change is None and not i.plan_error for i in later.items)
    assert "not due" in later.extra["policies"]["test-daily"]["due"][estate.tagged[0]]
    assert (all_ebs_ids(HOME), all_ebs_ids(DR)) == (before_home, before_dr)
    assert len(ours(HOME)) == 4 and len(ours(DR)) == 3

    # the same change set applied again under the same key: the ledger says it is done
    again = runbook.apply(first, ledger=ledger, ledger_key="backup_snapshots:run-1", holder="test-retry")
    assert {i.outcome for i in again.items} == {"done_earlier"}
    # ... and without the ledger's record (a worker that died before recording): the steps find the run's
    # own snapshots by their run mark and write nothing
    fresh = Ledger.from_url(f"sqlite:///{Path(str(ledger.engine.url.database)).with_name('other.db')}")
    redo = runbook.apply(first, ledger=fresh, ledger_key="backup_snapshots:run-1", holder="test-lost")
    assert {i.outcome for i in redo.items} == {"unchanged"}, outcomes(redo)
    assert len(ours(HOME)) == 4 and len(ours(DR)) == 3 and all_ebs_ids(HOME) == before_home


def test_the_next_day_is_due_and_force_snapshots_once_per_run(estate: Estate, ledger: Ledger) -> None:
    run(ledger)
    _, next_day = run(ledger, now=NOW + timedelta(days=1), key="backup_snapshots:run-2")
    assert next_day is not None
    assert len(ours(HOME)) == 8 and len(ours(DR)) == 6
    # force: a new snapshot although none is due, once for this run's key
    _, forced = run(ledger, now=NOW + timedelta(days=1, hours=1), force=True, key="backup_snapshots:run-3")
    assert forced is not None
    created = [i for i in forced.items if split_step(i.step)[0] == CREATE and i.outcome == "changed"]
    assert len(created) == 4
    # the newest of the day replaces the earlier one of the same day (daily 3 keeps one per day)
    deleted = [i for i in forced.items if split_step(i.step)[0] == DELETE]
    assert {i.outcome for i in deleted} == {"changed"} and len(deleted) == 7
    assert len(ours(HOME)) == 8 and len(ours(DR)) == 6


def test_retention_keeps_the_gfs_set_and_deletes_only_our_expired_snapshots(estate: Estate, ledger: Ledger) -> None:
    snaps = cap()
    resources = {r.resource_id: r for r in snaps.tagged_resources("backup", "daily", list(aws_snapshots._KIND_OF))}
    vol_a, db, table = (resources[estate.tagged[0]], resources[estate.tagged[2]], resources[estate.tagged[3]])
    day = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)
    ebs = {(day - timedelta(days=i)).strftime("%m-%d"): snaps.create(vol_a, backdated(vol_a.resource_id,
                                                                                      day - timedelta(days=i)))
           for i in range(40)}  # 11-27 back to 10-19
    copies = {d: snaps.copy(ebs[d], DR, ebs[d].marks.copied(ebs[d].snapshot_id, "seedcopy"))  # type: ignore[union-attr]
              for d in ("11-27", "11-26", "11-25", "11-20")}
    rds = {d: snaps.create(db, backdated(db.resource_id, datetime(2026, int(d[:2]), int(d[3:]), 2, 15, tzinfo=UTC)))
           for d in ("11-27", "11-26", "11-25", "11-24", "10-15")}
    ddb = {d: snaps.create(table, backdated(table.resource_id, datetime(2026, 11, int(d[3:]), 2, 15, tzinfo=UTC)))
           for d in ("11-27", "11-20", "11-19")}
    # not ours: another policy's (old), and one carrying our policy's tags but not the managed-by mark
    other = snaps.create(vol_a, backdated(vol_a.resource_id, day - timedelta(days=400), policy="other-daily"))
    other_ddb = snaps.create(table, backdated(table.resource_id, day - timedelta(days=400), policy="other-daily"))
    half_marked = aws("ec2").create_snapshot(VolumeId=estate.vol_a, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in
                                             backdated(vol_a.resource_id, day - timedelta(days=300)).tags().items()
                                             if k != MANAGED_BY_KEY]}])["SnapshotId"]

    planned, verified = run(ledger)
    assert verified is not None
    deletes = [i for i in planned.items if split_step(i.step)[0] == DELETE]
    creates = {i.resource_id: i for i in planned.items if split_step(i.step)[0] == CREATE}
    copy_items = {i.resource_id: i for i in planned.items if split_step(i.step)[0] == COPY}
    for item in deletes:  # pruning a series waits for its new point
        assert item.change is not None and item.change.destructive
        source, region = item.record.attributes["source"], item.record.region
        prerequisite = creates[source] if region == HOME else copy_items[source]
        assert prerequisite.change is not None and item.change.depends_on == (prerequisite.change.key,)

    # EBS at home: daily 11-28 (new), 11-27, 11-26; weekly W48 new, W47 11-22; monthly Nov new, Oct 10-31
    home_a = {s.snapshot_id for s in ours(HOME, vol_a.resource_id)}
    assert {d for d, s in ebs.items() if s.snapshot_id in home_a} == {"11-27", "11-26", "11-22", "10-31"}
    assert len(home_a) == 5
    # EBS copies: daily new, 11-27, 11-26; weekly W47 11-20; no October copy
    dr_a = {s.snapshot_id for s in ours(DR, vol_a.resource_id)}
    assert {d for d, s in copies.items() if s.snapshot_id in dr_a} == {"11-27", "11-26", "11-20"} and len(dr_a) == 4
    # RDS: daily new, 11-27, 11-26; weekly W48 new, then the week of 10-15; monthly Nov new, Oct 10-15
    home_db = {s.snapshot_id for s in ours(HOME, db.resource_id)}
    assert {d for d, s in rds.items() if s.snapshot_id in home_db} == {"11-27", "11-26", "10-15"} and len(home_db) == 4
    # DynamoDB: daily new, 11-27, 11-20; weekly W47 11-20
    home_t = {s.snapshot_id for s in ours(HOME, table.resource_id)}
    assert {d for d, s in ddb.items() if s.snapshot_id in home_t} == {"11-27", "11-20"} and len(home_t) == 3

    # foreign snapshots and another policy's are untouched
    assert snaps.get("aws.ec2.snapshot", estate.foreign_ebs, HOME) is not None
    assert snaps.get("aws.ec2.snapshot", half_marked, HOME) is not None
    assert snaps.get("aws.ec2.snapshot", other.snapshot_id, HOME) is not None
    assert snaps.get("aws.rds.snapshot", estate.foreign_rds, HOME) is not None
    assert snaps.get("aws.dynamodb.backup", estate.foreign_ddb, HOME) is not None
    assert snaps.get("aws.dynamodb.backup", other_ddb.snapshot_id, HOME) is not None
    assert len(deletes) == 36 + 1 + 2 + 1
    assert all(i.outcome == "changed" and i.verified for i in verified.items), outcomes(verified)
    saved = runbook.write_reports(verified, run_id="ret-1", final=True)
    report = json.loads(Path(saved["paths"]["test-daily"]).read_text())
    assert len(report["snapshots"]["deleted"]) == 40
    retention = report["retention"][f"{vol_a.resource_id} @ {HOME}"]
    assert len(retention["expired"]) == 36 and "(the snapshot this run creates)" in retention["kept"]


def test_no_pruning_when_the_new_snapshot_fails(estate: Estate, ledger: Ledger) -> None:
    snaps = cap()
    vol = next(r for r in snaps.tagged_resources("backup", "daily", ["aws.ec2.volume"]) if r.native_id == estate.vol_a)
    old = [snaps.create(vol, backdated(vol.resource_id, NOW - timedelta(days=d))) for d in range(1, 8)]
    request = runbook.select({"policies": ["test-daily"]}, dry_run=False, run_key="backup_snapshots:fail", now=NOW,
                             config=CONFIG, wait=60, interval=0.1)
    planned = runbook.plan(request, runbook.find_resources(request))
    assert sum(1 for i in planned.items if i.change and i.change.operation == "delete") == 4
    aws("ec2").delete_volume(VolumeId=estate.vol_a)  # the volume disappears between plan and apply
    applied = runbook.apply(planned, ledger=ledger, ledger_key="backup_snapshots:fail", holder="test")
    by_step = {(split_step(i.step)[0], i.resource_id): i for i in applied.items}
    assert by_step[(CREATE, vol.resource_id)].outcome == "failed"
    assert by_step[(COPY, vol.resource_id)].outcome == "not_attempted"
    pruning = [i for i in applied.items if split_step(i.step)[0] == DELETE]
    assert pruning and {i.outcome for i in pruning} == {"not_attempted"}
    assert {s.snapshot_id for s in ours(HOME, vol.resource_id)} == {s.snapshot_id for s in old}, "nothing pruned"
    others = [i for i in applied.items if split_step(i.step)[0] == CREATE and i.resource_id != vol.resource_id]
    assert {i.outcome for i in others} == {"changed"}, "the other resources are backed up"
    started = time.monotonic()
    verified = runbook.verify(applied)
    assert time.monotonic() - started < 20, "nothing is awaited for a snapshot that was never made"
    failed_create = next(i for i in verified.items if i.step.startswith(CREATE) and i.resource_id == vol.resource_id)
    assert failed_create.verified is False and "no snapshot" in str(failed_create.verify_error)
    written = runbook.write_reports(verified, run_id="fail-1", final=True)
    assert written["statuses"]["test-daily"] == "failed"
    assert any("apply failed" in line and vol.resource_id in line for line in written["problems"])


def test_a_delete_of_a_foreign_snapshot_is_refused_even_if_asked(estate: Estate, ledger: Ledger) -> None:
    from include.changes.engine import Item

    snaps = cap()
    foreign = snaps.get("aws.ec2.snapshot", estate.foreign_ebs, HOME)
    assert foreign is not None
    request = runbook.select({"policies": ["test-daily"]}, dry_run=False, run_key="backup_snapshots:x", now=NOW,
                             config=CONFIG)
    item = Item(step=f"{DELETE}@test-daily", record=runbook.snapshot_record(target(), foreign, "asked by a test"))
    from include.changes import engine

    planned = engine.plan_items([item], runbook.resolver(request))
    assert planned[0].change is None and "refusing to delete" in str(planned[0].plan_error)
    applied = engine.apply_items(planned, runbook.resolver(request), ledger=ledger, ledger_key="k", holder="t")
    assert applied[0].outcome == "skipped"
    assert snaps.get("aws.ec2.snapshot", estate.foreign_ebs, HOME) is not None


def test_a_dry_run_changes_nothing(estate: Estate, ledger: Ledger, data_dir: Path) -> None:
    before = (all_ebs_ids(HOME), all_ebs_ids(DR))
    planned, applied = run(None, dry_run=True)
    assert applied is None and planned.dry_run and not runbook.applies(planned)
    assert len([i for i in planned.items if i.change is not None]) == 7, "the plan is real: reads ran"
    with pytest.raises(RequestError, match="dry run"):
        runbook.apply(planned, ledger=ledger, ledger_key="k", holder="t")
    assert (all_ebs_ids(HOME), all_ebs_ids(DR)) == before
    assert ours(HOME) == [] and ours(DR) == []
    written = runbook.write_reports(planned, run_id="dry-1", final=False)
    saved = json.loads(Path(written["paths"]["test-daily"]).read_text())
    assert saved["status"] == "dry_run" and saved["totals"]["planned_changes"] == 7 and saved["totals"]["changed"] == 0
    assert any("ec2:CreateSnapshot" in line for line in saved["plan"])
    assert Path(written["paths"]["test-daily"]).is_relative_to(data_dir / "backup" / "snapshots" / "test-daily" / "runs")


# ---- the request -----------------------------------------------------------------------------------------
def _context(conf: dict[str, Any], run_type: str = "manual") -> dict[str, Any]:
    params = {"dry_run": None, "policies": None, "force": None}  # what the DAG declares
    merged = {"dry_run": None, "policies": None, "force": None, **conf}
    return {"dag": SimpleNamespace(dag_id="backup_snapshots", params=params), "run_id": "manual__t",
            "dag_run": SimpleNamespace(conf=conf, run_type=run_type, dag_id="backup_snapshots"), "params": merged}


def test_bad_requests_are_refused_before_anything_is_read() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="unknown parameter.*'polices'"):
        runbook.select_task(_context({"polices": ["aws-tagged-daily"]}))
    with pytest.raises(AirflowFailException, match="unknown snapshot policies: nope; known: aws-tagged-daily"):
        runbook.select_task(_context({"policies": ["nope"]}))
    with pytest.raises(RequestError, match="force must be"):
        runbook.select({"force": "yes"}, dry_run=True, run_key="k", now=NOW, config=CONFIG)
    manual = runbook.Request.from_dict(runbook.select_task(_context({})))
    assert manual.dry_run and manual.names == ["aws-tagged-daily"], "a manual run is a dry run unless told"
    scheduled = runbook.Request.from_dict(runbook.select_task(_context({}, run_type="scheduled")))
    assert not scheduled.dry_run and scheduled.run_key == "backup_snapshots:manual__t"
    applied = runbook.Request.from_dict(runbook.select_task(_context({"dry_run": False, "force": True})))
    assert not applied.dry_run and applied.force


def test_policy_schedule_is_validated_at_load() -> None:
    text = ("snapshot_policies:\n  - {name: bad-cron, target: aws-prod, tag_key: backup, schedule: 'every day'}\n")
    with pytest.raises(BackupPolicyError, match="bad-cron: schedule"):
        parse_policies(text)


# ---- the DAG ---------------------------------------------------------------------------------------------
@pytest.fixture
def seeded_estate(seeded: Any, data_dir: Path) -> Iterator[Any]:
    yield seeded


@pytest.mark.slow
def test_dag_backs_up_the_demo_estate_and_a_rerun_changes_nothing(seeded_estate: Any, airflow_db: Path) -> None:
    from tests.dagrun import run_dag

    snaps = cap()
    foreign_before = all_ebs_ids(HOME)
    first = run_dag("backup_snapshots", {"dry_run": False})
    assert first["state"] == "success", first["output"][-5000:]
    assert first["tasks"]["report_plan"] == "skipped" and first["tasks"]["report"] == "success"
    saved = json.loads(runbook.report_path("aws-tagged-daily", first["run_id"]).read_text())
    assert saved["status"] == "backed_up" and saved["dry_run"] is False
    created = {c["resource_id"] for c in saved["snapshots"]["created"]}
    tagged = {r.resource_id for r in snaps.tagged_resources("backup", "daily", list(aws_snapshots._KIND_OF))}
    assert created == tagged and len(tagged) == 4, "vol-web-1-data, vol-orphan-unencrypted, rb-orders-db, rb-orders"
    assert len(saved["snapshots"]["copied"]) == 3 and len(saved["not_copied"]) == 1
    assert len(snaps.ours("aws-tagged-daily", DR)) == 3
    assert foreign_before <= all_ebs_ids(HOME), "the estate's own snapshots are untouched"

    second = run_dag("backup_snapshots", {"dry_run": False})
    assert second["state"] == "success", second["output"][-5000:]
    assert second["tasks"]["apply_snapshots"] == "skipped" and second["tasks"]["report_plan"] == "success"
    again = json.loads(runbook.report_path("aws-tagged-daily", second["run_id"]).read_text())
    assert again["status"] == "up_to_date" and again["totals"]["planned_changes"] == 0
    assert len(snaps.ours("aws-tagged-daily", HOME)) == 4 and len(snaps.ours("aws-tagged-daily", DR)) == 3
