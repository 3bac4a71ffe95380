"""Blob Storage containers of the target's storage account: access level, metadata, leases, holds.

Metadata names on Azure must be C# identifiers (no ``-``), so a container's metadata ``cost_center`` is
recorded as the tag ``cost-center``: tags read the same on every cloud (``data-classification``...).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

from include.clouds.azure.ids import container_resource_id
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord, utc_iso
from include.targets import Target

PERMISSIONS = ("Microsoft.Storage/storageAccounts/blobServices/containers/read",)


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


@lister("azure", "storage", ["azure.storage.container"], regional=False, permissions=PERMISSIONS)
def list_containers(ctx: ListContext) -> Iterator[ResourceRecord]:
    """Every container of the target's storage account, with its metadata."""
    account = _storage_account(ctx.target)
    client = WasbHook(wasb_conn_id=ctx.target.conn_id).get_conn()
    for container in client.list_containers(include_metadata=True):
        yield ctx.record(
            resource_type="azure.storage.container",
            resource_id=container_resource_id(account, container.name),
            name=container.name,
            region=ctx.target.regions[0],
            tags=metadata_to_tags(container.metadata),
            attributes=container_attributes(container, account),
        )
