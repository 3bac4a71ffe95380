"""Compute Engine instances (no emulator serves them: contract-tested in tests/test_contract_compute.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from include.clouds.gcp.ids import instance_resource_id
from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord, utc_iso

PERMISSIONS = ("compute.instances.list",)


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
        # When it was last stopped (TERMINATED): what cost hygiene reads for "stopped for N days".
        "stopped_at": utc_iso(instance.get("lastStopTimestamp")),
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


@lister("gcp", "compute", ["gcp.compute.instance"], regional=True, permissions=PERMISSIONS)
def list_instances(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Instances of the project in ``ctx.region`` (every region when the target's region is ``global``).

    One ``instances.aggregatedList`` walk per region asked for; instances of other regions are skipped.
    """
    # Imported here: the hook costs about 3 s to import and only this lister needs it.
    from airflow.providers.google.cloud.hooks.compute import ComputeEngineHook

    project = ctx.target.account
    # The Google provider leaves ComputeEngineHook.get_conn unannotated (it returns a discovery Resource).
    service = ComputeEngineHook(gcp_conn_id=ctx.target.conn_id).get_conn()  # type: ignore[no-untyped-call]
    for zone, instance in _aggregated_instances(service, project):
        region = zone_region(zone)
        if ctx.region != GLOBAL and region != ctx.region:
            continue
        yield ctx.record(
            resource_type="gcp.compute.instance",
            resource_id=instance_resource_id(project, zone, instance["name"]),
            name=instance["name"],
            region=region,
            tags=dict(instance.get("labels") or {}),
            attributes=instance_attributes(instance),
        )
