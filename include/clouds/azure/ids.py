"""Azure resource ids: Blob container URLs and ARM ids, built and read back in one place."""

from __future__ import annotations

import re

_VM = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/([^/]+)/providers/Microsoft\.Compute/virtualMachines/([^/]+)$",
    re.IGNORECASE,
)
_CONTAINER = re.compile(r"^https://([a-z0-9]{3,24})\.blob\.core\.windows\.net/([a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?)/?$")


class ResourceIdError(ValueError):
    """A string is not the kind of Azure resource id asked for."""


def container_resource_id(storage_account: str, container: str) -> str:
    """A container's id: its public endpoint URL (also for an emulator, so ids are the same everywhere)."""
    return f"https://{storage_account}.blob.core.windows.net/{container}"


def container_parts(resource_id: str) -> tuple[str, str]:
    """(storage account, container) of a container id."""
    match = _CONTAINER.match(resource_id)
    if not match:
        raise ResourceIdError(f"not an Azure Blob container id: {resource_id!r}")
    return match.group(1), match.group(2)


def vm_resource_id(subscription: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines/{name}"


def vm_parts(resource_id: str) -> tuple[str, str]:
    """(resource group, VM name) of a virtual machine's ARM id."""
    match = _VM.match(resource_id)
    if not match:
        raise ResourceIdError(f"not an Azure virtual machine id: {resource_id!r}")
    return match.group(1), match.group(2)
