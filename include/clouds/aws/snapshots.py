"""AWS as a :class:`~include.capabilities.snapshots.Snapshots`: EBS snapshots, RDS DB snapshots, DynamoDB backups.

Every call goes through the Amazon provider's hooks (:func:`include.clouds.aws.clients.client_for`: EC2Hook,
RdsHook, AwsBaseHook for DynamoDB) built from the target's connection id, one client per (service, region).

- **EBS volumes**: ``CreateSnapshot`` with the marks as tags (``TagSpecifications``), ``CopySnapshot`` called
  in the destination region with ``SourceRegion`` (an encrypted snapshot's copy is encrypted with the
  destination region's default EBS key), ``DeleteSnapshot``. Listing ours filters on the mark tags.
- **RDS instances**: ``CreateDBSnapshot`` (manual snapshot, identifier ``rb-<policy>-<db>-<time>``, marks as
  tags), ``CopyDBSnapshot`` called in the destination region with the source snapshot's ARN and
  ``SourceRegion`` (botocore presigns the cross-region request; an encrypted snapshot is re-encrypted with
  the destination's ``alias/aws/rds`` key, because a KMS key never leaves its region), ``DeleteDBSnapshot``.
  Aurora members are snapshotted per cluster, which this capability does not do: planning one says so.
- **DynamoDB tables**: ``CreateBackup`` (an on-demand backup), ``DeleteBackup``. Two plain limits of DynamoDB's
  own API: an on-demand backup takes **no tags** (only AWS Backup tags the backups it manages), so the marks
  are carried in the backup's name (``backup_snapshots.<policy>.<time>.<run>``: a backup is ours only when its
  name parses that way and it is a USER backup), and DynamoDB **cannot copy a backup to another region** (only
  AWS Backup can, which this platform does not drive yet): :meth:`AwsSnapshots.copy_refusal` says so and
  :meth:`AwsSnapshots.copy` raises :class:`~include.capabilities.snapshots.CopyNotSupportedError`, nothing
  is faked.

moto serves all of it (snapshots and copies are available at once there); AWS takes minutes to hours, which
is what :meth:`AwsSnapshots.wait_available` bounds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from include.capabilities.snapshots import (
    MANAGED_BY,
    MANAGED_BY_KEY,
    POLICY_KEY,
    SOURCE_KEY,
    CopyNotSupportedError,
    Marks,
    NotOursError,
    Operation,
    PlannedCall,
    Resource,
    Snapshot,
    SnapshotError,
    Status,
)
from include.changes.waiting import poll_until
from include.clouds.aws import ids
from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code
from include.records import utc_iso
from include.targets import Target

EBS = "aws.ec2.volume"
RDS = "aws.rds.instance"
DDB = "aws.dynamodb.table"
EBS_SNAPSHOT, RDS_SNAPSHOT, DDB_BACKUP = "aws.ec2.snapshot", "aws.rds.snapshot", "aws.dynamodb.backup"
_KIND_OF = {EBS: EBS_SNAPSHOT, RDS: RDS_SNAPSHOT, DDB: DDB_BACKUP}

#: The IAM actions each operation needs, per source resource type: what a least-privilege policy for the
#: ``backup_snapshots`` runbook grants. Tagging on create needs the tagging action as well; an encrypted
#: source needs KMS to re-encrypt its copy in the destination region.
_KMS_FOR_COPIES = ("kms:DescribeKey", "kms:CreateGrant", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo",
                   "kms:GenerateDataKeyWithoutPlaintext")
PERMISSIONS: dict[Operation, dict[str, tuple[str, ...]]] = {
    "list_resources": {
        EBS: ("ec2:DescribeVolumes",),
        RDS: ("rds:DescribeDBInstances",),
        DDB: ("dynamodb:ListTables", "dynamodb:DescribeTable", "dynamodb:ListTagsOfResource"),
    },
    "create": {
        EBS: ("ec2:CreateSnapshot", "ec2:CreateTags"),
        RDS: ("rds:CreateDBSnapshot", "rds:AddTagsToResource"),
        DDB: ("dynamodb:CreateBackup",),
    },
    "copy": {
        EBS: ("ec2:CopySnapshot", "ec2:CreateTags", *_KMS_FOR_COPIES),
        RDS: ("rds:CopyDBSnapshot", "rds:AddTagsToResource", *_KMS_FOR_COPIES),
        DDB: (),  # not possible through DynamoDB's API (see copy_refusal)
    },
    "list_ours": {
        EBS: ("ec2:DescribeSnapshots",),
        RDS: ("rds:DescribeDBSnapshots",),
        DDB: ("dynamodb:ListBackups",),
    },
    "get": {
        EBS: ("ec2:DescribeSnapshots",),
        RDS: ("rds:DescribeDBSnapshots",),
        DDB: ("dynamodb:DescribeBackup",),
    },
    "delete": {
        EBS: ("ec2:DescribeSnapshots", "ec2:DeleteSnapshot"),
        RDS: ("rds:DescribeDBSnapshots", "rds:DeleteDBSnapshot"),
        DDB: ("dynamodb:DescribeBackup", "dynamodb:DeleteBackup"),
    },
}

DYNAMODB_COPY_REFUSAL = (
    "DynamoDB on-demand backups cannot be copied to another region: DynamoDB's API has no such call (only AWS "
    "Backup copies DynamoDB backups across regions, and this platform does not drive AWS Backup yet). The "
    "table's backups stay in its own region; for a copy elsewhere use a global table or an AWS Backup plan."
)

#: Our DynamoDB backups' names carry the marks (on-demand backups take no tags).
_DDB_NAME = re.compile(
    r"^backup_snapshots\.(?P<policy>[a-z0-9][a-z0-9-]{0,62})\.(?P<at>\d{8}T\d{6}Z)\.(?P<run>[0-9a-f]{12})$"
)
#: API call -> (boto3 service, method): the planned call is exactly what is sent.
_CALLS = {
    "ec2:CreateSnapshot": ("ec2", "create_snapshot"),
    "ec2:CopySnapshot": ("ec2", "copy_snapshot"),
    "ec2:DeleteSnapshot": ("ec2", "delete_snapshot"),
    "rds:CreateDBSnapshot": ("rds", "create_db_snapshot"),
    "rds:CopyDBSnapshot": ("rds", "copy_db_snapshot"),
    "rds:DeleteDBSnapshot": ("rds", "delete_db_snapshot"),
    "dynamodb:CreateBackup": ("dynamodb", "create_backup"),
    "dynamodb:DeleteBackup": ("dynamodb", "delete_backup"),
}
_EBS_STATUS: dict[str, Status] = {"pending": "creating", "completed": "available", "error": "failed"}
_RDS_STATUS: dict[str, Status] = {"available": "available", "deleting": "deleting", "failed": "failed",
                                  "error": "failed"}
_DDB_STATUS: dict[str, Status] = {"CREATING": "creating", "AVAILABLE": "available"}
_NOT_FOUND = {"InvalidSnapshot.NotFound", "DBSnapshotNotFound", "DBSnapshotNotFoundFault", "BackupNotFoundException"}


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _tags(tag_list: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in tag_list or []}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _matches(tags: Mapping[str, str], key: str, value: str | None) -> bool:
    return key in tags and (value is None or tags[key] == value)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def rds_snapshot_identifier(marks: Marks, db_identifier: str) -> str:
    """``rb-<policy>-<db>-<yyyymmdd>-<hhmmss>``: RDS wants a letter first and no doubled or trailing hyphen."""
    raw = f"rb-{marks.policy}-{db_identifier}-{marks.created_at:%Y%m%d-%H%M%S}"
    return re.sub(r"-{2,}", "-", raw.lower())[:255].rstrip("-")


def dynamodb_backup_name(marks: Marks) -> str:
    """``backup_snapshots.<policy>.<yyyymmddThhmmssZ>.<run>``: the marks of a backup that takes no tags."""
    return f"backup_snapshots.{marks.policy}.{_stamp(marks.created_at)}.{marks.run}"


def dynamodb_marks(name: str, table_arn: str, backup_type: str = "USER") -> Marks | None:
    """The marks a DynamoDB backup's name carries, or None when it is not ours (any other name or type)."""
    match = _DDB_NAME.match(name or "")
    if not match or backup_type != "USER":
        return None
    at = datetime.strptime(match["at"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return Marks(policy=match["policy"], source=table_arn, created_at=at, run=match["run"])


def native_id(resource_type: str, resource_id: str) -> str:
    """The id the APIs want for a resource or snapshot ARN (vol-..., a DB identifier, a table name, snap-...,
    a DB snapshot identifier; a DynamoDB backup is known by its ARN). A malformed ARN is an error, never a guess."""
    if resource_type in (EBS, EBS_SNAPSHOT):
        return ids.ec2_resource_id(resource_id)
    if resource_type == RDS:
        return ids.rds_identifier(resource_id)
    if resource_type == RDS_SNAPSHOT:
        return ids.rds_snapshot_identifier(resource_id)
    if resource_type == DDB:
        return ids.dynamodb_table_name(resource_id)
    if resource_type == DDB_BACKUP:
        ids.dynamodb_table_name(resource_id)  # checks it is a DynamoDB ARN
        return resource_id
    raise ValueError(f"no snapshots of {resource_type}")


class AwsSnapshots:
    """Snapshots of one AWS target (its account, its regions, its connection)."""

    def __init__(self, target: Target, **_: Any) -> None:
        if target.cloud != "aws":
            raise ValueError(f"AwsSnapshots needs an aws target, not {target.cloud} ({target.name})")
        self.target = target
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = client_for(self.target, service, region)
            return self._clients[key]

    def _send(self, call: PlannedCall, region: str) -> Any:
        service, method = _CALLS[call.action]
        return getattr(self._client(service, region), method)(**call.request)

    @staticmethod
    def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])

    # ---- permissions -------------------------------------------------------------------------
    def permissions(self, operation: Operation, resource_type: str | None = None) -> tuple[str, ...]:
        """The IAM actions ``operation`` needs (for one source resource type, or for all of them)."""
        table = PERMISSIONS[operation]
        if resource_type is not None:
            if resource_type not in table:
                raise ValueError(f"no snapshots of {resource_type} (known: {', '.join(table)})")
            return table[resource_type]
        return tuple(sorted({p for perms in table.values() for p in perms}))

    # ---- tagged resources --------------------------------------------------------------------
    def tagged_resources(
        self, tag_key: str, tag_value: str | None, resource_types: Sequence[str], regions: Sequence[str] | None = None,
    ) -> list[Resource]:
        unknown = sorted(set(resource_types) - set(_KIND_OF))
        if unknown:
            raise ValueError(f"cannot snapshot {', '.join(unknown)} (known: {', '.join(_KIND_OF)})")
        found: list[Resource] = []
        for region in regions or self.target.regions:
            if EBS in resource_types:
                found += self._volumes(region, tag_key, tag_value)
            if RDS in resource_types:
                found += self._db_instances(region, tag_key, tag_value)
            if DDB in resource_types:
                found += self._tables(region, tag_key, tag_value)
        return sorted(found, key=lambda r: (r.resource_type, r.region, r.resource_id))

    def _volumes(self, region: str, key: str, value: str | None) -> list[Resource]:
        by_tag = {"Name": f"tag:{key}", "Values": [value]} if value is not None else {"Name": "tag-key", "Values": [key]}
        found = []
        for vol in self._pages(self._client("ec2", region), "describe_volumes", "Volumes", Filters=[by_tag]):
            tags = _tags(vol.get("Tags"))
            if not _matches(tags, key, value) or vol.get("State") in ("deleting", "deleted"):
                continue
            vid = vol["VolumeId"]
            found.append(Resource(
                resource_type=EBS, resource_id=ids.ec2_arn(region, self.target.account, "volume", vid), native_id=vid,
                region=region, name=tags.get("Name") or vid, tags=tags,
                attributes={"encrypted": bool(vol.get("Encrypted")), "size_gb": vol.get("Size"), "state": vol.get("State")},
            ))
        return found

    def _db_instances(self, region: str, key: str, value: str | None) -> list[Resource]:
        found = []
        for db in self._pages(self._client("rds", region), "describe_db_instances", "DBInstances"):
            tags = _tags(db.get("TagList"))
            if not _matches(tags, key, value) or db.get("DBInstanceStatus") == "deleting":
                continue
            ident = db["DBInstanceIdentifier"]
            found.append(Resource(
                resource_type=RDS,
                resource_id=db.get("DBInstanceArn") or ids.rds_instance_arn(region, self.target.account, ident),
                native_id=ident, region=region, name=ident, tags=tags,
                attributes={"engine": db.get("Engine"), "encrypted": bool(db.get("StorageEncrypted")),
                            "status": db.get("DBInstanceStatus"), "cluster": db.get("DBClusterIdentifier")},
            ))
        return found

    def _tables(self, region: str, key: str, value: str | None) -> list[Resource]:
        ddb = self._client("dynamodb", region)
        found = []
        for name in self._pages(ddb, "list_tables", "TableNames"):
            table = ddb.describe_table(TableName=name)["Table"]
            arn = table["TableArn"]
            tags = _tags(self._pages(ddb, "list_tags_of_resource", "Tags", ResourceArn=arn))
            if not _matches(tags, key, value) or table.get("TableStatus") == "DELETING":
                continue
            found.append(Resource(resource_type=DDB, resource_id=arn, native_id=name, region=region, name=name,
                                  tags=tags, attributes={"status": table.get("TableStatus")}))
        return found

    # ---- snapshots as the cloud reports them -------------------------------------------------
    def _ebs(self, snap: Mapping[str, Any], region: str) -> Snapshot:
        tags = _tags(snap.get("Tags"))
        sid = str(snap["SnapshotId"])
        return Snapshot(kind=EBS_SNAPSHOT, snapshot_id=sid, resource_id=ids.ec2_snapshot_arn(region, sid),
                        region=region, status=_EBS_STATUS.get(str(snap.get("State")), "creating"),
                        cloud_created_at=_utc(snap.get("StartTime")), marks=Marks.from_tags(tags), tags=tags,
                        name=tags.get("Name", sid), encrypted=snap.get("Encrypted"))

    def _rds(self, snap: Mapping[str, Any], region: str) -> Snapshot:
        tags = _tags(snap.get("TagList"))
        ident = str(snap["DBSnapshotIdentifier"])
        return Snapshot(kind=RDS_SNAPSHOT, snapshot_id=ident,
                        resource_id=snap.get("DBSnapshotArn") or ids.rds_snapshot_arn(region, self.target.account, ident),
                        region=region, status=_RDS_STATUS.get(str(snap.get("Status")), "creating"),
                        cloud_created_at=_utc(snap.get("SnapshotCreateTime")), marks=Marks.from_tags(tags), tags=tags,
                        name=ident, encrypted=snap.get("Encrypted"))

    @staticmethod
    def _ddb(details: Mapping[str, Any], table_arn: str, region: str) -> Snapshot:
        arn = str(details["BackupArn"])
        name = str(details.get("BackupName") or "")
        return Snapshot(kind=DDB_BACKUP, snapshot_id=arn, resource_id=arn, region=region,
                        status=_DDB_STATUS.get(str(details.get("BackupStatus")), "creating"),
                        cloud_created_at=_utc(details.get("BackupCreationDateTime")),
                        marks=dynamodb_marks(name, table_arn, str(details.get("BackupType") or "")), name=name)

    # ---- create ------------------------------------------------------------------------------
    def create_call(self, resource: Resource, marks: Marks) -> PlannedCall:
        when = utc_iso(marks.created_at)
        if resource.resource_type == EBS:
            tags = {"Name": f"{resource.name} ({marks.policy} {when})", **marks.tags()}
            return PlannedCall("ec2:CreateSnapshot", {
                "VolumeId": resource.native_id,
                "Description": f"backup_snapshots {marks.policy}: {resource.name} at {when}",
                "TagSpecifications": [{"ResourceType": "snapshot", "Tags": _tag_list(tags)}],
            })
        if resource.resource_type == RDS:
            cluster = resource.attributes.get("cluster")
            if cluster:
                raise SnapshotError(f"{resource.native_id} is a member of Aurora cluster {cluster}: Aurora is "
                                    "snapshotted per cluster (CreateDBClusterSnapshot), which is not built yet")
            return PlannedCall("rds:CreateDBSnapshot", {
                "DBSnapshotIdentifier": rds_snapshot_identifier(marks, resource.native_id),
                "DBInstanceIdentifier": resource.native_id,
                "Tags": _tag_list(marks.tags()),
            })
        if resource.resource_type == DDB:
            return PlannedCall("dynamodb:CreateBackup",
                               {"TableName": resource.native_id, "BackupName": dynamodb_backup_name(marks)})
        raise ValueError(f"cannot snapshot {resource.resource_type}")

    def create(self, resource: Resource, marks: Marks) -> Snapshot:
        if marks.source != resource.resource_id:
            raise ValueError(f"marks name {marks.source} as the source, not {resource.resource_id}")
        response = self._send(self.create_call(resource, marks), resource.region)
        if resource.resource_type == EBS:
            return self._ebs(response, resource.region)
        if resource.resource_type == RDS:
            return self._rds(response["DBSnapshot"], resource.region)
        return self._ddb(response["BackupDetails"], resource.resource_id, resource.region)

    # ---- copy --------------------------------------------------------------------------------
    def copy_refusal(self, resource_type: str) -> str | None:
        return DYNAMODB_COPY_REFUSAL if resource_type == DDB else None

    def copy_call(self, snapshot: Snapshot, region: str, marks: Marks) -> PlannedCall:
        if snapshot.kind == DDB_BACKUP:
            raise CopyNotSupportedError(DYNAMODB_COPY_REFUSAL)
        if region == snapshot.region:
            raise SnapshotError(f"{snapshot.snapshot_id} is already in {region}: a copy goes to another region")
        when = utc_iso(marks.created_at)
        if snapshot.kind == EBS_SNAPSHOT:
            tags = {"Name": f"{snapshot.name} (copy)", **marks.tags()}
            return PlannedCall("ec2:CopySnapshot", {
                "SourceRegion": snapshot.region,
                "SourceSnapshotId": snapshot.snapshot_id,
                "Description": f"backup_snapshots {marks.policy}: copy of {snapshot.snapshot_id} "
                               f"({snapshot.region}) at {when}",
                "TagSpecifications": [{"ResourceType": "snapshot", "Tags": _tag_list(tags)}],
            })
        if snapshot.kind == RDS_SNAPSHOT:
            request: dict[str, Any] = {
                "SourceDBSnapshotIdentifier": snapshot.resource_id,  # cross-region: the source's ARN
                "TargetDBSnapshotIdentifier": snapshot.snapshot_id,
                "SourceRegion": snapshot.region,
                "Tags": _tag_list(marks.tags()),
                "CopyTags": False,
            }
            if snapshot.encrypted:  # a KMS key never leaves its region: re-encrypt with the destination's
                request["KmsKeyId"] = "alias/aws/rds"
            return PlannedCall("rds:CopyDBSnapshot", request)
        raise ValueError(f"cannot copy {snapshot.kind}")

    def copy(self, snapshot: Snapshot, region: str, marks: Marks) -> Snapshot:
        if snapshot.status != "available":
            raise SnapshotError(f"{snapshot.snapshot_id} is {snapshot.status}: only an available snapshot is copied")
        response = self._send(self.copy_call(snapshot, region, marks), region)
        if snapshot.kind == RDS_SNAPSHOT:
            return self._rds(response["DBSnapshot"], region)
        copied = self.get(EBS_SNAPSHOT, response["SnapshotId"], region)
        if copied is None:  # describe is eventually consistent on AWS: report what was asked for
            tags = marks.tags()
            return Snapshot(kind=EBS_SNAPSHOT, snapshot_id=response["SnapshotId"],
                            resource_id=ids.ec2_snapshot_arn(region, response["SnapshotId"]), region=region,
                            status="creating", cloud_created_at=None, marks=marks, tags=tags)
        return copied

    # ---- ours, one, delete -------------------------------------------------------------------
    def ours(self, policy: str, region: str, *, source: str | None = None,
             kinds: Sequence[str] | None = None) -> list[Snapshot]:
        wanted = set(kinds or (EBS_SNAPSHOT, RDS_SNAPSHOT, DDB_BACKUP))
        if source is not None:
            source_kind = _KIND_OF.get(self._source_type(source))
            wanted &= {source_kind} if source_kind else set()
        found: list[Snapshot] = []
        if EBS_SNAPSHOT in wanted:
            found += self._ours_ebs(policy, region, source)
        if RDS_SNAPSHOT in wanted:
            found += [s for s in self._pages_rds(region) if s.is_ours(policy)]
        if DDB_BACKUP in wanted:
            found += self._ours_ddb(region, source)
        mine = [s for s in found if s.is_ours(policy) and (source is None or (s.marks and s.marks.source == source))]
        return sorted(mine, key=lambda s: (s.point_time or datetime.min.replace(tzinfo=UTC), s.snapshot_id))

    @staticmethod
    def _source_type(source: str) -> str:
        service = ids.parse_arn(source)["service"]
        return {"ec2": EBS, "rds": RDS, "dynamodb": DDB}.get(service, "")

    def _ours_ebs(self, policy: str, region: str, source: str | None) -> list[Snapshot]:
        filters = [
            {"Name": "owner-id", "Values": [self.target.account]},  # moto ignores OwnerIds; AWS honours both
            {"Name": f"tag:{MANAGED_BY_KEY}", "Values": [MANAGED_BY]},
            {"Name": f"tag:{POLICY_KEY}", "Values": [policy]},
        ]
        if source is not None:
            filters.append({"Name": f"tag:{SOURCE_KEY}", "Values": [source]})
        snaps = self._pages(self._client("ec2", region), "describe_snapshots", "Snapshots",
                            OwnerIds=["self"], Filters=filters)
        return [self._ebs(s, region) for s in snaps]

    def _pages_rds(self, region: str) -> Iterator[Snapshot]:
        # DescribeDBSnapshots filters on neither tags nor a source ARN: read the manual snapshots and their tags.
        for snap in self._pages(self._client("rds", region), "describe_db_snapshots", "DBSnapshots",
                                SnapshotType="manual"):
            yield self._rds(snap, region)

    def _ours_ddb(self, region: str, source: str | None) -> list[Snapshot]:
        ddb = self._client("dynamodb", region)
        args: dict[str, Any] = {"BackupType": "USER"}
        if source is not None:
            args["TableName"] = ids.dynamodb_table_name(source)
        found = []
        while True:
            page = ddb.list_backups(**args)
            for summary in page.get("BackupSummaries", []):
                if summary.get("BackupStatus") != "DELETED":
                    found.append(self._ddb(summary, str(summary.get("TableArn") or ""), region))
            last = page.get("LastEvaluatedBackupArn")
            if not last:
                return found
            args["ExclusiveStartBackupArn"] = last

    def get(self, kind: str, snapshot_id: str, region: str) -> Snapshot | None:
        try:
            if kind == EBS_SNAPSHOT:
                snaps = self._client("ec2", region).describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
                return self._ebs(snaps[0], region) if snaps else None
            if kind == RDS_SNAPSHOT:
                snaps = self._client("rds", region).describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)[
                    "DBSnapshots"]
                return self._rds(snaps[0], region) if snaps else None
            if kind == DDB_BACKUP:
                found = self._client("dynamodb", region).describe_backup(BackupArn=snapshot_id)["BackupDescription"]
                details = found["BackupDetails"]
                if details.get("BackupStatus") == "DELETED":
                    return None
                return self._ddb(details, str(found.get("SourceTableDetails", {}).get("TableArn") or ""), region)
        except Exception as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise
        raise ValueError(f"unknown snapshot kind {kind!r}")

    def delete_call(self, snapshot: Snapshot) -> PlannedCall:
        if snapshot.kind == EBS_SNAPSHOT:
            return PlannedCall("ec2:DeleteSnapshot", {"SnapshotId": snapshot.snapshot_id})
        if snapshot.kind == RDS_SNAPSHOT:
            return PlannedCall("rds:DeleteDBSnapshot", {"DBSnapshotIdentifier": snapshot.snapshot_id})
        if snapshot.kind == DDB_BACKUP:
            return PlannedCall("dynamodb:DeleteBackup", {"BackupArn": snapshot.snapshot_id})
        raise ValueError(f"unknown snapshot kind {snapshot.kind!r}")

    def delete(self, snapshot: Snapshot, policy: str) -> None:
        current = self.get(snapshot.kind, snapshot.snapshot_id, snapshot.region)
        if current is None:
            return
        if not current.is_ours(policy):
            whose = f"policy {current.marks.policy!r}" if current.marks else "no runbooks marks"
            raise NotOursError(f"{current.kind} {current.snapshot_id} ({current.region}) was not made by this platform "
                               f"under policy {policy!r} ({whose}): it is never deleted")
        if current.status == "creating":
            raise SnapshotError(f"{current.snapshot_id} is still being created: not deleted")
        try:
            self._send(self.delete_call(current), current.region)
        except Exception as exc:
            if error_code(exc) not in _NOT_FOUND:
                raise

    # ---- wait --------------------------------------------------------------------------------
    def wait_available(self, snapshot: Snapshot, *, timeout: float, interval: float) -> Snapshot:
        def settled(found: Snapshot | None) -> bool:
            return found is None or found.status != "creating"

        found = poll_until(lambda: self.get(snapshot.kind, snapshot.snapshot_id, snapshot.region), settled,
                           timeout=timeout, interval=interval,
                           what=f"{snapshot.kind} {snapshot.snapshot_id} ({snapshot.region}) to become available")
        if found is None:
            raise SnapshotError(f"{snapshot.kind} {snapshot.snapshot_id} ({snapshot.region}) no longer exists")
        if found.status != "available":
            raise SnapshotError(f"{snapshot.kind} {snapshot.snapshot_id} ({snapshot.region}) is {found.status}")
        return found
