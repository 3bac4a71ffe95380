"""AWS CloudTrail rules, and the CloudTrail facts other rules read (computed once per scan)."""

from __future__ import annotations

from typing import Any

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, fact, rule, verdict
from include.compliance.rules.aws._helpers import bool_rule
from include.records import ResourceRecord

#: Fact: (target, bucket name) of every bucket a trail delivers to.
LOG_BUCKETS = "aws.cloudtrail.log_buckets"
#: Fact: target -> trails (name, multi_region, logging).
TRAILS_BY_TARGET = "aws.cloudtrail.trails_by_target"


@fact(LOG_BUCKETS)
def cloudtrail_log_buckets(records: list[ResourceRecord]) -> frozenset[tuple[str, str]]:
    """(target, bucket name) of every bucket a trail delivers to."""
    return frozenset(
        (r.target, str(r.attributes["s3_bucket"]))
        for r in records
        if r.resource_type == "aws.cloudtrail.trail" and r.attributes.get("s3_bucket")
    )


@fact(TRAILS_BY_TARGET)
def trails_by_target(records: list[ResourceRecord]) -> dict[str, list[dict[str, Any]]]:
    """Trails of each target: name, multi_region, logging."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.resource_type == "aws.cloudtrail.trail":
            found.setdefault(r.target, []).append(
                {"name": r.name, "multi_region": r.attributes.get("multi_region"),
                 "logging": r.attributes.get("logging")}
            )
    return found


@rule(
    id="aws_cloudtrail_account_multi_region_trail",
    title="The account has a logging multi-region CloudTrail trail",
    severity="high",
    resource_types=("aws.iam.account",),
    rationale="Without a multi-region trail, API activity in unused regions (a favourite of attackers) is unseen.",
    remediation=(
        "`aws cloudtrail create-trail --name <name> --s3-bucket-name <bucket> --is-multi-region-trail "
        "--enable-log-file-validation --kms-key-id <key>` then `aws cloudtrail start-logging --name <name>`."
    ),
    frameworks={"CIS-AWS-3.0": ["3.1"], "AWS-FSBP": ["CloudTrail.1"], "HIPAA": ["164.312(b)"]},
)
def cloudtrail_account_trail(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    trails = ctx.facts[TRAILS_BY_TARGET].get(record.target, [])
    good = [t["name"] for t in trails if t["multi_region"] and t["logging"]]
    return verdict(
        bool(good), "multi-region trail logging: " + ", ".join(good),
        f"no logging multi-region trail among {len(trails)} trail(s) (in the target's regions)",
        trails=[t["name"] for t in trails],
    )


@rule(
    id="aws_cloudtrail_multi_region",
    title="CloudTrail trails cover all regions",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="A single-region trail misses activity everywhere else.",
    remediation="`aws cloudtrail update-trail --name <name> --is-multi-region-trail`.",
    frameworks={"CIS-AWS-3.0": ["3.1"], "AWS-FSBP": ["CloudTrail.1"]},
)
def cloudtrail_multi_region(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "multi_region", "multi-region trail", "trail covers one region only")


@rule(
    id="aws_cloudtrail_logging_enabled",
    title="CloudTrail trails are logging",
    severity="high",
    resource_types=("aws.cloudtrail.trail",),
    rationale="A stopped trail records nothing; stopping it is a classic step before an attack.",
    remediation="`aws cloudtrail start-logging --name <name>`; alert on StopLogging events.",
    frameworks={"CIS-AWS-3.0": ["3.1"], "HIPAA": ["164.312(b)"]},
)
def cloudtrail_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "logging", "trail is logging", "trail is not logging")


@rule(
    id="aws_cloudtrail_log_file_validation",
    title="CloudTrail log file validation is enabled",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="Digest files prove that delivered logs were not altered or deleted afterwards.",
    remediation="`aws cloudtrail update-trail --name <name> --enable-log-file-validation`.",
    frameworks={"CIS-AWS-3.0": ["3.2"], "AWS-FSBP": ["CloudTrail.4"]},
)
def cloudtrail_validation(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "log_file_validation", "log file validation on", "log file validation is off")


@rule(
    id="aws_cloudtrail_kms_encryption",
    title="CloudTrail logs are encrypted with a KMS key",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="SSE-KMS adds a key policy between readers of the log bucket and the audit trail.",
    remediation="`aws cloudtrail update-trail --name <name> --kms-key-id <key arn>` (key policy must allow CloudTrail).",
    frameworks={"CIS-AWS-3.0": ["3.5"], "AWS-FSBP": ["CloudTrail.2"], "HIPAA": ["164.312(a)(2)(iv)"]},
)
def cloudtrail_kms(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "encrypted", "logs encrypted with KMS", "logs are not encrypted with a KMS key")
