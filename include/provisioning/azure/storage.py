"""Azure Blob containers in the target's storage account: private access, metadata (the tags).

Encryption, blob versioning and lifecycle management are settings of the storage *account* on Azure, not
of a container: the spec schema refuses them on a container and says so. Metadata names cannot contain
``-``: the tag ``cost-center`` is stored as ``cost_center`` (and read back as ``cost-center``, as the
inventory does). An immutability policy or a legal hold protects the container from teardown.
"""

from __future__ import annotations

from typing import Any

from include.clouds.azure.ids import container_resource_id
from include.clouds.azure.inventory.storage import metadata_to_tags, tags_to_metadata
from include.provisioning.base import AlreadyExists, Live, ResourceStep
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/read"
_WRITE = "Microsoft.Storage/storageAccounts/blobServices/containers/write"
_DELETE = "Microsoft.Storage/storageAccounts/blobServices/containers/delete"


@provisions(
    "container",
    read=(_READ, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"),
    create=(_WRITE,),
    update=(_WRITE,),
    delete=(_DELETE,),
    actions={"create": "Create Container (private, with metadata)",
             "update": "Set Container Metadata / Set Container ACL (public access off)",
             "delete": "Delete Container"},
)
class BlobContainer(ResourceStep):
    """A private Blob container with the spec's tags as metadata."""

    optimistic_create = True  # Create Container answers 409 ContainerAlreadyExists

    def container(self, res: SpecResource, name: str) -> Any:
        conn_id = self.target_of(res).conn_id

        def make() -> Any:
            from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

            return WasbHook(wasb_conn_id=conn_id).get_conn()

        return self.client(("wasb", conn_id), make).get_container_client(name)

    def url(self, res: SpecResource, name: str) -> str:
        return container_resource_id(str(self.target_of(res).storage_account), name)

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {"public_access": None}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        from azure.core.exceptions import ResourceNotFoundError

        name = str(props["name"])
        client = self.container(res, name)
        try:
            found = client.get_container_properties()
        except ResourceNotFoundError:
            return None
        tags = metadata_to_tags(found.metadata)
        fields = {"public_access": found.public_access or None, "tags": tags}
        live = Live(fields=fields, outputs={"id": name, "name": name, "url": self.url(res, name)}, tags=tags)
        if self.teardown:
            if found.has_immutability_policy or found.has_legal_hold:
                live.protected = "an immutability policy or a legal hold is set (a retention lock)"
            elif not props.get("force_destroy") and next(iter(client.list_blobs(results_per_page=1)), None):
                live.protected = "it holds blobs and force_destroy is false"
        return live

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        from azure.core.exceptions import ResourceExistsError

        name = str(props["name"])
        try:
            self.container(res, name).create_container(metadata=tags_to_metadata(want["tags"]), public_access=None)
        except ResourceExistsError as exc:
            raise AlreadyExists(f"container {name} exists") from exc
        return {"id": name, "name": name, "url": self.url(res, name)}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        client = self.container(res, str(props["name"]))
        if "tags" in changed:
            client.set_container_metadata(tags_to_metadata(want["tags"]))
        if "public_access" in changed:
            policy = client.get_container_access_policy()
            # Set Container ACL replaces the stored access policies too: send the current ones back.
            identifiers = {si.id: si.access_policy for si in policy.get("signed_identifiers") or []}
            client.set_container_access_policy(signed_identifiers=identifiers, public_access=None)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        self.container(res, str(props["name"])).delete_container()
