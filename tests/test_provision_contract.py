"""Contract tests of the provisioning steps no emulator serves: Compute Engine instances and Azure VMs.

Stateful fakes of the documented REST APIs answer with the recorded response shapes in
``tests/fixtures/contracts/provision_*.json``: ``compute.instances`` get / insert / setLabels / stop /
setMachineType / start / setDeletionProtection / delete with zone operations, and ARM
``virtualMachines`` GET / PUT / PATCH / DELETE with long-running operations (``Azure-AsyncOperation``).
Only the HTTP transport is replaced: the provider hooks (ComputeEngineHook, AzureComputeHook), the Google
discovery client and the Azure SDK pipeline (serialisation, LRO polling) and the steps run for real.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from include.changes import engine
from include.changes.engine import Item
from include.changes.model import ChangeError
from include.provisioning.base import Session
from include.provisioning.runbook import build_items
from include.provisioning.spec import Spec, load_spec
from include.targets import load_targets
from tests.test_provision_support import write_spec

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
PROJECT = "rb-contract-project"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
OWNERSHIP = {"managed-by": "cloud-runbooks", "runbooks-environment": "contract", "owner": "platform-team",
             "cost-center": "cc-1000"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHn5Gx0tFpY6u1m3O3lZqk8mJ9xW0cT7v2QkYQpD4c7y rb-demo"
NIC = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-rb-contract/providers/Microsoft.Network/"
       "networkInterfaces/rb-contract-jump-nic")


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture
def contract_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Targets that serve compute (no `services` restriction), with their connections."""
    path = tmp_path / "targets.yaml"
    path.write_text(json.dumps({"targets": [
        {"name": "gcp-contract", "cloud": "gcp", "conn_id": "gcp_contract", "project": PROJECT, "regions": ["global"]},
        {"name": "azure-contract", "cloud": "azure", "conn_id": "azure_contract", "subscription": SUBSCRIPTION,
         "storage_account": "rbcontract", "regions": ["westeurope"]}]}))
    monkeypatch.setenv("RUNBOOKS_TARGETS_FILE", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_GCP_CONTRACT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": PROJECT}}))
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_CONTRACT", json.dumps(
        {"conn_type": "azure_compute", "login": "00000000-aaaa-bbbb-cccc-000000000001", "password": "not-a-secret",
         "extra": {"tenantId": "00000000-aaaa-bbbb-cccc-000000000002", "subscriptionId": SUBSCRIPTION}}))
    return path


def make_spec(folder: Path, resource: dict[str, Any]) -> Spec:
    write_spec(folder, {"environment": "contract", "production": False, "owner": "platform-team",
                        "cost_center": "cc-1000", "targets": {"gcp": "gcp-contract", "azure": "azure-contract"},
                        "resources": [resource]})
    return load_spec("contract", folder=folder)


def plan(spec: Spec, mode: str = "provision") -> Item:
    items, skipped, _ = build_items(spec, mode, load_targets())  # type: ignore[arg-type]
    assert skipped == {}
    (item,) = engine.plan_items(items, Session(spec, mode, cache_absent=True).resolver())  # type: ignore[arg-type]
    return item


def apply(spec: Spec, item: Item, mode: str = "provision") -> Item:
    (done,) = engine.apply_items([item], Session(spec, mode).resolver())  # type: ignore[arg-type]
    (checked,) = engine.verify_items([done], Session(spec, mode).resolver())  # type: ignore[arg-type]
    return checked


