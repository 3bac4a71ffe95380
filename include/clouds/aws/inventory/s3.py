"""S3 buckets: encryption, versioning, effective public exposure, logging, lifecycle, object counts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from include.clouds.aws.clients import client_for
from include.clouds.aws.ids import s3_bucket_arn
from include.clouds.aws.inventory.common import home, paginate, tags, unless
from include.clouds.errors import error_code
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

#: Cap on keys listed per bucket for ``object_count`` / ``size_bytes``. Listing costs one request per
#: 1,000 keys; the local estate is tiny, a real bucket can hold billions (use S3 Inventory or CloudWatch
#: storage metrics there). Past the cap the counts are partial and ``object_count_truncated`` is true.
MAX_KEYS_COUNTED = 10_000
#: Buckets whose detail calls (about 10 per bucket, one after the other) are in flight at once: as many as
#: botocore's default connection pool per client (10), and as Cloud Custodian's S3 resource uses.
S3_DETAIL_WORKERS = 10
_PUBLIC_GRANTEES = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)

PERMISSIONS = (
    "s3:ListAllMyBuckets",
    "s3:GetBucketLocation",
    "s3:GetBucketTagging",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketVersioning",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketAcl",
    "s3:GetBucketLogging",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucket",
)


def _bucket_region(client: Any, bucket: str) -> str:
    constraint = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    # us-east-1 answers with no constraint; "EU" is the legacy spelling of eu-west-1.
    if not constraint:
        return "us-east-1"
    return "eu-west-1" if constraint == "EU" else str(constraint)


def _bucket_record(ctx: ListContext, client: Any, bucket: dict[str, Any], region: str) -> ResourceRecord:
    name = bucket["Name"]
    bucket_tags = tags(unless({"NoSuchTagSet"}, lambda: client.get_bucket_tagging(Bucket=name)["TagSet"], []))

    rules: list[dict[str, Any]] = unless(
        {"ServerSideEncryptionConfigurationNotFoundError"},
        lambda: client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"],
        [],
    )
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")

    versioning = client.get_bucket_versioning(Bucket=name)

    block = unless(
        {"NoSuchPublicAccessBlockConfiguration"},
        lambda: client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"],
        None,
    )
    pab = {
        "block_public_acls": bool((block or {}).get("BlockPublicAcls", False)),
        "ignore_public_acls": bool((block or {}).get("IgnorePublicAcls", False)),
        "block_public_policy": bool((block or {}).get("BlockPublicPolicy", False)),
        "restrict_public_buckets": bool((block or {}).get("RestrictPublicBuckets", False)),
    }
    # AWS evaluates the policy itself (conditions included); no policy at all is "not public".
    policy_public = unless(
        {"NoSuchBucketPolicy"},
        lambda: bool(client.get_bucket_policy_status(Bucket=name)["PolicyStatus"]["IsPublic"]),
        False,
    )
    grants = client.get_bucket_acl(Bucket=name).get("Grants", [])
    acl_public = any(g.get("Grantee", {}).get("URI") in _PUBLIC_GRANTEES for g in grants)
    # Effective exposure: IgnorePublicAcls voids public ACLs, RestrictPublicBuckets voids public policies.
    # (The account-level public access block, s3control, is not read here.)
    public_reasons = []
    if acl_public and not pab["ignore_public_acls"]:
        public_reasons.append("acl")
    if policy_public and not pab["restrict_public_buckets"]:
        public_reasons.append("policy")

    logging = "LoggingEnabled" in client.get_bucket_logging(Bucket=name)
    lifecycle: list[dict[str, Any]] = unless(
        {"NoSuchLifecycleConfiguration"},
        lambda: client.get_bucket_lifecycle_configuration(Bucket=name).get("Rules", []),
        [],
    )
    # Object Lock implies versioning: S3 enables versioning with the lock and refuses to suspend it afterwards,
    # so a bucket whose versioning is not Enabled has no lock and its configuration is not asked for.
    lock: dict[str, Any] = {} if versioning.get("Status") != "Enabled" else unless(
        {"ObjectLockConfigurationNotFoundError"},
        lambda: client.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {}),
        {},
    )

    count = size = 0
    truncated = False
    for obj in paginate(client, "list_objects_v2", "Contents", Bucket=name):
        if count >= MAX_KEYS_COUNTED:
            truncated = True
            break
        count += 1
        size += int(obj.get("Size", 0))

    return ctx.record(
        resource_type="aws.s3.bucket",
        resource_id=s3_bucket_arn(name, region),
        name=name,
        region=region,
        tags=bucket_tags,
        attributes={
            "encrypted": algorithm is not None,
            "encryption_algorithm": algorithm,
            "kms_key": default.get("KMSMasterKeyID"),
            "versioning": versioning.get("Status") == "Enabled",
            "mfa_delete": versioning.get("MFADelete") == "Enabled",
            "public": bool(public_reasons),
            "public_reasons": public_reasons,
            "public_access_block": pab,
            "public_access_block_configured": block is not None,
            "policy_public": policy_public,
            "acl_public": acl_public,
            "logging": logging,
            "lifecycle_rules": len(lifecycle),
            "object_lock": lock.get("ObjectLockEnabled") == "Enabled",
            "object_count": count,
            "object_count_truncated": truncated,
            "size_bytes": size,
            "created_at": bucket.get("CreationDate"),
        },
    )


@lister("aws", "s3", ["aws.s3.bucket"], regional=False, permissions=PERMISSIONS)
def list_s3(ctx: ListContext) -> list[ResourceRecord]:
    """Every bucket of the account (S3 lists them globally), each recorded in its own region."""
    home_client = client_for(ctx.target, "s3", home(ctx))
    # A page size makes ListBuckets answer with each bucket's BucketRegion (AWS adds it when the request
    # has a parameter), which saves a GetBucketLocation per bucket; without it (older S3 APIs, emulators)
    # the region is asked for per bucket as before.
    buckets = list(paginate(home_client, "list_buckets", "Buckets", PaginationConfig={"PageSize": 10_000}))
    if not buckets:
        return []
    clients: dict[str, Any] = {home(ctx): home_client}
    lock = threading.Lock()

    def regional(region: str) -> Any:
        with lock:
            if region not in clients:
                clients[region] = client_for(ctx.target, "s3", region)
            return clients[region]

    def one(bucket: dict[str, Any]) -> ResourceRecord | None:
        try:
            region = str(bucket.get("BucketRegion") or _bucket_region(home_client, bucket["Name"]))
            return _bucket_record(ctx, regional(region), bucket, region)
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucket":  # deleted between the list and the detail calls
                return None
            raise

    with ThreadPoolExecutor(max_workers=S3_DETAIL_WORKERS, thread_name_prefix="inv-s3") as pool:
        return [record for record in pool.map(one, buckets) if record is not None]
