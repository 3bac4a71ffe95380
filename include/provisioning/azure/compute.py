"""Azure virtual machines, through ``AzureComputeHook`` (its ComputeManagementClient).

No emulator serves Azure Resource Manager: this step is contract-tested against the documented REST
shapes, long-running operations included (tests/test_provision_contract.py). A VM boots from a
marketplace image with a managed OS disk, on an existing network interface (Microsoft.Network is not
managed here: azure-mgmt-network is not installed), and allows SSH keys only (no password). The size and
the tags change in place (``virtualMachines.update``); image, NIC, admin user and disk type are fixed at
creation. ARM has no deletion-protection flag on a VM (``CanNotDelete`` locks are Microsoft.Authorization,
not read here): a locked VM makes the delete fail and the teardown report it.
"""

from __future__ import annotations

from typing import Any

from include.clouds.azure.ids import vm_resource_id
from include.provisioning.base import Live, ResourceStep
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

_VM = "Microsoft.Compute/virtualMachines"


def _image(reference: Any) -> dict[str, Any] | None:
    if not reference:
        return None
    return {"publisher": reference.get("publisher"), "offer": reference.get("offer"), "sku": reference.get("sku"),
            "version": reference.get("version") or "latest"}


@provisions(
    "azure_vm",
    read=(f"{_VM}/read",),
    create=(f"{_VM}/write", "Microsoft.Network/networkInterfaces/join/action", "Microsoft.Compute/disks/write"),
    update=(f"{_VM}/write",),
    delete=(f"{_VM}/delete", "Microsoft.Compute/disks/delete"),
    actions={"create": "virtualMachines.beginCreateOrUpdate (PUT)",
             "update": "virtualMachines.beginUpdate (PATCH: size, tags)",
             "delete": "virtualMachines.beginDelete"},
)
class AzureVm(ResourceStep):
    """An Azure VM (Linux, SSH key only) on an existing NIC, with a managed OS disk deleted with it."""

    immutable = ("location", "image", "network_interface_id", "admin_username", "os_disk_type")
    verify_wait = 900.0
    verify_interval = 15.0

    def compute(self, res: SpecResource) -> Any:
        conn_id = self.target_of(res).conn_id

        def make() -> Any:
            from airflow.providers.microsoft.azure.hooks.compute import AzureComputeHook

            return AzureComputeHook(azure_conn_id=conn_id).get_conn()

        return self.client(("azure-compute", conn_id), make)

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        image = dict(props["image"])
        image.setdefault("version", "latest")
        return {"location": res.region, "vm_size": props["vm_size"], "image": image,
                "network_interface_id": str(props["network_interface_id"]).lower(),
                "admin_username": props["admin_username"], "os_disk_type": props.get("os_disk_type", "StandardSSD_LRS")}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            vm = self.compute(res).virtual_machines.get(str(props["resource_group"]), str(props["name"]))
        except ResourceNotFoundError:
            return None
        data = vm.as_dict()  # the ARM JSON resource (REST names), as the inventory lister reads it
        props = data.get("properties") or {}
        tags = dict(data.get("tags") or {})
        storage = props.get("storageProfile") or {}
        os_disk = storage.get("osDisk") or {}
        nics = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        fields = {"location": data.get("location"), "vm_size": (props.get("hardwareProfile") or {}).get("vmSize"),
                  "image": _image(storage.get("imageReference")),
                  "network_interface_id": str(nics[0].get("id")).lower() if nics else None,
                  "admin_username": (props.get("osProfile") or {}).get("adminUsername"),
                  "os_disk_type": (os_disk.get("managedDisk") or {}).get("storageAccountType"), "tags": tags}
        outputs = {"id": data.get("id"), "name": data.get("name"), "vm_id": props.get("vmId")}
        return Live(fields=fields, outputs=outputs, tags=tags, ready=props.get("provisioningState") == "Succeeded")

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        from azure.mgmt.compute import models

        user = str(props["admin_username"])
        body = {  # the documented ARM body of virtualMachines.createOrUpdate
            "location": want["location"], "tags": dict(want["tags"]),
            "properties": {
                "hardwareProfile": {"vmSize": want["vm_size"]},
                "storageProfile": {
                    "imageReference": dict(want["image"]),
                    "osDisk": {"createOption": "FromImage", "deleteOption": "Delete",
                               "managedDisk": {"storageAccountType": want["os_disk_type"]}},
                },
                "osProfile": {"computerName": str(props["name"]), "adminUsername": user, "linuxConfiguration": {
                    "disablePasswordAuthentication": True,
                    "ssh": {"publicKeys": [{"path": f"/home/{user}/.ssh/authorized_keys",
                                            "keyData": str(props["ssh_public_key"])}]}}},
                "networkProfile": {"networkInterfaces": [
                    {"id": str(props["network_interface_id"]), "properties": {"primary": True}}]},
            },
        }
        poller = self.compute(res).virtual_machines.begin_create_or_update(
            str(props["resource_group"]), str(props["name"]), models.VirtualMachine(body))
        created = poller.result().as_dict()
        return {"id": created.get("id") or vm_resource_id(self.target_of(res).account, str(props["resource_group"]),
                                                          str(props["name"])),
                "name": created.get("name"), "vm_id": (created.get("properties") or {}).get("vmId")}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        from azure.mgmt.compute import models

        patch: dict[str, Any] = {}
        if "tags" in changed:
            patch["tags"] = dict(want["tags"])  # ARM replaces the tag set with the one sent
        if "vm_size" in changed:
            patch["properties"] = {"hardwareProfile": {"vmSize": want["vm_size"]}}
        self.compute(res).virtual_machines.begin_update(str(props["resource_group"]), str(props["name"]),
                                                        models.VirtualMachineUpdate(patch)).result()

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        self.compute(res).virtual_machines.begin_delete(str(props["resource_group"]), str(props["name"])).result()
