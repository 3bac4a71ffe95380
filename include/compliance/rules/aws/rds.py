"""AWS RDS rules: encryption, exposure, backups, availability and deletion protection of DB instances."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.compliance.rules.aws._helpers import AT_REST, BACKUP, attr, bool_rule
from include.records import ResourceRecord


def _aurora(record: ResourceRecord) -> bool:
    return str(attr(record, "engine") or "").startswith("aurora")


@rule(
    id="aws_rds_instance_encrypted",
    title="RDS instances are encrypted at rest",
    severity="high",
    resource_types=("aws.rds.instance",),
    rationale="Encryption at rest covers the storage, automated backups, replicas and snapshots.",
    remediation="Snapshot, copy the snapshot with a KMS key, restore from the encrypted copy, switch over.",
    frameworks={"CIS-AWS-3.0": ["2.3.1"], "AWS-FSBP": ["RDS.3"], **AT_REST},
)
def rds_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "encrypted", "storage encrypted", "storage is not encrypted")


@rule(
    id="aws_rds_instance_not_public",
    title="RDS instances are not publicly accessible",
    severity="critical",
    resource_types=("aws.rds.instance",),
    rationale="A publicly accessible database endpoint is one leaked password away from a breach.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --no-publicly-accessible --apply-immediately`.",
    frameworks={"CIS-AWS-3.0": ["2.3.3"], "AWS-FSBP": ["RDS.2"], "GDPR": ["Art.32"]},
)
def rds_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    public = attr(record, "public")
    if public is None:
        return None
    return verdict(public is False, "not publicly accessible", "publicly accessible endpoint")


@rule(
    id="aws_rds_instance_backup_retention",
    title="RDS instances keep automated backups for at least 7 days",
    severity="medium",
    resource_types=("aws.rds.instance",),
    rationale="Automated backups give point-in-time restore; less than a week misses slow-burning mistakes.",
    remediation=(
        "`aws rds modify-db-instance --db-instance-identifier <id> --backup-retention-period 7 "
        "--apply-immediately`, or run remediate_findings with fixer aws.rds.backup_retention."
    ),
    frameworks={"AWS-FSBP": ["RDS.11"], **BACKUP},
    fixer="aws.rds.backup_retention",
    params={"min_days": 7},
)
def rds_backup_retention(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    days = attr(record, "retention_days")
    # Read replicas take no backups of their own; Aurora keeps retention on the cluster, not the instance.
    if days is None or attr(record, "replica_source") or _aurora(record):
        return None
    wanted = int(ctx.params["min_days"])
    return verdict(
        int(days) >= wanted, f"{days} days of backups", f"backup retention {days} days < {wanted}",
        retention_days=days, required=wanted,
    )


@rule(
    id="aws_rds_instance_multi_az",
    title="RDS instances are deployed Multi-AZ",
    severity="medium",
    resource_types=("aws.rds.instance",),
    rationale="A single-AZ database goes down with its zone and during maintenance.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --multi-az --apply-immediately`.",
    frameworks={"AWS-FSBP": ["RDS.5"]},
)
def rds_multi_az(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _aurora(record):
        return None  # Aurora spreads storage over three zones; availability is a cluster matter
    return bool_rule(record, "multi_az", "Multi-AZ", "single-AZ deployment")


@rule(
    id="aws_rds_instance_deletion_protection",
    title="RDS instances have deletion protection",
    severity="low",
    resource_types=("aws.rds.instance",),
    rationale="Deletion protection stops one wrong API call or script from dropping a production database.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --deletion-protection`.",
    frameworks={"AWS-FSBP": ["RDS.8"]},
)
def rds_deletion_protection(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _aurora(record):
        return None
    return bool_rule(record, "deletion_protection", "deletion protection on", "deletion protection is off")
