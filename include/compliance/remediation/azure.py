"""Azure fixers: Blob container public access off; required metadata on containers.

Calls go through ``WasbHook`` built from the target's ``conn_id`` (imported lazily).
"""

from __future__ import annotations

import re
from typing import Any

from include.compliance.remediation.registry import Fixer, RemediationError, fixer
from include.compliance.remediation.tags import TagsFixerBase
from include.records import ResourceRecord

AZURE_CONTAINER = "azure.storage.container"
_CONTAINER_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"
_CONTAINER_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/write"


def container_name(record: ResourceRecord) -> str:
    """The container from ``https://<account>.blob.core.windows.net/<container>`` (or the name)."""
    path = record.resource_id.split("://", 1)[-1].split("/", 1)
    if len(path) == 2 and path[1] and "/" not in path[1].strip("/"):
        return path[1].strip("/")
    return record.name


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


@fixer(
    "tags.required",
    "azure",
    [AZURE_CONTAINER],
    permissions=(_CONTAINER_READ, _CONTAINER_WRITE),
    action="Set Container Metadata",
)
class BlobRequiredMetadata(TagsFixerBase, _BlobFixer):
    """Add missing required metadata to Blob containers (names with '-' are stored with '_')."""

    def normalise_key(self, key: str) -> str:
        return metadata_key(key)

    def validate_tag(self, key: str, value: str) -> None:
        if not value.isascii():
            raise RemediationError(f"metadata {key}={value!r}: Azure metadata values must be ASCII")

    def current_tags(self, record: ResourceRecord) -> dict[str, str]:
        return dict(self.container(record).get_container_properties().metadata or {})

    def add_tags(self, record: ResourceRecord, current: dict[str, str], missing: dict[str, str]) -> None:
        # Set Container Metadata replaces every pair: send the ones just read plus the missing ones.
        self.container(record).set_container_metadata({**current, **missing})
