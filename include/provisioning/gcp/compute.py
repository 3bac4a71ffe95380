"""Compute Engine instances, through ``ComputeEngineHook`` (its Compute API discovery client).

No emulator serves Compute Engine: this step is contract-tested against the documented REST shapes
(tests/test_provision_contract.py). The boot image and disk size are fixed at creation; the machine type
changes with a stop / setMachineType / start; labels change with ``setLabels`` and the instance's
``labelFingerprint`` (a concurrent relabelling makes the call fail instead of being overwritten).
Instances get no external IP. Deletion protection makes a teardown refuse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from include.changes.model import ChangeError
from include.changes.waiting import WaitTimeout
from include.clouds.gcp.ids import instance_resource_id
from include.provisioning.base import AlreadyExists, Live, ResourceStep
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

#: Seconds to wait for one zone operation (insert, delete, stop, start, setMachineType...).
OPERATION_TIMEOUT = 600.0


def _last(url: str | None) -> str | None:
    return url.rstrip("/").rsplit("/", 1)[-1] if url else None


def _network(url: str | None) -> str | None:
    """``https://.../projects/p/global/networks/default`` -> ``global/networks/default``."""
    if not url:
        return None
    parts = url.rstrip("/").split("/")
    return "/".join(parts[-3:])


def _http_status(exc: BaseException) -> int | None:
    resp = getattr(exc, "resp", None)
    status = getattr(resp, "status", None)
    return int(status) if status is not None else None