# ---- Compute Engine ---------------------------------------------------------------------------------------
class FakeComputeEngine:
    """instances get / insert / setLabels / stop / start / setMachineType / setDeletionProtection / delete and
    zoneOperations.wait of one zone, answering with the recorded shapes."""

    BASE = f"/compute/v1/projects/{PROJECT}/zones/europe-west1-b"

    def __init__(self) -> None:
        self.instance: dict[str, Any] | None = None
        self.calls: list[tuple[str, str, Any]] = []
        self.pending: dict[str, dict[str, Any]] = {}
        self.fingerprint = 0
        self.fail_next: str | None = None  # an operation type whose next operation ends in an error

    def _operation(self, kind: str) -> dict[str, Any]:
        operation = fixture("provision_gce_zone_operation.json")
        operation["operationType"] = kind
        operation["name"] = f"operation-{len(self.calls)}-{kind}"
        self.pending[operation["name"]] = operation
        return operation

    def _relabel(self) -> None:
        assert self.instance is not None
        self.fingerprint += 1
        self.instance["labelFingerprint"] = f"fp-{self.fingerprint}"

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        name = f"{self.BASE}/instances/rb-contract-batch"
        if method == "GET" and path == name:
            return (200, copy.deepcopy(self.instance)) if self.instance else (404, fixture("provision_gce_error_not_found.json"))
        if method == "POST" and path == f"{self.BASE}/instances":
            if self.instance is not None:
                return 409, {"error": {"code": 409, "message": "The resource already exists", "errors": [
                    {"reason": "alreadyExists", "domain": "global", "message": "already exists"}]}}
            created = fixture("provision_gce_instance_created.json")
            created["labels"] = dict(body["labels"])
            created["deletionProtection"] = bool(body.get("deletionProtection"))
            created["machineType"] = created["machineType"].rsplit("/", 1)[0] + "/" + body["machineType"].rsplit("/", 1)[1]
            self.instance = created
            return 200, self._operation("insert")
        if self.instance is not None and path.startswith(name + "/"):
            return self._instance_call(method, path[len(name) + 1:], query, body)
        if method == "DELETE" and path == name and self.instance is not None:
            if self.instance["deletionProtection"]:
                return 400, {"error": {"code": 400, "message": "Invalid resource usage: 'Resource cannot be deleted "
                                                              "if it's protected against deletion.'"}}
            self.instance = None
            return 200, self._operation("delete")
        if method == "POST" and path.startswith(f"{self.BASE}/operations/") and path.endswith("/wait"):
            operation = self.pending.pop(path.split("/")[-2])
            done = {**operation, "status": "DONE", "progress": 100, "endTime": "2026-11-30T01:02:30.000-08:00"}
            if self.fail_next == operation["operationType"]:
                self.fail_next = None
                done["error"] = {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "The zone "
                                             "'projects/rb-contract-project/zones/europe-west1-b' does not have enough "
                                             "resources available to fulfill the request."}]}
            return 200, done
        return 404, {"error": {"code": 404, "message": f"unexpected {method} {path}"}}

    def _instance_call(self, method: str, verb: str, query: dict[str, list[str]],
                       body: Any) -> tuple[int, dict[str, Any]]:
        assert self.instance is not None
        if verb == "setLabels":
            if body["labelFingerprint"] != self.instance["labelFingerprint"]:
                return 412, {"error": {"code": 412, "message": "Labels fingerprint either invalid or resource labels "
                                                               "have changed", "errors": [{"reason": "conditionNotMet"}]}}
            self.instance["labels"] = dict(body["labels"])
            self._relabel()
        elif verb == "stop":
            self.instance["status"] = "TERMINATED"
        elif verb == "start":
            self.instance["status"] = "RUNNING"
        elif verb == "setMachineType":
            if self.instance["status"] != "TERMINATED":
                return 400, {"error": {"code": 400, "message": "The resource is not in the TERMINATED state"}}
            self.instance["machineType"] = self.instance["machineType"].rsplit("/", 1)[0] + "/" + \
                body["machineType"].rsplit("/", 1)[1]
        elif verb == "setDeletionProtection":
            self.instance["deletionProtection"] = query["deletionProtection"] == ["true"]
        else:
            return 404, {"error": {"code": 404, "message": f"unexpected {method} {verb}"}}
        return 200, self._operation(verb)

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        import httplib2

        parsed = urlparse(uri)
        sent = json.loads(body) if body else None
        self.calls.append((method, parsed.path, sent))
        status, answer = self.handle(method, parsed.path, parse_qs(parsed.query), sent)
        return httplib2.Response({"status": str(status)}), json.dumps(answer).encode()

    def verbs(self) -> list[str]:
        return [f"{m} {p.rsplit('/', 1)[-1]}" for m, p, _ in self.calls if m != "GET" and not p.endswith("/wait")]


@pytest.fixture
def fake_gce(monkeypatch: pytest.MonkeyPatch, contract_targets: Path) -> FakeComputeEngine:
    fake = FakeComputeEngine()
    monkeypatch.setattr("airflow.providers.google.common.hooks.base_google.build_http", lambda: fake)
    return fake


