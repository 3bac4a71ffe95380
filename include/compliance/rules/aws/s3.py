"""AWS S3 rules: encryption, versioning, public access, access logging."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.compliance.rules.aws._helpers import AT_REST, BACKUP, attr, bool_rule
from include.compliance.rules.aws.cloudtrail import LOG_BUCKETS
from include.records import ResourceRecord


@rule(
    id="aws_s3_bucket_default_encryption",
    title="S3 buckets have default encryption configured",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Default encryption makes every new object encrypted at rest, whatever the uploader sends.",
    remediation=(
        "Set default encryption on the bucket: `aws s3api put-bucket-encryption --bucket <name> "
        "--server-side-encryption-configuration "
        "'{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\"}}]}'` "
        "(or AES256), or run remediate_findings with fixer aws.s3.default_encryption."
    ),
    frameworks=AT_REST,  # AWS-FSBP S3.4 was retired once S3 began encrypting new objects by default
    fixer="aws.s3.default_encryption",
)
def s3_default_encryption(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    encrypted = attr(record, "encrypted")
    if encrypted is None:
        return None
    algorithm = attr(record, "encryption_algorithm")
    return verdict(
        encrypted is True, f"default encryption {algorithm}", "no default encryption configured",
        encryption_algorithm=algorithm, kms_key=attr(record, "kms_key"),
    )


@rule(
    id="aws_s3_bucket_versioning",
    title="S3 buckets have versioning enabled",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Versioning keeps overwritten and deleted objects recoverable (mistakes, ransomware).",
    remediation=(
        "`aws s3api put-bucket-versioning --bucket <name> --versioning-configuration Status=Enabled`, "
        "or run remediate_findings with fixer aws.s3.versioning. Add a lifecycle rule for old versions."
    ),
    frameworks={"AWS-SecurityHub": ["S3.14"], **BACKUP},
    fixer="aws.s3.versioning",
)
def s3_versioning(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "versioning", "versioning enabled", "versioning is not enabled")


_PAB_FLAGS = ("block_public_acls", "ignore_public_acls", "block_public_policy", "restrict_public_buckets")


@rule(
    id="aws_s3_bucket_public_access_block",
    title="S3 buckets block public access (all four settings)",
    severity="high",
    resource_types=("aws.s3.bucket",),
    rationale=(
        "Block Public Access stops a later ACL or bucket policy from exposing the bucket; all four "
        "settings are needed (two for ACLs, two for policies)."
    ),
    remediation=(
        "`aws s3api put-public-access-block --bucket <name> --public-access-block-configuration "
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true`, "
        "or run remediate_findings with fixer aws.s3.block_public_access."
    ),
    frameworks={"CIS-AWS-3.0": ["2.1.4"], "AWS-FSBP": ["S3.8"], "Internal": ["PUB-1"]},
    fixer="aws.s3.block_public_access",
)
def s3_public_access_block(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    block = attr(record, "public_access_block")
    if not isinstance(block, dict):
        return None
    missing = [flag for flag in _PAB_FLAGS if block.get(flag) is not True]
    return verdict(
        not missing, "all four public access block settings are on",
        "public access block settings off: " + ", ".join(missing),
        missing=missing, configured=attr(record, "public_access_block_configured"),
    )


@rule(
    id="aws_s3_bucket_not_public",
    title="S3 buckets are not public through their policy or ACL",
    severity="critical",
    resource_types=("aws.s3.bucket",),
    rationale="A public bucket lets anyone on the internet read (or write) its objects.",
    remediation=(
        "Remove the public grant (bucket policy statement with Principal \"*\" or ACL grant to AllUsers / "
        "AuthenticatedUsers) and turn on Block Public Access (fixer aws.s3.block_public_access)."
    ),
    # Not CIS AWS 3.0 2.1.4: that is the Block Public Access setting (aws_s3_bucket_public_access_block);
    # the benchmark has no recommendation on public bucket policies / ACLs.
    frameworks={"AWS-FSBP": ["S3.2", "S3.3"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"]},
    fixer="aws.s3.block_public_access",
)
def s3_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    public = attr(record, "public")
    if public is None:
        return None
    reasons = list(attr(record, "public_reasons") or [])
    return verdict(
        public is False, "not public", "public via " + (", ".join(reasons) or "unknown grant"),
        public_reasons=reasons,
    )


@rule(
    id="aws_s3_bucket_access_logging",
    title="S3 buckets have server access logging enabled",
    severity="low",
    resource_types=("aws.s3.bucket",),
    rationale="Access logs are the record of who read or changed what, needed for investigations.",
    remediation=(
        "`aws s3api put-bucket-logging --bucket <name> --bucket-logging-status "
        "'{\"LoggingEnabled\":{\"TargetBucket\":\"<log bucket>\",\"TargetPrefix\":\"<name>/\"}}'`."
    ),
    frameworks={"AWS-FSBP": ["S3.9"], "HIPAA": ["164.312(b)"]},
)
def s3_access_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "logging", "server access logging enabled", "server access logging is off")


@rule(
    id="aws_s3_cloudtrail_bucket_access_logging",
    title="The S3 bucket CloudTrail writes to has access logging enabled",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Access logs on the trail bucket show who read or tampered with the audit trail itself.",
    remediation="Enable server access logging on the trail's bucket, to a different bucket.",
    frameworks={"CIS-AWS-3.0": ["3.4"], "HIPAA": ["164.312(b)"]},
)
def s3_cloudtrail_bucket_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if (record.target, record.name) not in ctx.facts[LOG_BUCKETS]:
        return None
    return bool_rule(
        record, "logging", "CloudTrail bucket has access logging", "CloudTrail bucket has no access logging"
    )
