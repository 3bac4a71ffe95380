"""RDS DB instances and read replicas (a replica's source comes first in the description)."""

from __future__ import annotations

import secrets
from typing import Any

from include.clouds.aws.ids import parse_arn, rds_instance_arn
from localdev.seed import SeedError, SeedReport
from localdev.seed.aws.common import Clients, need, tag_list


def seed_rds(
    clients: Clients, account: str, instances: list[dict[str, Any]], keys: dict[str, str], report: SeedReport
) -> None:
    """In order: a replica's source comes first in the description."""
    existing: dict[str, set[str]] = {}
    arns: dict[str, str] = {}
    for spec in instances:
        region, ident = spec["region"], spec["identifier"]
        rds = clients("rds", region)
        if region not in existing:
            existing[region] = {
                db["DBInstanceIdentifier"]
                for page in rds.get_paginator("describe_db_instances").paginate()
                for db in page["DBInstances"]
            }
        arns[ident] = rds_instance_arn(region, account, ident)
        if ident in existing[region]:
            report.add(False, "aws.rds.instance", ident)
            continue
        common: dict[str, Any] = {
            "DBInstanceIdentifier": ident,
            "DBInstanceClass": spec["instance_class"],
            "PubliclyAccessible": bool(spec.get("public", False)),
            "Tags": tag_list(spec),
        }
        if spec.get("replica_of"):
            source = spec["replica_of"]
            if source not in arns:
                raise SeedError(f"aws estate: replica {ident} of {source!r}, which is not listed before it")
            source_region = parse_arn(arns[source])["region"]
            replica = dict(
                common, SourceDBInstanceIdentifier=arns[source] if source_region != region else source
            )
            if source_region != region:
                replica["SourceRegion"] = source_region
            if spec.get("kms_key"):
                replica["KmsKeyId"] = need(keys, spec["kms_key"], f"replica {ident}")
            rds.create_db_instance_read_replica(**replica)
        else:
            create = dict(
                common,
                Engine=spec["engine"],
                EngineVersion=str(spec["engine_version"]),
                AllocatedStorage=int(spec.get("storage_gb", 20)),
                MasterUsername="runbooks",
                # Random and discarded: nothing logs in to the local databases.
                MasterUserPassword=secrets.token_urlsafe(18),
                StorageEncrypted=bool(spec.get("encrypted", False)),
                BackupRetentionPeriod=int(spec.get("backup_retention_days", 1)),
                MultiAZ=bool(spec.get("multi_az", False)),
                DeletionProtection=bool(spec.get("deletion_protection", False)),
            )
            if spec.get("kms_key"):
                create["KmsKeyId"] = need(keys, spec["kms_key"], f"db {ident}")
            rds.create_db_instance(**create)
        report.add(True, "aws.rds.instance", ident)
