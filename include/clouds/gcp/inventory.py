"""Google Cloud inventory: Cloud Storage buckets and Compute Engine instances.

Every lister talks to Google Cloud only through the Airflow google provider's hooks, built from the
target's connection id, and normalises what it finds into :class:`~include.records.ResourceRecord`
objects whose attributes follow ``docs/inventory-records.md``. The project is ``target.account``.

Errors propagate: the collector records them per (service, region).

``GCSHook`` is imported at module top (the registry imports this module lazily, no DAG file imports it at
parse time); ``ComputeEngineHook`` costs about 3 s to import, so only the compute lister imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow.providers.google.cloud.hooks.gcs import GCSHook
from google.api_core.retry import Retry

from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord, utc_iso
from include.targets import Target

#: Members that make a bucket readable by anyone (IAM bindings and legacy ACL entities).
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
#: The probe fails fast: an unreachable endpoint is reported within about this many seconds instead of
#: the client's default two-minute retry window. Airflow task retries cover transient blips.
PROBE_RETRY_SECONDS = 5.0
#: (connect, read) timeouts of the probe request.
PROBE_TIMEOUT = (5.0, 30.0)


def bucket_resource_id(name: str) -> str:
    """Full resource name of a bucket (the Cloud Asset Inventory form)."""
    return f"//storage.googleapis.com/projects/_/buckets/{name}"


def instance_resource_id(project: str, zone: str, name: str) -> str:
    """Full resource name of a Compute Engine instance (the Cloud Asset Inventory form)."""
    return f"//compute.googleapis.com/projects/{project}/zones/{zone}/instances/{name}"


def probe(target: Target) -> None:
    """Raise if ``target``'s connection cannot reach Cloud Storage or is refused (list one bucket)."""
    client = GCSHook(gcp_conn_id=target.conn_id).get_conn()
    retry = Retry(initial=0.5, maximum=2.0, multiplier=2.0, timeout=PROBE_RETRY_SECONDS)
    pages = client.list_buckets(
        max_results=1, project=target.account, timeout=PROBE_TIMEOUT, retry=retry
    ).pages
    next(iter(pages), None)


# ---- Cloud Storage ---------------------------------------------------------------------------------

_GCS_PERMISSIONS = ("storage.buckets.list", "storage.buckets.getIamPolicy")


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
        "created_at": utc_iso(props.get("timeCreated")),
    }


@lister("gcp", "gcs", ["gcp.storage.bucket"], regional=False, permissions=_GCS_PERMISSIONS)
def list_buckets(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Every bucket of the project, with its IAM policy (one extra call per bucket)."""
    client = GCSHook(gcp_conn_id=ctx.target.conn_id).get_conn()
    for bucket in client.list_buckets(project=ctx.target.account, projection="full"):
        props = dict(bucket._properties)  # the JSON resource exactly as the API returned it
        policy = bucket.get_iam_policy(requested_policy_version=3)
        attributes = bucket_attributes(props, policy.bindings)
        yield ctx.record(
            service="gcs",
            resource_type="gcp.storage.bucket",
            resource_id=bucket_resource_id(bucket.name),
            name=bucket.name,
            region=attributes["location"] or GLOBAL,
            tags=dict(props.get("labels") or {}),
            attributes=attributes,
        )


# ---- Compute Engine --------------------------------------------------------------------------------

_GCE_PERMISSIONS = ("compute.instances.list",)


def _last_segment(url: str | None) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if url else None


def zone_region(zone: str) -> str:
    """``europe-west1-b`` -> ``europe-west1``."""
    return zone.rsplit("-", 1)[0]


def instance_attributes(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Contract attributes of one instance from its ``compute#instance`` JSON resource."""
    zone = _last_segment(instance.get("zone")) or ""
    external_ips = [
        access["natIP"]
        for nic in instance.get("networkInterfaces") or []
        for access in nic.get("accessConfigs") or []
        if access.get("natIP")
    ]
    disks = [
        {
            "name": _last_segment(disk.get("source")) or disk.get("deviceName"),
            "boot": bool(disk.get("boot", False)),
            "kms_key": (disk.get("diskEncryptionKey") or {}).get("kmsKeyName"),
        }
        for disk in instance.get("disks") or []
    ]
    boot = next((disk for disk in disks if disk["boot"]), disks[0] if disks else None)
    scheduling = instance.get("scheduling") or {}
    return {
        "state": instance.get("status"),
        "machine_type": _last_segment(instance.get("machineType")),
        "zone": zone,
        "created_at": utc_iso(instance.get("creationTimestamp")),
        "public_ip": external_ips[0] if external_ips else None,
        "private_ips": [
            nic["networkIP"] for nic in instance.get("networkInterfaces") or [] if nic.get("networkIP")
        ],
        "network_tags": list((instance.get("tags") or {}).get("items") or []),
        "service_accounts": [sa.get("email") for sa in instance.get("serviceAccounts") or []],
        "deletion_protection": bool(instance.get("deletionProtection", False)),
        "preemptible": bool(scheduling.get("preemptible", False)),
        "encrypted": True,  # persistent disks are always encrypted at rest
        "kms_key": boot["kms_key"] if boot else None,
        "disks": disks,
        "instance_id": instance.get("id"),
    }


def _aggregated_instances(service: Any, project: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(zone, instance) for every instance of the project, following ``nextPageToken``."""
    instances = service.instances()
    request = instances.aggregatedList(project=project)
    while request is not None:
        response = request.execute()
        unreachable = response.get("unreachables") or []
        if unreachable:
            # A partial answer (some zones unreachable) must not look like a complete inventory.
            raise RuntimeError(f"Compute Engine could not list instances in: {', '.join(unreachable)}")
        for scope, scoped in (response.get("items") or {}).items():
            if not scope.startswith("zones/"):
                continue
            for instance in scoped.get("instances") or []:
                yield scope.split("/", 1)[1], instance
        request = instances.aggregatedList_next(previous_request=request, previous_response=response)


@lister("gcp", "compute", ["gcp.compute.instance"], regional=True, permissions=_GCE_PERMISSIONS)
def list_instances(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Instances of the project in ``ctx.region`` (every region when the target's region is ``global``).

    One ``instances.aggregatedList`` walk per region asked for; instances of other regions are skipped.
    """
    # Imported here: the hook costs about 3 s to import and only this lister needs it.
    from airflow.providers.google.cloud.hooks.compute import ComputeEngineHook

    project = ctx.target.account
    service = ComputeEngineHook(gcp_conn_id=ctx.target.conn_id).get_conn()
    for zone, instance in _aggregated_instances(service, project):
        region = zone_region(zone)
        if ctx.region != GLOBAL and region != ctx.region:
            continue
        yield ctx.record(
            service="compute",
            resource_type="gcp.compute.instance",
            resource_id=instance_resource_id(project, zone, instance["name"]),
            name=instance["name"],
            region=region,
            tags=dict(instance.get("labels") or {}),
            attributes=instance_attributes(instance),
        )
