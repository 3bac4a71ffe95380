"""S3 buckets: encryption, versioning, public access, ACL, policy, logging, lifecycle, objects."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from include.clouds.aws.ids import s3_bucket_arn, s3_object_arn
from include.clouds.errors import error_code, is_not_found
from localdev.seed import SEED_TAG, SeedError, SeedReport, object_body, seeded_objects
from localdev.seed.aws.common import Clients, need, tag_list

#: Bucket policy statements the estate description can name (``policy: [...]``).
POLICY_TEMPLATES: dict[str, Callable[[str, str], list[dict[str, Any]]]] = {
    "public-read": lambda bucket, account: [
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": s3_object_arn(bucket, "*"),
        }
    ],
    "server-access-logs": lambda bucket, account: [
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": ["s3:PutObject"],
            "Resource": s3_object_arn(bucket, "*"),
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        }
    ],
    "cloudtrail": lambda bucket, account: [
        {
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": s3_bucket_arn(bucket),
        },
        {
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": s3_object_arn(bucket, f"AWSLogs/{account}/*"),
            "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}},
        },
    ],
}


def _bucket_seed_tag(s3: Any, name: str) -> str | None:
    """The bucket's seed-id tag; '' when it exists untagged; None when it does not exist."""
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    try:
        tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return ""
        raise
    return next((t["Value"] for t in tags if t["Key"] == SEED_TAG), "")


def _seed_bucket(  # noqa: C901 - a linear seed script: one create-if-missing section per bucket setting
    clients: Clients, account: str, spec: dict[str, Any], keys: dict[str, str], report: SeedReport
) -> None:
    name, region = spec["name"], spec["region"]
    s3 = clients("s3", region)
    found = _bucket_seed_tag(s3, name)
    if found == spec["seed_id"]:
        report.add(False, "aws.s3.bucket", name)
        return
    if found is None:
        create: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if spec.get("acl"):  # ACLs are disabled under the default ownership, BucketOwnerEnforced
            create["ObjectOwnership"] = "ObjectWriter"
        s3.create_bucket(**create)

    encryption = spec.get("encryption", "none")
    # "none": left unset. (Real S3 encrypts every new bucket with SSE-S3 since 2023; moto does not.)
    if encryption == "aes256":
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    elif encryption == "kms":
        key = need(keys, spec["kms_key"], f"bucket {name}")
        rule = {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True,
        }
    elif encryption != "none":
        raise SeedError(f"aws estate: bucket {name}: unknown encryption {encryption!r}")
    if encryption != "none":
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})
    if spec.get("versioning"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    block = spec.get("public_access_block", "full")
    if block == "full":
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    elif block == "none":
        s3.delete_public_access_block(Bucket=name)  # real S3 blocks public access on new buckets
    else:
        raise SeedError(f"aws estate: bucket {name}: public_access_block must be full or none")
    if spec.get("acl"):
        s3.put_bucket_acl(Bucket=name, ACL=spec["acl"])
    if spec.get("policy"):
        statements = []
        for template in spec["policy"]:
            if template not in POLICY_TEMPLATES:
                raise SeedError(f"aws estate: bucket {name}: unknown policy template {template!r}")
            statements += POLICY_TEMPLATES[template](name, account)
        s3.put_bucket_policy(
            Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
        )
    if spec.get("logging"):
        s3.put_bucket_logging(
            Bucket=name,
            BucketLoggingStatus={
                "LoggingEnabled": {
                    "TargetBucket": spec["logging"]["target"],
                    "TargetPrefix": spec["logging"].get("prefix", f"{name}/"),
                }
            },
        )
    if spec.get("lifecycle"):
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "expire",
                        "Status": "Enabled",
                        "Filter": {"Prefix": spec["lifecycle"].get("prefix", "")},
                        "Expiration": {"Days": int(spec["lifecycle"]["expire_days"])},
                    }
                ]
            },
        )
    objects = seeded_objects(spec)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed-s3-put") as pool:
        list(
            pool.map(
                lambda item: s3.put_object(Bucket=name, Key=item[0], Body=object_body(name, *item)),
                objects.items(),
            )
        )
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(spec)})  # last: marks completion
    report.add(True, "aws.s3.bucket", name)


def seed_s3(
    clients: Clients, account: str, buckets: list[dict[str, Any]], keys: dict[str, str], report: SeedReport
) -> None:
    """Buckets missing or not completely configured (no ``seed-id`` tag yet); ``keys``: KMS seed id -> ARN."""
    # Two waves: a logging target bucket must exist before the buckets that log to it.
    targets = {str((spec.get("logging") or {}).get("target")) for spec in buckets}
    waves = [[b for b in buckets if b["name"] in targets], [b for b in buckets if b["name"] not in targets]]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed-s3") as pool:
        for wave in waves:
            parts = [SeedReport() for _ in wave]
            list(
                pool.map(
                    lambda pair: _seed_bucket(clients, account, pair[0], keys, pair[1]), zip(wave, parts, strict=True)
                )
            )
            report.merge(parts)
