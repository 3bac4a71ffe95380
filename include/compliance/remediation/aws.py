"""AWS fixers: S3 public access block, default encryption, versioning; RDS backup retention; tags.

Every call goes through the Amazon provider's hooks (``S3Hook``, ``RdsHook``, ``AwsBaseHook``) built from
the target's ``conn_id``; the hooks are imported inside the functions so importing this module (and
parsing a DAG) stays free of boto3.
"""

from __future__ import annotations

from typing import Any

from include.changes.model import ChangeError
from include.clouds.aws import ids
from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code
from include.compliance.remediation.registry import Fixer, RemediationError, fixer
from include.compliance.remediation.tags import TagsFixerBase
from include.records import ResourceRecord

S3_BUCKET = "aws.s3.bucket"
EC2_INSTANCE = "aws.ec2.instance"
EC2_VOLUME = "aws.ec2.volume"
RDS_INSTANCE = "aws.rds.instance"
DYNAMODB_TABLE = "aws.dynamodb.table"


def _region(record: ResourceRecord) -> str | None:
    return None if record.region in ("", "global") else record.region


def bucket_name(record: ResourceRecord) -> str:
    """The bucket name from the record's S3 ARN (a malformed id is an error, never a guess)."""
    return ids.bucket_name(record.resource_id)


def ec2_id(record: ResourceRecord) -> str:
    """``i-...`` / ``vol-...`` from the record's EC2 ARN."""
    return ids.ec2_resource_id(record.resource_id)


def db_identifier(record: ResourceRecord) -> str:
    """The DB instance identifier from the record's RDS ARN."""
    return ids.rds_identifier(record.resource_id)


class _AwsFixer(Fixer):
    """Clients through :func:`include.clouds.aws.clients.client_for`, one per (service, connection, region)."""

    def aws(self, record: ResourceRecord, service: str) -> Any:
        conn_id = self.target(record).conn_id
        region = _region(record)
        return self.client((service, conn_id, region or ""), lambda: client_for(conn_id, service, region))

    def s3(self, record: ResourceRecord) -> Any:
        return self.aws(record, "s3")

    def rds(self, record: ResourceRecord) -> Any:
        return self.aws(record, "rds")

    def ec2(self, record: ResourceRecord) -> Any:
        return self.aws(record, "ec2")


# ---- S3 ------------------------------------------------------------------------------------------
_PAB_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


@fixer(
    "aws.s3.block_public_access",
    "aws",
    [S3_BUCKET],
    permissions=("s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    action="s3:PutBucketPublicAccessBlock",
)
class S3BlockPublicAccess(_AwsFixer):
    """Turn on all four S3 Block Public Access flags of the bucket."""

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        try:
            config = self.s3(record).get_public_access_block(Bucket=bucket_name(record))[
                "PublicAccessBlockConfiguration"
            ]
        except Exception as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            config = {}
        return {flag: bool(config.get(flag, False)) for flag in _PAB_FLAGS}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {flag: True for flag in _PAB_FLAGS}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"Bucket": bucket_name(record), "PublicAccessBlockConfiguration": dict(desired)}

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.s3(record).put_public_access_block(**request)
        return request


@fixer(
    "aws.s3.default_encryption",
    "aws",
    [S3_BUCKET],
    permissions=("s3:GetEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    action="s3:PutEncryptionConfiguration",
)
class S3DefaultEncryption(_AwsFixer):
    """Default encryption: SSE-S3 (AES256), or SSE-KMS with the ``kms_key_id`` option.

    A bucket already encrypted with SSE-KMS complies when no key is asked for (never downgraded).
    """

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        try:
            rules = self.s3(record).get_bucket_encryption(Bucket=bucket_name(record))[
                "ServerSideEncryptionConfiguration"
            ]["Rules"]
        except Exception as exc:
            if error_code(exc) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            rules = []
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        return {"sse_algorithm": default.get("SSEAlgorithm"), "kms_key": default.get("KMSMasterKeyID")}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        key = self.options.get("kms_key_id")
        if key:
            return {"sse_algorithm": "aws:kms", "kms_key": str(key)}
        return {"sse_algorithm": "AES256"}

    def satisfied(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        if desired["sse_algorithm"] == "AES256":
            return state.get("sse_algorithm") in ("AES256", "aws:kms", "aws:kms:dsse")
        return super().satisfied(state, desired)

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        default: dict[str, Any] = {"SSEAlgorithm": desired["sse_algorithm"]}
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
        if desired.get("kms_key"):
            default["KMSMasterKeyID"] = desired["kms_key"]
            rule["BucketKeyEnabled"] = True  # fewer KMS calls, lower cost
        return {"Bucket": bucket_name(record), "ServerSideEncryptionConfiguration": {"Rules": [rule]}}

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.s3(record).put_bucket_encryption(**request)
        return request


@fixer(
    "aws.s3.versioning",
    "aws",
    [S3_BUCKET],
    permissions=("s3:GetBucketVersioning", "s3:PutBucketVersioning"),
    action="s3:PutBucketVersioning",
)
class S3Versioning(_AwsFixer):
    """Enable object versioning (MFA delete is left as it is)."""

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        status = self.s3(record).get_bucket_versioning(Bucket=bucket_name(record)).get("Status")
        return {"versioning": status or "Disabled"}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"versioning": "Enabled"}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"Bucket": bucket_name(record), "VersioningConfiguration": {"Status": "Enabled"}}

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.s3(record).put_bucket_versioning(**request)
        return request


