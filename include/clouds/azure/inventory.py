"""Azure inventory: Blob Storage containers and virtual machines.

Every lister talks to Azure only through the Airflow microsoft-azure provider's hooks, built from the
target's connection id, and normalises what it finds into :class:`~include.records.ResourceRecord` objects
whose attributes follow ``docs/inventory-records.md``.

- Containers: ``WasbHook(wasb_conn_id=target.conn_id)``; the storage account is ``target.storage_account``
  and resource ids use its public endpoint (``https://<account>.blob.core.windows.net/<container>``) even
  when the connection points at an emulator, so ids are stable across environments.
- Virtual machines: ``AzureComputeHook(azure_conn_id=target.conn_id)``. That hook reads a service
  principal from the same connection: ``login`` (client id), ``password`` (secret) and the extras
  ``tenantId`` and ``subscriptionId`` (the ``wasb`` hook reads ``tenant_id``; a connection used for both
  carries both spellings).

Metadata names on Azure must be C# identifiers (no ``-``), so a container's metadata ``cost_center`` is
recorded as the tag ``cost-center``: tags read the same on every cloud (``data-classification``...).

Errors propagate: the collector records them per (service, region).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord, utc_iso
from include.targets import Target

#: The probe makes one attempt (no SDK retries: Azure Storage's default back-off waits 15 s, 18 s, 24 s...),
#: so an unreachable account is reported in seconds. Airflow task retries cover transient blips.
PROBE_CONNECT_TIMEOUT = 10
PROBE_READ_TIMEOUT = 30


def container_resource_id(storage_account: str, container: str) -> str:
    """The container's URL on the public Azure endpoint."""
    return f"https://{storage_account}.blob.core.windows.net/{container}"


def metadata_to_tags(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Azure metadata names (``cost_center``) as tag keys (``cost-center``)."""
    return {str(key).replace("_", "-"): str(value) for key, value in (metadata or {}).items()}


def tags_to_metadata(tags: Mapping[str, str] | None) -> dict[str, str]:
    """Tag keys (``cost-center``) as valid Azure metadata names (``cost_center``)."""
    return {str(key).replace("-", "_"): str(value) for key, value in (tags or {}).items()}


def _storage_account(target: Target) -> str:
    if not target.storage_account:  # the Target model already requires it for azure targets
        raise ValueError(f"target {target.name} names no storage_account")
    return target.storage_account


def probe(target: Target) -> None:
    """Raise if ``target``'s storage account cannot be reached or refuses the credentials."""
    client = WasbHook(wasb_conn_id=target.conn_id).blob_service_client
    pages = client.list_containers(
        results_per_page=1,
        retry_total=0,
        connection_timeout=PROBE_CONNECT_TIMEOUT,
        read_timeout=PROBE_READ_TIMEOUT,
    ).by_page()
    next(iter(pages), None)


# ---- Blob Storage ------------------------------------------------------------------------------------

_BLOB_PERMISSIONS = ("Microsoft.Storage/storageAccounts/blobServices/containers/read",)


def container_attributes(container: Any, storage_account: str) -> dict[str, Any]:
    """Contract attributes of one container from its ``ContainerProperties``."""
    public_access = container.public_access or None  # "container" | "blob" | None (private)
    lease = container.lease
    return {
        "storage_account": storage_account,
        "public_access": public_access,
        # The container's access level only; an account with allowBlobPublicAccess=false overrides it,
        # and that setting is not visible through the blob endpoint.
        "public": public_access is not None,
        "immutability_policy": bool(container.has_immutability_policy),
        "legal_hold": bool(container.has_legal_hold),
        "lease_state": getattr(lease, "state", None),
        "last_modified": utc_iso(container.last_modified),
    }


@lister("azure", "blob", ["azure.storage.container"], regional=False, permissions=_BLOB_PERMISSIONS)
def list_containers(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Every container of the target's storage account, with its metadata."""
    account = _storage_account(ctx.target)
    client = WasbHook(wasb_conn_id=ctx.target.conn_id).blob_service_client
    for container in client.list_containers(include_metadata=True):
        yield ctx.record(
            service="blob",
            resource_type="azure.storage.container",
            resource_id=container_resource_id(account, container.name),
            name=container.name,
            region=ctx.target.regions[0],
            tags=metadata_to_tags(container.metadata),
            attributes=container_attributes(container, account),
        )


# ---- Virtual machines -------------------------------------------------------------------------------

_VM_PERMISSIONS = ("Microsoft.Compute/virtualMachines/read",)


def _resource_group(resource_id: str) -> str | None:
    parts = resource_id.split("/")
    lowered = [part.lower() for part in parts]
    if "resourcegroups" in lowered:
        index = lowered.index("resourcegroups") + 1
        return parts[index] if index < len(parts) else None
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


@lister("azure", "compute", ["azure.compute.vm"], regional=True, permissions=_VM_PERMISSIONS)
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
            service="compute",
            resource_type="azure.compute.vm",
            resource_id=str(data["id"]),
            name=str(data["name"]),
            region=location,
            tags=dict(data.get("tags") or {}),
            attributes=vm_attributes(data),
        )