@provisions(
    "gce",
    read=("compute.instances.get",),
    create=("compute.instances.create", "compute.disks.create", "compute.subnetworks.use",
            "compute.instances.setLabels", "compute.instances.setDeletionProtection", "compute.zoneOperations.get"),
    update=("compute.instances.setLabels", "compute.instances.setMachineType", "compute.instances.stop",
            "compute.instances.start", "compute.instances.setDeletionProtection", "compute.zoneOperations.get"),
    delete=("compute.instances.delete", "compute.zoneOperations.get"),
    actions={"create": "compute.instances.insert",
             "update": "compute.instances.setLabels / setMachineType (stop, start) / setDeletionProtection",
             "delete": "compute.instances.delete"},
)
class GceInstance(ResourceStep):
    """A Compute Engine instance with a boot disk from ``image`` on ``network``, no external IP."""

    immutable = ("disk_size_gb", "network")
    optimistic_create = True  # insert answers 409 alreadyExists
    verify_wait = 600.0
    verify_interval = 10.0

    def compute(self, res: SpecResource) -> Any:
        conn_id = self.target_of(res).conn_id

        def make() -> Any:
            from airflow.providers.google.cloud.hooks.compute import ComputeEngineHook

            # The Google provider leaves ComputeEngineHook.get_conn unannotated (a discovery Resource).
            return ComputeEngineHook(gcp_conn_id=conn_id).get_conn()  # type: ignore[no-untyped-call]

        return self.client(("gce", conn_id), make)

    def where(self, res: SpecResource, props: dict[str, Any]) -> dict[str, str]:
        return {"project": self.target_of(res).account, "zone": str(props["zone"])}

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {"machine_type": props["machine_type"], "network": props.get("network") or "global/networks/default",
                "disk_size_gb": int(props.get("disk_size_gb") or 10),
                "deletion_protection": bool(props.get("deletion_protection", False)), "status": "RUNNING"}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        from googleapiclient.errors import HttpError  # type: ignore[import-untyped]

        try:
            inst = self.compute(res).instances().get(instance=str(props["name"]), **self.where(res, props)).execute()
        except HttpError as exc:
            if _http_status(exc) == 404:
                return None
            raise
        tags = dict(inst.get("labels") or {})
        nics = inst.get("networkInterfaces") or []
        boot: dict[str, Any] = next((d for d in inst.get("disks") or [] if d.get("boot")), {})
        status = str(inst.get("status"))
        fields = {"machine_type": _last(inst.get("machineType")), "network": _network(nics[0].get("network") if nics else None),
                  "disk_size_gb": int(boot.get("diskSizeGb") or 0) or None,
                  "deletion_protection": bool(inst.get("deletionProtection", False)),
                  "status": "RUNNING" if status in ("PROVISIONING", "STAGING", "RUNNING") else status, "tags": tags}
        project, zone = self.target_of(res).account, str(props["zone"])
        outputs = {"id": str(inst.get("id")), "name": inst.get("name"), "self_link": inst.get("selfLink"),
                   "private_ip": nics[0].get("networkIP") if nics else None,
                   "resource_id": instance_resource_id(project, zone, str(inst.get("name")))}
        live = Live(fields=fields, outputs=outputs, tags=tags, ready=status == "RUNNING",
                    detail={"fingerprint": inst.get("labelFingerprint"), "status": status})
        if fields["deletion_protection"]:
            live.protected = "deletion protection is on"
        return live

    def _wait(self, res: SpecResource, props: dict[str, Any], operation: dict[str, Any], what: str) -> None:
        service = self.compute(res)
        deadline = time.monotonic() + OPERATION_TIMEOUT
        while operation.get("status") != "DONE":
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what} on {props['name']} not done after {OPERATION_TIMEOUT:.0f}s "
                                  f"(operation {operation.get('name')})")
            # zoneOperations.wait returns when the operation is DONE or after about two minutes.
            operation = service.zoneOperations().wait(operation=operation["name"], **self.where(res, props)).execute()
        if operation.get("error"):
            raise ChangeError(f"{what} on {props['name']} failed: {operation['error']}")

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        from googleapiclient.errors import HttpError

        zone = str(props["zone"])
        body: dict[str, Any] = {
            "name": str(props["name"]),
            "machineType": f"zones/{zone}/machineTypes/{want['machine_type']}",
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": str(props["image"]), "diskSizeGb": str(want["disk_size_gb"])}}],
            "networkInterfaces": [{"network": want["network"]}],  # no accessConfigs: no external IP
            "labels": dict(want["tags"]),
            "deletionProtection": want["deletion_protection"],
        }
        try:
            operation = self.compute(res).instances().insert(body=body, requestId=str(uuid.uuid4()),
                                                             **self.where(res, props)).execute()
        except HttpError as exc:
            if _http_status(exc) == 409:
                raise AlreadyExists(f"instance {props['name']} exists") from exc
            raise
        self._wait(res, props, operation, "insert")
        project = self.target_of(res).account
        return {"name": str(props["name"]),
                "resource_id": instance_resource_id(project, zone, str(props["name"]))}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        instances = self.compute(res).instances()
        where = {**self.where(res, props), "instance": str(props["name"])}
        if "machine_type" in changed:
            if live.detail["status"] != "TERMINATED":  # the type of a running instance cannot change
                self._wait(res, props, instances.stop(**where).execute(), "stop")
            body = {"machineType": f"zones/{props['zone']}/machineTypes/{want['machine_type']}"}
            self._wait(res, props, instances.setMachineType(body=body, **where).execute(), "setMachineType")
            self._wait(res, props, instances.start(**where).execute(), "start")
        elif "status" in changed:
            self._wait(res, props, instances.start(**where).execute(), "start")
        if "deletion_protection" in changed:
            operation = instances.setDeletionProtection(
                deletionProtection=want["deletion_protection"], project=where["project"], zone=where["zone"],
                resource=where["instance"]).execute()
            self._wait(res, props, operation, "setDeletionProtection")
        if "tags" in changed:
            labels = {"labels": dict(want["tags"]), "labelFingerprint": live.detail["fingerprint"]}
            self._wait(res, props, instances.setLabels(body=labels, **where).execute(), "setLabels")

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        operation = self.compute(res).instances().delete(instance=str(props["name"]), **self.where(res, props)).execute()
        self._wait(res, props, operation, "delete")