# ---- RDS -----------------------------------------------------------------------------------------
@fixer(
    "aws.rds.backup_retention",
    "aws",
    [RDS_INSTANCE],
    permissions=("rds:DescribeDBInstances", "rds:ModifyDBInstance"),
    action="rds:ModifyDBInstance",
)
class RdsBackupRetention(_AwsFixer):
    """Raise the automated backup retention to ``retention_days`` (default 7), applied immediately.

    Retention is never lowered: an instance keeping backups longer than asked already complies.
    """

    #: RDS applies a modification asynchronously (minutes on a real account, even with ApplyImmediately):
    #: verify re-reads every 15 s for up to 15 minutes before it says "not fixed". The emulator applies at
    #: once, so there the first read already complies.
    verify_wait = 900.0
    verify_interval = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        days = self.options.get("retention_days") or 7
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 35:
            raise RemediationError(f"retention_days must be an integer 1..35, not {days!r}")
        self.days = days
        if self.options.get("verify_wait") is not None:
            self.verify_wait = float(self.options["verify_wait"])

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        found = self.rds(record).describe_db_instances(DBInstanceIdentifier=db_identifier(record))["DBInstances"]
        if not found:
            raise ChangeError(f"RDS instance {db_identifier(record)} not found")
        instance = found[0]
        pending = (instance.get("PendingModifiedValues") or {}).get("BackupRetentionPeriod")
        return {
            "retention_days": int(instance.get("BackupRetentionPeriod") or 0),
            "pending_retention_days": None if pending is None else int(pending),
        }

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"retention_days": max(self.days, int(state.get("retention_days") or 0))}

    def satisfied(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        return int(state.get("retention_days") or 0) >= self.days

    def accepted(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        pending = state.get("pending_retention_days")
        return self.satisfied(state, desired) or (pending is not None and int(pending) >= self.days)

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {
            "DBInstanceIdentifier": db_identifier(record),
            "BackupRetentionPeriod": int(desired["retention_days"]),
            "ApplyImmediately": True,
        }

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.rds(record).modify_db_instance(**request)
        return request


# ---- tags ----------------------------------------------------------------------------------------
_TAG_ACTIONS = {
    S3_BUCKET: "s3:PutBucketTagging",
    EC2_INSTANCE: "ec2:CreateTags",
    EC2_VOLUME: "ec2:CreateTags",
    RDS_INSTANCE: "rds:AddTagsToResource",
    DYNAMODB_TABLE: "dynamodb:TagResource",
}


@fixer(
    "tags.required",
    "aws",
    list(_TAG_ACTIONS),
    permissions=(
        "s3:GetBucketTagging", "s3:PutBucketTagging", "ec2:DescribeTags", "ec2:CreateTags",
        "rds:ListTagsForResource", "rds:AddTagsToResource", "dynamodb:ListTagsOfResource", "dynamodb:TagResource",
    ),
)
class AwsRequiredTags(TagsFixerBase, _AwsFixer):
    """Add missing required tags to S3 buckets, EC2 instances and volumes, RDS instances, DynamoDB tables."""

    def action_for(self, record: ResourceRecord) -> str:
        return _TAG_ACTIONS[record.resource_type]

    def validate_tag(self, key: str, value: str, record: ResourceRecord) -> None:
        if key.lower().startswith("aws:") or len(key) > 128 or len(value) > 256:
            raise RemediationError(f"tag {key}={value}: AWS allows keys up to 128, values up to 256 characters, "
                                   "and no 'aws:' prefix")

    def dynamodb(self, record: ResourceRecord) -> Any:
        return self.aws(record, "dynamodb")

    def current_tags(self, record: ResourceRecord) -> dict[str, str]:
        kind = record.resource_type
        if kind == S3_BUCKET:
            try:
                tag_set = self.s3(record).get_bucket_tagging(Bucket=bucket_name(record))["TagSet"]
            except Exception as exc:
                if error_code(exc) != "NoSuchTagSet":
                    raise
                tag_set = []
        elif kind in (EC2_INSTANCE, EC2_VOLUME):
            tag_set = self.ec2(record).describe_tags(
                Filters=[{"Name": "resource-id", "Values": [ec2_id(record)]}]
            )["Tags"]
        elif kind == RDS_INSTANCE:
            tag_set = self.rds(record).list_tags_for_resource(ResourceName=record.resource_id)["TagList"]
        else:
            tag_set = self.dynamodb(record).list_tags_of_resource(ResourceArn=record.resource_id).get("Tags", [])
        return {t["Key"]: t.get("Value", "") for t in tag_set}

    def add_tags(self, record: ResourceRecord, current: dict[str, str], missing: dict[str, str]) -> None:
        kind = record.resource_type
        pairs = [{"Key": k, "Value": v} for k, v in missing.items()]
        if kind == S3_BUCKET:
            # PutBucketTagging replaces the whole set: send the tags just read plus the missing ones.
            merged = {**current, **missing}
            self.s3(record).put_bucket_tagging(
                Bucket=bucket_name(record),
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]},
            )
        elif kind in (EC2_INSTANCE, EC2_VOLUME):  # the others only add / set the keys given
            self.ec2(record).create_tags(Resources=[ec2_id(record)], Tags=pairs)
        elif kind == RDS_INSTANCE:
            self.rds(record).add_tags_to_resource(ResourceName=record.resource_id, Tags=pairs)
        else:
            self.dynamodb(record).tag_resource(ResourceArn=record.resource_id, Tags=pairs)
