"""Seed the ``azure:`` section of ``config/estate.yaml``: Blob Storage containers and small blobs.

Through ``WasbHook`` (its ``blob_service_client``: ``WasbHook.create_container`` logs and swallows errors,
and a seed step that fails must fail). A container is identified by its name plus the metadata
``seed_id`` (Azure metadata names cannot contain ``-``; tags are written with ``_`` and the inventory reads
them back as ``seed-id``, ``cost-center``...). An existing container carrying the right ``seed_id`` is
reported ``existing`` and left as it is; one without it is somebody else's and stops the run. Blobs are
created when missing, never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from include.clouds.azure.inventory.storage import tags_to_metadata
from include.targets import Target
from localdev.seed import SEED_TAG, SeedError, SeedReport, object_body, seeded_objects

_CONTAINER_KEYS = {"name", "seed_id", "public_access", "tags", "blobs"}
#: Estate spelling -> the SDK's ``public_access`` argument.
_ACCESS = {"private": None, "blob": "blob", "container": "container"}
SEED_METADATA = SEED_TAG.replace("-", "_")


def container_metadata(entry: Mapping[str, Any]) -> dict[str, str]:
    """The entry's tags plus ``seed-id``, as valid Azure metadata names."""
    tags = {str(k): str(v) for k, v in (entry.get("tags") or {}).items()}
    tags[SEED_TAG] = str(entry["seed_id"])
    return tags_to_metadata(tags)


def _validate(entry: Mapping[str, Any]) -> None:
    where = f"estate azure container {entry.get('name')!r}"
    if not entry.get("name") or not entry.get("seed_id"):
        raise SeedError(f"{where}: needs name and seed_id")
    unknown = set(entry) - _CONTAINER_KEYS
    if unknown:
        raise SeedError(f"{where}: unknown keys {sorted(unknown)}")
    if entry.get("public_access", "private") not in _ACCESS:
        raise SeedError(f"{where}: public_access must be one of {sorted(_ACCESS)}")


def seed_container(client: Any, entry: Mapping[str, Any], report: SeedReport) -> None:
    """Create one container (access level, metadata) when missing, then its missing blobs."""
    _validate(entry)
    name, seed_id = str(entry["name"]), str(entry["seed_id"])
    container = client.get_container_client(name)
    try:
        properties = container.get_container_properties()
    except ResourceNotFoundError:
        properties = None
    if properties is not None:
        if (properties.metadata or {}).get(SEED_METADATA) != seed_id:
            raise SeedError(
                f"container {name} exists without metadata {SEED_METADATA}={seed_id}: not ours, "
                "refusing to adopt it"
            )
        report.add(False, "azure.storage.container", name)
    else:
        container.create_container(
            metadata=container_metadata(entry),
            public_access=_ACCESS[str(entry.get("public_access", "private"))],
        )
        report.add(True, "azure.storage.container", name)

    for blob_name, size in seeded_objects(entry, "blobs").items():
        try:
            container.upload_blob(blob_name, object_body(name, blob_name, size), overwrite=False)
        except ResourceExistsError:
            report.add(False, "azure.storage.blob", f"{name}/{blob_name}")
        else:
            report.add(True, "azure.storage.blob", f"{name}/{blob_name}")


def seed(target: Target, section: Mapping[str, Any], report: SeedReport) -> None:
    """Apply the ``azure:`` section to the target's storage account."""
    client = WasbHook(wasb_conn_id=target.conn_id).blob_service_client
    for entry in section.get("containers") or []:
        seed_container(client, entry, report)
