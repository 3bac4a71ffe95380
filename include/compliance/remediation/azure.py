"""Azure fixers: Blob container public access off; required metadata / tags on containers and VMs.

Calls go through ``WasbHook`` / ``AzureComputeHook`` built from the target's ``conn_id`` (imported lazily).
"""

from __future__ import annotations

import re
from typing import Any

from include.clouds.azure import ids
from include.compliance.remediation.registry import Fixer, RemediationError, fixer
from include.compliance.remediation.tags import TagsFixerBase
from include.records import ResourceRecord

AZURE_CONTAINER = "azure.storage.container"
AZURE_VM = "azure.compute.vm"
_CONTAINER_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"
_CONTAINER_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/write"


def container_name(record: ResourceRecord) -> str:
    """The container of ``https://<account>.blob.core.windows.net/<container>`` (a malformed id is an error)."""
    return ids.container_parts(record.resource_id)[1]


def metadata_key(tag: str) -> str:
    """Azure metadata names must be C# identifiers: ``cost-center`` is stored as ``cost_center``."""
    key = re.sub(r"[^A-Za-z0-9_]", "_", tag)
    return f"_{key}" if key[:1].isdigit() else key


class _BlobFixer(Fixer):
    def container(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id

        def make() -> Any:
            from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

            return WasbHook(wasb_conn_id=conn_id).get_conn()

        service = self.client(("wasb", conn_id), make)
        return service.get_container_client(container_name(record))


@fixer(
    "azure.blob.private_access",
    "azure",
    [AZURE_CONTAINER],
    permissions=(_CONTAINER_READ, _CONTAINER_WRITE),
    action="Set Container ACL (public access: none)",
)
class BlobPrivateAccess(_BlobFixer):
    """Turn anonymous (public) access of the container off; stored access policies are kept."""

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        policy = self.container(record).get_container_access_policy()
        return {"public_access": policy.get("public_access") or None}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"public_access": None}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"container": container_name(record), "public_access": None, "signed_identifiers": "kept as they are"}

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        container = self.container(record)
        policy = container.get_container_access_policy()
        # Set Container ACL replaces the stored access policies too: send the current ones back.
        identifiers = {si.id: si.access_policy for si in policy.get("signed_identifiers") or []}
        container.set_container_access_policy(signed_identifiers=identifiers, public_access=None)
        return self.request_for(record, state, desired)


def vm_parts(record: ResourceRecord) -> tuple[str, str]:
    """(resource group, VM name) from the ARM id of a virtual machine."""
    return ids.vm_parts(record.resource_id)


@fixer(
    "tags.required",
    "azure",
    [AZURE_CONTAINER, AZURE_VM],
    permissions=(_CONTAINER_READ, _CONTAINER_WRITE, "Microsoft.Compute/virtualMachines/read",
                 "Microsoft.Compute/virtualMachines/write"),
)
class AzureRequiredTags(TagsFixerBase, _BlobFixer):
    """Add missing required metadata to Blob containers and tags to virtual machines.

    Container metadata names cannot contain '-': ``cost-center`` is stored as ``cost_center`` (the
    rules read both as the same key). VM tags keep the key as given.
    """

    def action_for(self, record: ResourceRecord) -> str:
        return "virtualMachines.update (tags)" if record.resource_type == AZURE_VM else "Set Container Metadata"

    def normalise_key(self, key: str, record: ResourceRecord) -> str:
        return key if record.resource_type == AZURE_VM else metadata_key(key)

    def validate_tag(self, key: str, value: str, record: ResourceRecord) -> None:
        if record.resource_type == AZURE_VM:
            if set(key) & set("<>%&\\?/") or len(key) > 512 or len(value) > 256:
                raise RemediationError(f"tag {key}={value!r}: Azure tag names exclude <>%&\\?/, up to 512 "
                                       "characters; values up to 256")
        elif not value.isascii():
            raise RemediationError(f"metadata {key}={value!r}: Azure metadata values must be ASCII")

    def compute(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id

        def make() -> Any:
            from airflow.providers.microsoft.azure.hooks.compute import AzureComputeHook

            return AzureComputeHook(azure_conn_id=conn_id).get_conn()

        return self.client(("azure-compute", conn_id), make)

    def current_tags(self, record: ResourceRecord) -> dict[str, str]:
        if record.resource_type == AZURE_VM:
            group, name = vm_parts(record)
            return dict(self.compute(record).virtual_machines.get(group, name).tags or {})
        return dict(self.container(record).get_container_properties().metadata or {})

    def add_tags(self, record: ResourceRecord, current: dict[str, str], missing: dict[str, str]) -> None:
        if record.resource_type == AZURE_VM:
            from azure.mgmt.compute.models import VirtualMachineUpdate

            group, name = vm_parts(record)
            # PATCH with tags only: the VM's other properties are not sent, so not touched. Tags replace
            # the whole set: send the ones just read plus the missing ones.
            poller = self.compute(record).virtual_machines.begin_update(
                group, name, VirtualMachineUpdate(tags={**current, **missing})
            )
            poller.result()
            return
        # Set Container Metadata replaces every pair: send the ones just read plus the missing ones.
        self.container(record).set_container_metadata({**current, **missing})