GCE = {"kind": "gce", "name": "batch", "tags": {"app": "contract"}, "properties": {
    "name": "rb-contract-batch", "zone": "europe-west1-b", "machine_type": "e2-small",
    "image": "projects/debian-cloud/global/images/family/debian-12"}}


def test_gce_create_update_delete(fake_gce: FakeComputeEngine, tmp_path: Path, data_dir: Path) -> None:
    spec = make_spec(tmp_path, GCE)
    item = plan(spec)
    assert item.change is not None and item.change.operation == "create"
    assert [c[0] for c in fake_gce.calls] == ["GET"], "planning only reads"
    done = apply(spec, item)
    assert done.outcome == "changed" and done.verified, (done.apply_error, done.verify_error)
    (insert,) = [c for c in fake_gce.calls if c[0] == "POST" and c[1].endswith("/instances")]
    body = insert[2]
    assert body["machineType"] == "zones/europe-west1-b/machineTypes/e2-small"
    assert body["disks"] == [{"boot": True, "autoDelete": True, "initializeParams": {
        "sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "10"}}]
    assert body["networkInterfaces"] == [{"network": "global/networks/default"}], "no external IP"
    assert body["labels"] == {**OWNERSHIP, "app": "contract"} and body["deletionProtection"] is False
    assert any(p.endswith("/wait") for _, p, _ in fake_gce.calls), "the insert operation is waited for"
    assert plan(spec).change is None

    # one field changed: the machine type (stop, setMachineType, start), then the labels (with fingerprint)
    changed = make_spec(tmp_path, {**GCE, "properties": {**GCE["properties"], "machine_type": "e2-medium"}})
    update = plan(changed)
    assert update.change is not None and update.change.after == {"machine_type": "e2-medium"}
    fake_gce.calls.clear()
    assert apply(changed, update).verified
    assert fake_gce.verbs() == ["POST stop", "POST setMachineType", "POST start"]
    relabel = make_spec(tmp_path, {**GCE, "tags": {"app": "contract-2"},
                                   "properties": {**GCE["properties"], "machine_type": "e2-medium"}})
    fake_gce.calls.clear()
    assert apply(relabel, plan(relabel)).verified
    (labels,) = [c for c in fake_gce.calls if c[1].endswith("/setLabels")]
    assert labels[2] == {"labels": {**OWNERSHIP, "app": "contract-2"}, "labelFingerprint": "42WmSpB8rSM="}

    # protected: deletion protection refuses the teardown; without it, delete and verify gone
    protected = make_spec(tmp_path, {**GCE, "tags": {"app": "contract-2"}, "properties": {
        **GCE["properties"], "machine_type": "e2-medium", "deletion_protection": True}})
    assert apply(protected, plan(protected)).verified
    assert fake_gce.instance is not None and fake_gce.instance["deletionProtection"] is True
    down = plan(protected, "teardown")
    assert down.plan_error == "Protected: Compute Engine instance rb-contract-batch: deletion protection is on"
    unprotected = make_spec(tmp_path, {**GCE, "tags": {"app": "contract-2"}, "properties": {
        **GCE["properties"], "machine_type": "e2-medium"}})
    assert apply(unprotected, plan(unprotected)).verified
    fake_gce.calls.clear()
    gone = apply(unprotected, plan(unprotected, "teardown"), "teardown")
    assert gone.outcome == "changed" and gone.verified and fake_gce.instance is None
    assert fake_gce.verbs() == ["DELETE rb-contract-batch"]


def test_gce_conflict_and_failed_operation(fake_gce: FakeComputeEngine, tmp_path: Path, data_dir: Path) -> None:
    spec = make_spec(tmp_path, GCE)
    fake_gce.fail_next = "insert"
    failed = apply(spec, plan(spec))
    assert failed.outcome == "failed" and "insert on rb-contract-batch failed" in (failed.apply_error or "")
    assert "ZONE_RESOURCE_POOL_EXHAUSTED" in (failed.apply_error or "")
    # an instance with the spec's name but no ownership labels: a conflict, never adopted
    assert fake_gce.instance is not None
    fake_gce.instance["labels"] = {"team": "someone"}
    item = plan(spec)
    assert item.plan_error is not None and item.plan_error.startswith(
        "Conflict: Compute Engine instance rb-contract-batch exists and is not managed by cloud-runbooks")
    assert plan(spec, "teardown").change is None, "teardown leaves it alone"


# ---- Azure virtual machines ----------------------------------------------------------------------------------
class FakeArm:
    """virtualMachines GET / PUT / PATCH / DELETE of one VM with ARM's long-running operations."""

    VM = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-rb-contract/providers/Microsoft.Compute/"
          "virtualMachines/rb-contract-jump")
    OPERATION = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/westeurope/operations/"

    def __init__(self) -> None:
        self.vm: dict[str, Any] | None = None
        self.calls: list[tuple[str, str, Any]] = []
        self.operations = 0

    def _async(self) -> dict[str, str]:
        self.operations += 1
        url = f"https://management.azure.com{self.OPERATION}op-{self.operations}?p=x&api-version=2024-11-01"
        return {"Azure-AsyncOperation": url, "Retry-After": "0"}

    def handle(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        if path.startswith(self.OPERATION):
            return 200, fixture("provision_azure_async_operation_succeeded.json"), {}
        if path.lower() != self.VM.lower():
            return 404, {"error": {"code": "NotFound", "message": path}}, {}
        if method == "GET":
            if self.vm is None:
                return 404, fixture("provision_azure_error_not_found.json"), {}
            return 200, copy.deepcopy(self.vm), {}
        if method == "PUT":
            created = fixture("provision_azure_vm_created.json")
            created["tags"] = dict(body.get("tags") or {})
            created["properties"]["hardwareProfile"] = body["properties"]["hardwareProfile"]
            self.vm = copy.deepcopy(created)
            self.vm["properties"]["provisioningState"] = "Succeeded"
            return 201, created, self._async()
        if method == "PATCH" and self.vm is not None:
            if "tags" in body:
                self.vm["tags"] = dict(body["tags"])  # ARM replaces the tag set with the one sent
            size = (body.get("properties") or {}).get("hardwareProfile")
            if size:
                self.vm["properties"]["hardwareProfile"] = size
            return 200, copy.deepcopy(self.vm), {}
        if method == "DELETE" and self.vm is not None:
            self.vm = None
            return 202, {}, {**self._async(), "Location": f"https://management.azure.com{self.OPERATION}op-loc"}
        return 400, {"error": {"code": "BadRequest", "message": f"unexpected {method}"}}, {}


class _StaticToken:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("contract-test-token", 4102444800)


@pytest.fixture
def fake_arm(monkeypatch: pytest.MonkeyPatch, contract_targets: Path) -> FakeArm:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.compute import ComputeManagementClient
    from requests.structures import CaseInsensitiveDict

    fake = FakeArm()

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            path = urlparse(request.url).path
            sent = json.loads(request.body) if request.body else None
            fake.calls.append((request.method, path, sent))
            status, body, headers = fake.handle(request.method, path, sent)
            content = json.dumps(body).encode() if body or status != 202 else b""
            response = requests.Response()
            response.status_code, response.reason = status, "OK" if status < 300 else "Error"
            response._content, response.raw = content, io.BytesIO(content)
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8",
                                                    "x-ms-request-id": "contract", **headers})
            response.url, response.request, response.encoding = request.url, request, "utf-8"
            return response

        def close(self) -> None:
            pass

    def client_factory(credential: Any, subscription_id: str, **kwargs: Any) -> Any:
        session = requests.Session()
        session.mount("https://", Adapter())
        return ComputeManagementClient(credential=_StaticToken(), subscription_id=subscription_id, retry_total=0,
                                       transport=RequestsTransport(session=session, session_owner=False))

    monkeypatch.setattr("airflow.providers.microsoft.azure.hooks.compute.ComputeManagementClient", client_factory)
    return fake


VM = {"kind": "azure_vm", "name": "jump", "tags": {"app": "contract"}, "properties": {
    "name": "rb-contract-jump", "resource_group": "rg-rb-contract", "vm_size": "Standard_B1s",
    "image": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server"},
    "network_interface_id": NIC, "admin_username": "rbadmin", "ssh_public_key": KEY}}


def test_azure_vm_create_update_delete(fake_arm: FakeArm, tmp_path: Path, data_dir: Path) -> None:
    spec = make_spec(tmp_path, VM)
    item = plan(spec)
    assert item.change is not None and item.change.operation == "create"
    assert [c[0] for c in fake_arm.calls] == ["GET"], "planning only reads"
    done = apply(spec, item)
    assert done.outcome == "changed" and done.verified, (done.apply_error, done.verify_error)
    (put,) = [c for c in fake_arm.calls if c[0] == "PUT"]
    body = put[2]
    assert body["location"] == "westeurope" and body["tags"] == {**OWNERSHIP, "app": "contract"}
    props = body["properties"]
    assert props["hardwareProfile"] == {"vmSize": "Standard_B1s"}
    assert props["storageProfile"]["imageReference"] == {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                                         "sku": "server", "version": "latest"}
    assert props["storageProfile"]["osDisk"] == {"createOption": "FromImage", "deleteOption": "Delete",
                                                 "managedDisk": {"storageAccountType": "StandardSSD_LRS"}}
    linux = props["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True and "adminPassword" not in props["osProfile"]
    assert linux["ssh"]["publicKeys"] == [{"path": "/home/rbadmin/.ssh/authorized_keys", "keyData": KEY}]
    assert props["networkProfile"] == {"networkInterfaces": [{"id": NIC, "properties": {"primary": True}}]}
    assert any(c[1].startswith(FakeArm.OPERATION) for c in fake_arm.calls), "the LRO was polled to Succeeded"
    assert plan(spec).change is None

    # size and tags change in place (one PATCH); the image cannot
    changed = make_spec(tmp_path, {**VM, "tags": {"app": "contract-2"},
                                   "properties": {**VM["properties"], "vm_size": "Standard_B2s"}})
    update = plan(changed)
    assert update.change is not None and set(update.change.after or {}) == {"vm_size", "tags"}
    fake_arm.calls.clear()
    assert apply(changed, update).verified
    patches = [c for c in fake_arm.calls if c[0] == "PATCH"]
    assert patches and patches[0][2] == {"tags": {**OWNERSHIP, "app": "contract-2"},
                                         "properties": {"hardwareProfile": {"vmSize": "Standard_B2s"}}}
    other_image = make_spec(tmp_path, {**VM, "tags": {"app": "contract-2"}, "properties": {
        **VM["properties"], "vm_size": "Standard_B2s",
        "image": {"publisher": "Canonical", "offer": "ubuntu-22_04-lts", "sku": "server"}}})
    refused = plan(other_image)
    assert refused.plan_error is not None and "image" in refused.plan_error and "cannot change in place" in \
        refused.plan_error

    gone = apply(changed, plan(changed, "teardown"), "teardown")
    assert gone.outcome == "changed" and gone.verified and fake_arm.vm is None
    assert [c[0] for c in fake_arm.calls if c[1] == FakeArm.VM].count("DELETE") == 1


def test_azure_vm_look_alike_is_a_conflict(fake_arm: FakeArm, tmp_path: Path, data_dir: Path) -> None:
    fake_arm.vm = fixture("provision_azure_vm_created.json")
    fake_arm.vm["tags"] = {"owner": "someone"}
    fake_arm.vm["properties"]["provisioningState"] = "Succeeded"
    spec = make_spec(tmp_path, VM)
    item = plan(spec)
    assert item.plan_error is not None and item.plan_error.startswith(
        "Conflict: Azure virtual machine rb-contract-jump exists and is not managed by cloud-runbooks")
    with pytest.raises(ChangeError, match="not managed"):
        Session(spec, "provision").step("azure_vm").apply(
            item.change or _create_change(spec))  # an approved create never adopts it either
    assert fake_arm.vm["tags"] == {"owner": "someone"} and not [c for c in fake_arm.calls if c[0] in ("PUT", "PATCH")]


def _create_change(spec: Spec) -> Any:
    from include.changes.model import Change, identity

    session = Session(spec, "provision")
    record = session.record("azure_vm.jump")
    return Change(step="provision.azure.compute.vm", operation="create", resource=identity(record), action="PUT",
                  request={}, before=None, after={}, summary="create")


def test_contract_fixtures_are_the_documented_shapes() -> None:
    vm = fixture("provision_azure_vm_created.json")
    assert vm["type"] == "Microsoft.Compute/virtualMachines" and vm["properties"]["provisioningState"] == "Creating"
    instance = fixture("provision_gce_instance_created.json")
    assert instance["kind"] == "compute#instance" and instance["labelFingerprint"]
    assert fixture("provision_gce_zone_operation.json")["kind"] == "compute#operation"
