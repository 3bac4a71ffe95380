"""RDS DB instances: encryption, exposure, backups and replication topology."""

from __future__ import annotations

from include.clouds.aws.clients import client_for
from include.clouds.aws.inventory.common import paginate, tags
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = ("rds:DescribeDBInstances",)


@lister("aws", "rds", ["aws.rds.instance"], permissions=PERMISSIONS)
def list_rds(ctx: ListContext) -> list[ResourceRecord]:
    """DB instances with encryption, exposure, backups and replication topology."""
    client = client_for(ctx.target, "rds", ctx.region)
    records = []
    for db in paginate(client, "describe_db_instances", "DBInstances"):
        records.append(
            ctx.record(
                resource_type="aws.rds.instance",
                resource_id=db["DBInstanceArn"],  # as RDS reports it
                name=db["DBInstanceIdentifier"],
                tags=tags(db.get("TagList")),
                attributes={
                    "engine": db.get("Engine"),
                    "engine_version": db.get("EngineVersion"),
                    "instance_class": db.get("DBInstanceClass"),
                    "encrypted": bool(db.get("StorageEncrypted", False)),
                    "kms_key": db.get("KmsKeyId"),
                    "public": bool(db.get("PubliclyAccessible", False)),
                    "retention_days": int(db.get("BackupRetentionPeriod", 0)),
                    "multi_az": bool(db.get("MultiAZ", False)),
                    "state": db.get("DBInstanceStatus"),
                    # Same-region sources are identifiers, cross-region ones ARNs (as RDS reports them).
                    "replica_source": db.get("ReadReplicaSourceDBInstanceIdentifier"),
                    "read_replicas": list(db.get("ReadReplicaDBInstanceIdentifiers", [])),
                    "deletion_protection": bool(db.get("DeletionProtection", False)),
                    "endpoint": (db.get("Endpoint") or {}).get("Address"),
                    "created_at": db.get("InstanceCreateTime"),
                },
            )
        )
    return records
