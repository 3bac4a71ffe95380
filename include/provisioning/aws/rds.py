"""RDS DB instances and read replicas (``replica_of``: same region or across regions).

The master password is never in the spec, the plan, the logs or XCom: RDS generates it and keeps it in
Secrets Manager (``ManageMasterUserPassword``). Teardown takes a final snapshot unless ``final_snapshot``
is false (replicas have none); deletion protection makes the teardown refuse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from include.changes.waiting import poll_until
from include.clouds.aws.ids import ArnError, parse_arn, rds_instance_arn
from include.provisioning.aws.common import AwsStep, code_of, is_missing, tag_dict, tag_list
from include.provisioning.base import AlreadyExists, Live
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

#: A replica can only be made from an available source (minutes on AWS after the source's creation).
SOURCE_WAIT = 3600.0
_MODIFIABLE = {  # spec field -> ModifyDBInstance argument
    "instance_class": "DBInstanceClass", "storage_gb": "AllocatedStorage",
    "backup_retention_days": "BackupRetentionPeriod", "multi_az": "MultiAZ",
    "publicly_accessible": "PubliclyAccessible", "deletion_protection": "DeletionProtection",
    "security_groups": "VpcSecurityGroupIds",
}


def source_identifier(value: str) -> str:
    """``arn:aws:rds:<region>:<account>:db:<id>`` or ``<id>`` -> ``<id>``."""
    try:
        resource = parse_arn(value)["resource"]
    except ArnError:
        return value
    return resource[3:] if resource.startswith("db:") else resource


@provisions(
    "rds",
    read=("rds:DescribeDBInstances",),
    create=("rds:CreateDBInstance", "rds:CreateDBInstanceReadReplica", "rds:AddTagsToResource",
            "secretsmanager:CreateSecret", "kms:DescribeKey"),
    update=("rds:ModifyDBInstance", "rds:AddTagsToResource", "rds:RemoveTagsFromResource"),
    delete=("rds:DeleteDBInstance", "rds:CreateDBSnapshot"),
    actions={"create": "rds:CreateDBInstance (ManageMasterUserPassword) / rds:CreateDBInstanceReadReplica",
             "update": "rds:ModifyDBInstance (ApplyImmediately) / rds:AddTagsToResource|RemoveTagsFromResource",
             "delete": "rds:DeleteDBInstance (final snapshot unless final_snapshot: false)"},
)
class RdsInstance(AwsStep):
    """An RDS DB instance, or a read replica of one (``replica_of``)."""

    immutable = ("engine", "engine_version", "storage_encrypted", "kms_key", "replica_of")
    optimistic_create = True  # identifiers are unique per region (DBInstanceAlreadyExists)
    #: RDS creates, modifies and deletes asynchronously (minutes): verify re-reads every 30 s for 40 min.
    verify_wait = 2400.0
    verify_interval = 30.0

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        common: dict[str, Any] = {"publicly_accessible": bool(props.get("publicly_accessible", False)),
                  "multi_az": bool(props.get("multi_az", False)),
                  "deletion_protection": bool(props.get("deletion_protection", False))}
        if props.get("instance_class"):
            common["instance_class"] = props["instance_class"]
        if props.get("security_groups"):
            common["security_groups"] = sorted(props["security_groups"])
        if props.get("replica_of"):
            return {**common, "replica_of": source_identifier(str(props["replica_of"]))}
        want = {**common, "engine": props["engine"], "storage_gb": int(props.get("storage_gb") or 20),
                "storage_encrypted": bool(props.get("storage_encrypted", True)),
                "backup_retention_days": int(props.get("backup_retention_days", 7))}
        if props.get("engine_version"):
            want["engine_version"] = str(props["engine_version"])
        if props.get("kms_key"):
            want["kms_key"] = props["kms_key"]
        return want

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        rds = self.aws(res, "rds")
        try:
            db = rds.describe_db_instances(DBInstanceIdentifier=str(props["name"]))["DBInstances"][0]
        except Exception as exc:
            if is_missing(exc, "DBInstanceNotFound", "DBInstanceNotFoundFault"):
                return None
            raise
        status = str(db.get("DBInstanceStatus"))
        if status == "deleting":
            return None  # on its way out: for provisioning it is gone (a create waits for the name)
        tags = tag_dict(db.get("TagList"))
        endpoint = db.get("Endpoint") or {}
        outputs = {"id": db["DBInstanceIdentifier"], "name": db["DBInstanceIdentifier"], "arn": db.get("DBInstanceArn"),
                   "endpoint": endpoint.get("Address"), "port": endpoint.get("Port")}
        source = db.get("ReadReplicaSourceDBInstanceIdentifier")
        fields = {
            "engine": db.get("Engine"), "engine_version": db.get("EngineVersion"),
            "instance_class": db.get("DBInstanceClass"), "storage_gb": db.get("AllocatedStorage"),
            "storage_encrypted": bool(db.get("StorageEncrypted")), "kms_key": db.get("KmsKeyId"),
            "backup_retention_days": db.get("BackupRetentionPeriod"), "multi_az": bool(db.get("MultiAZ")),
            "publicly_accessible": bool(db.get("PubliclyAccessible")),
            "deletion_protection": bool(db.get("DeletionProtection")),
            "replica_of": source_identifier(str(source)) if source else None,
            "security_groups": sorted(g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups") or []),
            "tags": tags,
        }
        live = Live(fields=fields, outputs=outputs, tags=tags, ready=status == "available",
                    detail={"arn": db.get("DBInstanceArn"), "replica": bool(source)})
        if fields["deletion_protection"]:
            live.protected = "deletion protection is on"
        return live

    def _wait_for_source(self, res: SpecResource, source: str) -> None:
        region = res.region
        try:
            region = parse_arn(source)["region"]
        except ArnError:
            pass
        rds = self.aws(res, "rds", region)

        def status() -> str:
            found = rds.describe_db_instances(DBInstanceIdentifier=source_identifier(source))["DBInstances"]
            return str(found[0].get("DBInstanceStatus"))

        poll_until(status, lambda s: s == "available", timeout=SOURCE_WAIT, interval=30.0,
                   what=f"source {source} of {res.address} to be available", clock=self.clock, sleep=self.sleep)

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        rds = self.aws(res, "rds")
        name = str(props["name"])
        common: dict[str, Any] = {"DBInstanceIdentifier": name, "Tags": tag_list(want["tags"]),
                                  "PubliclyAccessible": want["publicly_accessible"], "MultiAZ": want["multi_az"],
                                  "DeletionProtection": want["deletion_protection"]}
        if want.get("instance_class"):
            common["DBInstanceClass"] = want["instance_class"]
        if want.get("security_groups"):
            common["VpcSecurityGroupIds"] = list(want["security_groups"])
        try:
            if props.get("replica_of"):
                source = str(props["replica_of"])
                self._wait_for_source(res, source)
                request = dict(common, SourceDBInstanceIdentifier=source)
                try:
                    source_region = parse_arn(source)["region"]
                except ArnError:
                    source_region = res.region
                if source_region == res.region:
                    request["SourceDBInstanceIdentifier"] = source_identifier(source)
                else:
                    request["SourceRegion"] = source_region
                if props.get("kms_key"):
                    request["KmsKeyId"] = props["kms_key"]
                db = rds.create_db_instance_read_replica(**request)["DBInstance"]
            else:
                request = dict(common, Engine=want["engine"], AllocatedStorage=want["storage_gb"],
                               MasterUsername=str(props.get("master_username") or "runbooks"),
                               ManageMasterUserPassword=True, StorageEncrypted=want["storage_encrypted"],
                               BackupRetentionPeriod=want["backup_retention_days"])
                if want.get("engine_version"):
                    request["EngineVersion"] = want["engine_version"]
                if want.get("kms_key"):
                    request["KmsKeyId"] = want["kms_key"]
                db = rds.create_db_instance(**request)["DBInstance"]
        except Exception as exc:
            if code_of(exc) in ("DBInstanceAlreadyExists", "DBInstanceAlreadyExistsFault"):
                raise AlreadyExists(f"DB instance {name} exists") from exc
            raise
        if self.session.spec.dependents().get(res.address):
            # Something refers to it (a replica, a DNS record of its endpoint): RDS reports the endpoint only
            # once the instance is available, so wait for that here (bounded) rather than fail the dependents.
            db = self._wait_available(rds, name)
        endpoint = db.get("Endpoint") or {}
        return {"id": name, "name": name, "endpoint": endpoint.get("Address"), "port": endpoint.get("Port"),
                "arn": db.get("DBInstanceArn") or rds_instance_arn(res.region, self.target_of(res).account, name)}

    def _wait_available(self, rds: Any, name: str) -> dict[str, Any]:
        def describe() -> dict[str, Any]:
            found: dict[str, Any] = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
            return found

        db: dict[str, Any] = poll_until(describe, lambda d: d.get("DBInstanceStatus") == "available",
                                        timeout=SOURCE_WAIT, interval=30.0, what=f"DB instance {name} to be available",
                                        clock=self.clock, sleep=self.sleep)
        return db

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        rds = self.aws(res, "rds")
        modify = {_MODIFIABLE[f]: want[f] for f in changed if f in _MODIFIABLE}
        if modify:
            rds.modify_db_instance(DBInstanceIdentifier=str(props["name"]), ApplyImmediately=True, **modify)
        if "tags" in changed:
            to_set, to_remove = self.tag_changes(live.fields["tags"], want["tags"])
            if to_set:
                rds.add_tags_to_resource(ResourceName=live.detail["arn"], Tags=tag_list(to_set))
            if to_remove:
                rds.remove_tags_from_resource(ResourceName=live.detail["arn"], TagKeys=to_remove)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        rds = self.aws(res, "rds")
        name = str(props["name"])
        if props.get("final_snapshot", True) and not live.detail.get("replica"):
            stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
            rds.delete_db_instance(DBInstanceIdentifier=name, FinalDBSnapshotIdentifier=f"{name}-final-{stamp}",
                                   DeleteAutomatedBackups=False)
        else:
            rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
