"""Cloud Storage buckets: location, access control and exposure, versioning, retention, encryption."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow.providers.google.cloud.hooks.gcs import GCSHook

from include.clouds.gcp.ids import bucket_resource_id
from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord, utc_iso

#: Members that make a bucket readable by anyone (IAM bindings and legacy ACL entities).
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

PERMISSIONS = ("storage.buckets.list", "storage.buckets.getIamPolicy")


def _public_iam_members(bindings: Iterable[Mapping[str, Any]]) -> set[str]:
    found: set[str] = set()
    for binding in bindings:
        found.update(member for member in binding.get("members", ()) if member in PUBLIC_MEMBERS)
    return found


def _public_acl_members(props: Mapping[str, Any]) -> set[str]:
    entries = list(props.get("acl") or []) + list(props.get("defaultObjectAcl") or [])
    return {str(entry.get("entity")) for entry in entries if entry.get("entity") in PUBLIC_MEMBERS}


def bucket_attributes(props: Mapping[str, Any], iam_bindings: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Contract attributes of one bucket from its JSON resource and its IAM policy bindings."""
    iam_config = props.get("iamConfiguration") or {}
    uniform = bool((iam_config.get("uniformBucketLevelAccess") or {}).get("enabled", False))
    # GCS reports "inherited" (formerly "unspecified") when the bucket does not enforce prevention.
    prevention = iam_config.get("publicAccessPrevention") or "inherited"
    if prevention == "unspecified":
        prevention = "inherited"

    iam_members = _public_iam_members(iam_bindings)
    # Legacy ACLs only apply while uniform bucket-level access is off.
    acl_members = set() if uniform else _public_acl_members(props)
    reasons = (["iam"] if iam_members else []) + (["acl"] if acl_members else [])
    # Enforced public access prevention overrides any grant to allUsers / allAuthenticatedUsers.
    public = bool(reasons) and prevention != "enforced"

    retention = (props.get("retentionPolicy") or {}).get("retentionPeriod")
    logging_config = props.get("logging") or {}
    location = str(props.get("location") or "").upper()
    return {
        "location": location,
        "location_type": props.get("locationType"),
        "storage_class": props.get("storageClass"),
        "uniform_access": uniform,
        "public_access_prevention": prevention,
        "public": public,
        "public_reasons": reasons if public else [],
        "public_members": sorted(iam_members | acl_members) if public else [],
        "versioning": bool((props.get("versioning") or {}).get("enabled", False)),
        "retention_days": int(retention) // 86400 if retention else 0,
        "encrypted": True,  # Cloud Storage always encrypts at rest (Google-managed key or CMEK)
        "kms_key": (props.get("encryption") or {}).get("defaultKmsKeyName") or None,
        "logging": bool(logging_config.get("logBucket")),
        "lifecycle_rules": len((props.get("lifecycle") or {}).get("rule") or []),
        "created_at": utc_iso(props.get("timeCreated")),
    }


@lister("gcp", "storage", ["gcp.storage.bucket"], regional=False, permissions=PERMISSIONS)
def list_buckets(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Every bucket of the project, with its IAM policy (one extra call per bucket)."""
    client = GCSHook(gcp_conn_id=ctx.target.conn_id).get_conn()
    for bucket in client.list_buckets(project=ctx.target.account, projection="full"):
        props = dict(bucket._properties)  # the JSON resource exactly as the API returned it
        policy = bucket.get_iam_policy(requested_policy_version=3)
        attributes = bucket_attributes(props, policy.bindings)
        yield ctx.record(
            resource_type="gcp.storage.bucket",
            resource_id=bucket_resource_id(bucket.name),
            name=bucket.name,
            region=attributes["location"] or GLOBAL,
            tags=dict(props.get("labels") or {}),
            attributes=attributes,
        )
