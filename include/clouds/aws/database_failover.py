"""RDS implementation of the database-failover capability (emulator-verified on moto server).

Every call goes through the Amazon provider's hooks (:func:`include.clouds.aws.clients.client_for`: RDS
through ``RdsHook``, CloudWatch and EC2 through their hooks' sessions). boto3 is imported only by the hooks.

- **Replica or not.** A replica names its source in ``ReadReplicaSourceDBInstanceIdentifier``; RDS drops
  that field when the replica is promoted. When this module promotes an instance it also tags it
  ``runbooks-promoted-from=<source>`` (who promoted what is then visible on the instance itself). moto keeps
  naming the old source after a promotion, so an instance whose promotion tag names its current source is
  not a replica any more; on RDS the field alone decides (a promoted instance has no source).
- **Lag** is CloudWatch's ``AWS/RDS ReplicaLag`` (seconds, published every minute by RDS for replicas); no
  datapoint in the last ``LAG_WINDOW`` seconds = unknown. On the emulator nothing publishes it: the local
  estate (``localdev/failover_estate.py``) plays RDS's part.
- **Fencing** replaces the instance's VPC security groups by a quarantine group (no ingress), named in the
  catalog, so no application can reach the old primary; the instance keeps running (RDS cannot stop an
  instance that still has read replicas). The tag ``runbooks-fence=<group id>`` records which group is the
  quarantine; the instance is fenced while that is its only group.
- **Retire** renames the instance (``NewDBInstanceIdentifier``): its data is kept for forensics and the
  catalog's name is free for a new replica.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from include.capabilities.database_failover import (
    DatabaseRef,
    DatabaseStatus,
    FenceOptions,
    NotSupported,
    ReplicaOptions,
)
from include.clouds.aws import ids
from include.clouds.aws.clients import client_for
from include.clouds.errors import is_not_found
from include.targets import Target

PROMOTED_TAG = "runbooks-promoted-from"
PROMOTED_AT_TAG = "runbooks-promoted-at"
FENCE_TAG = "runbooks-fence"
#: How far back a ReplicaLag datapoint may be to count (RDS publishes one a minute).
LAG_WINDOW = 600
AVAILABLE_STATES = ("available",)


class RdsFailover:
    """RDS DB instances of one target, in any of its regions."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "status": ("rds:DescribeDBInstances", "rds:ListTagsForResource", "cloudwatch:GetMetricData"),
        "promote": ("rds:PromoteReadReplica", "rds:AddTagsToResource"),
        "create_replica": ("rds:CreateDBInstanceReadReplica", "rds:AddTagsToResource", "kms:CreateGrant",
                           "kms:DescribeKey"),
        "fence": ("rds:ModifyDBInstance", "rds:AddTagsToResource", "ec2:DescribeSecurityGroups"),
        "retire": ("rds:ModifyDBInstance",),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, service: str, region: str) -> Any:
        with self._lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = client_for(self.target, service, region)
            return self._clients[key]

    def arn(self, db: DatabaseRef) -> str:
        return ids.rds_instance_arn(db.region, db.account, db.identifier)

    def _describe(self, db: DatabaseRef) -> dict[str, Any] | None:
        try:
            found = self._client("rds", db.region).describe_db_instances(DBInstanceIdentifier=db.identifier)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        instances: list[dict[str, Any]] = found["DBInstances"]
        return instances[0] if instances else None

    # ---- reads -----------------------------------------------------------------------------------------
    def status(self, db: DatabaseRef) -> DatabaseStatus:
        instance = self._describe(db)
        if instance is None:
            return DatabaseStatus(identifier=db.identifier, exists=False)
        arn = str(instance.get("DBInstanceArn") or self.arn(db))
        tags = {t["Key"]: t.get("Value", "") for t in
                self._client("rds", db.region).list_tags_for_resource(ResourceName=arn).get("TagList", [])}
        source = instance.get("ReadReplicaSourceDBInstanceIdentifier") or None
        is_replica = bool(source) and tags.get(PROMOTED_TAG) != source
        groups = [g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups") or []]
        fence_group = tags.get(FENCE_TAG)
        infos = [i for i in instance.get("StatusInfos") or [] if i.get("StatusType") == "read replication"]
        lag, seen = self._lag(db) if is_replica else (None, None)
        state = str(instance.get("DBInstanceStatus") or "")
        endpoint = instance.get("Endpoint") or {}
        return DatabaseStatus(
            identifier=db.identifier,
            exists=True,
            state=state,
            available=state in AVAILABLE_STATES,
            is_replica=is_replica,
            source=str(source) if is_replica else None,
            replication_state=str(infos[0].get("Status")) if infos else ("replicating" if is_replica else None),
            lag_seconds=lag,
            lag_observed_at=seen,
            fenced=bool(fence_group) and groups == [fence_group],
            endpoint=f"{endpoint['Address']}:{endpoint.get('Port')}" if endpoint.get("Address") else None,
            resource_id=arn,
            detail={"security_groups": groups, "instance_class": instance.get("DBInstanceClass"),
                    "engine": instance.get("Engine"), "promoted_from": tags.get(PROMOTED_TAG)},
        )

    def _lag(self, db: DatabaseRef) -> tuple[float | None, str | None]:
        """The newest ReplicaLag datapoint of the last LAG_WINDOW seconds (None: no datapoint)."""
        now = datetime.now(UTC)
        answer = self._client("cloudwatch", db.region).get_metric_data(
            MetricDataQueries=[{
                "Id": "lag",
                "MetricStat": {
                    "Metric": {"Namespace": "AWS/RDS", "MetricName": "ReplicaLag",
                               "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": db.identifier}]},
                    "Period": 60,
                    "Stat": "Maximum",
                },
            }],
            StartTime=now - timedelta(seconds=LAG_WINDOW),
            EndTime=now + timedelta(seconds=60),
            ScanBy="TimestampDescending",
        )
        for result in answer.get("MetricDataResults", []):
            points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=False),
                            key=lambda p: p[0], reverse=True)
            if points:
                when, value = points[0]
                return float(value), when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return None, None

    # ---- writes ----------------------------------------------------------------------------------------
    def promote(self, db: DatabaseRef) -> dict[str, Any]:
        instance = self._describe(db)
        if instance is None:
            raise NotSupported(f"RDS instance {db.identifier} ({db.region}) does not exist: nothing to promote")
        source = str(instance.get("ReadReplicaSourceDBInstanceIdentifier") or "")
        request = {"DBInstanceIdentifier": db.identifier}
        client = self._client("rds", db.region)
        client.promote_read_replica(**request)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        client.add_tags_to_resource(ResourceName=str(instance.get("DBInstanceArn") or self.arn(db)),
                                    Tags=[{"Key": PROMOTED_TAG, "Value": source}, {"Key": PROMOTED_AT_TAG, "Value": now}])
        return request

    def create_replica(self, source: DatabaseRef, replica: DatabaseRef, options: ReplicaOptions) -> dict[str, Any]:
        cross_region = source.region != replica.region
        request: dict[str, Any] = {
            "DBInstanceIdentifier": replica.identifier,
            "SourceDBInstanceIdentifier": self.arn(source) if cross_region else source.identifier,
            "Tags": [{"Key": "runbooks-replica-of", "Value": self.arn(source)}],
        }
        if cross_region:
            request["SourceRegion"] = source.region
        if options.instance_class:
            request["DBInstanceClass"] = options.instance_class
        if options.kms_key:
            request["KmsKeyId"] = options.kms_key
        self._client("rds", replica.region).create_db_instance_read_replica(**request)
        return request

    def _security_group(self, region: str, name_or_id: str) -> str:
        if name_or_id.startswith("sg-"):
            return name_or_id
        groups = self._client("ec2", region).describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [name_or_id]}])["SecurityGroups"]
        if len(groups) != 1:
            raise NotSupported(f"quarantine security group {name_or_id!r} in {region}: found {len(groups)} groups "
                               "by that name, need exactly one")
        return str(groups[0]["GroupId"])

    def fence(self, db: DatabaseRef, options: FenceOptions) -> dict[str, Any]:
        if not options.security_group:
            raise NotSupported(f"{db.identifier}: no quarantine security group in the service catalog "
                               "(primary.fence.security_group): RDS fencing replaces the instance's security groups")
        group = self._security_group(db.region, options.security_group)
        request = {"DBInstanceIdentifier": db.identifier, "VpcSecurityGroupIds": [group], "ApplyImmediately": True}
        client = self._client("rds", db.region)
        client.modify_db_instance(**request)
        client.add_tags_to_resource(ResourceName=self.arn(db), Tags=[{"Key": FENCE_TAG, "Value": group}])
        return request

    def retire(self, db: DatabaseRef, new_identifier: str) -> dict[str, Any]:
        request = {"DBInstanceIdentifier": db.identifier, "NewDBInstanceIdentifier": new_identifier,
                   "ApplyImmediately": True}
        self._client("rds", db.region).modify_db_instance(**request)
        return request
