"""Virtual machines of the subscription (no emulator serves ARM: contract-tested in tests/test_contract_compute.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from include.clouds.azure.ids import ResourceIdError, vm_parts
from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord, utc_iso

PERMISSIONS = ("Microsoft.Compute/virtualMachines/read",)


def _resource_group(resource_id: str) -> str | None:
    try:
        return vm_parts(resource_id)[0]
    except ResourceIdError:
        return None


def _power_state(statuses: Any) -> str | None:
    for status in statuses or []:
        code = str(status.get("code") or "")
        if code.startswith("PowerState/"):
            return code.split("/", 1)[1]
    return None


def vm_attributes(vm: Mapping[str, Any]) -> dict[str, Any]:
    """Contract attributes of one VM from its ARM JSON resource (``VirtualMachine.as_dict()``)."""
    props = vm.get("properties") or {}
    storage = props.get("storageProfile") or {}
    os_disk = storage.get("osDisk") or {}
    managed = os_disk.get("managedDisk") or {}
    security = props.get("securityProfile") or {}
    ade = os_disk.get("encryptionSettings") or {}
    zones = vm.get("zones") or []
    attributes: dict[str, Any] = {
        "vm_size": (props.get("hardwareProfile") or {}).get("vmSize"),
        "location": vm.get("location"),
        "zone": zones[0] if zones else None,
        "created_at": utc_iso(props.get("timeCreated")),
        "provisioning_state": props.get("provisioningState"),
        "os_type": os_disk.get("osType"),
        "resource_group": _resource_group(str(vm.get("id") or "")),
        "vm_id": props.get("vmId"),
        "managed_disks": bool(managed),
        # Azure Storage encrypts every managed disk and VHD at rest (platform key, or customer key
        # through a disk encryption set).
        "encrypted": True,
        "kms_key": (managed.get("diskEncryptionSet") or {}).get("id"),
        "encryption_at_host": bool(security.get("encryptionAtHost", False)),
        "disk_encryption_ade": bool(ade.get("enabled", False)),
        "data_disks": len(storage.get("dataDisks") or []),
        "network_interfaces": [
            nic.get("id") for nic in (props.get("networkProfile") or {}).get("networkInterfaces") or []
        ],
    }
    # statusOnly=true adds the instance view; without it the power state is unknown (key left out).
    state = _power_state((props.get("instanceView") or {}).get("statuses"))
    if state is not None:
        attributes["state"] = state
    return attributes


@lister("azure", "compute", ["azure.compute.vm"], regional=True, permissions=PERMISSIONS)
def list_vms(ctx: ListContext) -> Iterator[ResourceRecord]:
    """VMs of the subscription in ``ctx.region`` (all when the region is ``global``), with power state.

    One ``virtualMachines.listAll?statusOnly=true`` walk per region asked for. Public IPs live on
    network interfaces (Microsoft.Network), which this lister does not read: ``public_ip`` is left out.
    """
    # Imported here: azure-mgmt-compute is heavy and only this lister needs it.
    from airflow.providers.microsoft.azure.hooks.compute import AzureComputeHook

    client = AzureComputeHook(azure_conn_id=ctx.target.conn_id).get_conn()
    for vm in client.virtual_machines.list_all(status_only="true"):
        data = vm.as_dict()
        location = str(data.get("location") or "")
        if ctx.region != GLOBAL and location.lower() != ctx.region.lower():
            continue
        yield ctx.record(
            resource_type="azure.compute.vm",
            resource_id=str(data["id"]),  # the ARM id, as Azure reports it
            name=str(data["name"]),
            region=location,
            tags=dict(data.get("tags") or {}),
            attributes=vm_attributes(data),
        )
