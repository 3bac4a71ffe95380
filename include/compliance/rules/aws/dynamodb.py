"""AWS DynamoDB rules: point-in-time recovery."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule
from include.compliance.rules.aws._helpers import BACKUP, bool_rule
from include.records import ResourceRecord


@rule(
    id="aws_dynamodb_table_pitr",
    title="DynamoDB tables have point-in-time recovery",
    severity="medium",
    resource_types=("aws.dynamodb.table",),
    rationale="PITR restores a table to any second of the last 35 days after a bad write or delete.",
    remediation=(
        "`aws dynamodb update-continuous-backups --table-name <name> "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true`."
    ),
    frameworks={"AWS-FSBP": ["DynamoDB.2"], **BACKUP},
)
def dynamodb_pitr(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "pitr", "point-in-time recovery on", "point-in-time recovery is off")
