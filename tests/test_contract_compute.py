"""Contract tests of the compute listers no emulator serves: Compute Engine instances and Azure VMs.

The fixtures under ``tests/fixtures/contracts/`` replicate the documented response bodies of
``compute.instances.aggregatedList`` (two pages, empty-zone warnings) and ``virtualMachines.listAll``
with ``statusOnly=true`` (two pages through ``nextLink``). Only the HTTP transport is replaced: the
provider hooks, the Google discovery client / the Azure SDK pipeline and deserialisation, and the
lister's mapping all run for real.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from include.clouds.errors import classify
from include.inventory.registry import ListContext, listers_for
from include.records import ResourceRecord
from include.targets import Target

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
GCP_PROJECT = "rb-contract-project"
AZURE_SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _run(cloud: str, service: str, target: Target, region: str) -> list[ResourceRecord]:
    (entry,) = listers_for(cloud, [service])
    return list(entry.func(ListContext(target=target, region=region)))


# ---- Compute Engine ----------------------------------------------------------------------------------


@pytest.fixture
def gcp_target(monkeypatch: pytest.MonkeyPatch) -> Target:
    conn = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": GCP_PROJECT}}
    monkeypatch.setenv("AIRFLOW_CONN_GCP_CONTRACT", json.dumps(conn))
    return Target.model_validate(
        {
            "name": "gcp-contract",
            "cloud": "gcp",
            "conn_id": "gcp_contract",
            "project": GCP_PROJECT,
            "regions": ["europe-west1", "us-central1"],
        }
    )


@pytest.fixture
def gce_http(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[tuple[int, dict[str, Any]]]], list[str]]:
    """Replace the hook's httplib2 transport with canned (status, body) answers; returns the URIs asked."""
    from googleapiclient.http import HttpMockSequence

    uris: list[str] = []

    def install(answers: list[tuple[int, dict[str, Any]]]) -> list[str]:
        class Recording(HttpMockSequence):  # type: ignore[misc]
            def request(self, uri: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
                uris.append(uri)
                return super().request(uri, method, *args, **kwargs)

        def build_http() -> Any:
            return Recording([({"status": str(status)}, json.dumps(body)) for status, body in answers])

        monkeypatch.setattr("airflow.providers.google.common.hooks.base_google.build_http", build_http)
        return uris

    return install


def _gce_pages() -> list[tuple[int, dict[str, Any]]]:
    return [
        (200, _fixture("gce_instances_aggregated_list_page1.json")),
        (200, _fixture("gce_instances_aggregated_list_page2.json")),
    ]


def test_gce_lister_maps_aggregated_list(gcp_target: Target, gce_http: Any) -> None:
    uris = gce_http(_gce_pages())
    records = _run("gcp", "compute", gcp_target, "europe-west1")

    # Both pages were walked with the documented request; only europe-west1 instances are kept.
    assert len(uris) == 2
    first, second = (urlparse(uri) for uri in uris)
    assert first.path.endswith(f"/compute/v1/projects/{GCP_PROJECT}/aggregated/instances")
    assert "pageToken" not in parse_qs(first.query)
    assert parse_qs(second.query)["pageToken"] == [
        "ClgKVnByb2plY3RzL3JiLWNvbnRyYWN0LXByb2plY3QvYWdncmVnYXRlZC9pbnN0YW5jZXMvcGFnZTI="
    ]
    assert sorted(r.name for r in records) == ["batch-eu-2", "web-eu-1"]

    web = next(r for r in records if r.name == "web-eu-1")
    assert web.resource_type == "gcp.compute.instance"
    assert web.service == "compute"
    assert web.cloud == "gcp" and web.account == GCP_PROJECT and web.target == "gcp-contract"
    assert web.region == "europe-west1"
    assert (
        web.resource_id
        == f"//compute.googleapis.com/projects/{GCP_PROJECT}/zones/europe-west1-b/instances/web-eu-1"
    )
    assert web.tags == {"owner": "web-team", "cost-center": "cc-3000", "data-classification": "public"}
    a = web.attributes
    assert a["state"] == "RUNNING"
    assert a["machine_type"] == "e2-medium"
    assert a["zone"] == "europe-west1-b"
    assert a["created_at"] == "2025-03-14T09:15:37Z"  # -07:00 normalised to UTC
    assert a["public_ip"] == "34.76.120.14"
    assert a["private_ips"] == ["10.132.0.2"]
    assert a["network_tags"] == ["http-server", "https-server"]
    assert a["service_accounts"] == ["123456789012-compute@developer.gserviceaccount.com"]
    assert a["deletion_protection"] is True
    assert a["preemptible"] is False
    assert a["encrypted"] is True
    assert a["kms_key"].startswith(
        f"projects/{GCP_PROJECT}/locations/europe-west1/keyRings/runbooks/cryptoKeys/disks"
    )
    assert a["disks"] == [
        {"name": "web-eu-1", "boot": True, "kms_key": a["kms_key"]},
        {"name": "web-eu-1-data", "boot": False, "kms_key": None},
    ]
    assert a["instance_id"] == "4518296723617890123"

    batch = next(r for r in records if r.name == "batch-eu-2").attributes
    assert batch["state"] == "TERMINATED"
    assert batch["public_ip"] is None
    assert batch["kms_key"] is None and batch["encrypted"] is True
    assert batch["network_tags"] == []
    assert batch["preemptible"] is True
    assert next(r for r in records if r.name == "batch-eu-2").tags == {}


def test_gce_lister_region_filter_and_global(gcp_target: Target, gce_http: Any) -> None:
    gce_http(_gce_pages())
    us = _run("gcp", "compute", gcp_target, "us-central1")
    assert [(r.name, r.region, r.attributes["zone"]) for r in us] == [
        ("legacy-us-1", "us-central1", "us-central1-a")
    ]
    assert us[0].attributes["created_at"] == "2023-06-30T21:05:12Z"

    gce_http(_gce_pages())
    everything = _run("gcp", "compute", gcp_target, "global")
    assert sorted(r.name for r in everything) == ["batch-eu-2", "legacy-us-1", "web-eu-1"]
    # Records round-trip through JSON unchanged (what the inventory store writes).
    for record in everything:
        assert ResourceRecord.from_dict(json.loads(record.to_json())) == record


def test_gce_partial_answer_raises(gcp_target: Target, gce_http: Any) -> None:
    page = _fixture("gce_instances_aggregated_list_page2.json")
    page["unreachables"] = ["zones/us-central1-f"]
    gce_http([(200, page)])
    with pytest.raises(RuntimeError, match="us-central1-f"):
        _run("gcp", "compute", gcp_target, "global")


def test_gce_permission_denied_is_access_denied(gcp_target: Target, gce_http: Any) -> None:
    message = f"Required 'compute.instances.list' permission for 'projects/{GCP_PROJECT}'"
    body = {
        "error": {
            "code": 403,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": "forbidden"}],
        }
    }
    gce_http([(403, body)])
    with pytest.raises(Exception) as caught:
        _run("gcp", "compute", gcp_target, "global")
    assert classify(caught.value) == "access_denied"


# ---- Azure virtual machines --------------------------------------------------------------------------


@pytest.fixture
def azure_target(monkeypatch: pytest.MonkeyPatch) -> Target:
    conn = {
        "conn_type": "azure_compute",
        "login": "00000000-aaaa-bbbb-cccc-000000000001",
        "password": "not-a-secret",
        "extra": {"tenantId": "00000000-aaaa-bbbb-cccc-000000000002", "subscriptionId": AZURE_SUBSCRIPTION},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_CONTRACT", json.dumps(conn))
    return Target.model_validate(
        {
            "name": "azure-contract",
            "cloud": "azure",
            "conn_id": "azure_contract",
            "subscription": AZURE_SUBSCRIPTION,
            "storage_account": "rbcontract",
            "regions": ["westeurope", "eastus"],
        }
    )


class _StaticToken:
    """Stands in for the service principal's token endpoint (the credential object itself is checked)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("contract-test-token", 4102444800)


@pytest.fixture
def arm_http(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[[Callable[[Any], tuple[int, dict[str, Any]]]], dict[str, Any]]:
    """Serve ARM answers from a handler through a requests adapter under the real azure-core pipeline."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.compute import ComputeManagementClient
    from requests.structures import CaseInsensitiveDict

    seen: dict[str, Any] = {"urls": [], "headers": [], "credential": None, "subscription_id": None}

    def install(handler: Callable[[Any], tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        class Adapter(requests.adapters.BaseAdapter):
            def send(self, request: Any, **kwargs: Any) -> requests.Response:
                seen["urls"].append(request.url)
                seen["headers"].append(dict(request.headers))
                status, body = handler(request)
                content = json.dumps(body).encode()
                response = requests.Response()
                response.status_code = status
                response.reason = "OK" if status == 200 else "Error"
                response._content = content
                response.raw = io.BytesIO(content)
                response.headers = CaseInsensitiveDict(
                    {"Content-Type": "application/json; charset=utf-8", "x-ms-request-id": "contract"}
                )
                response.url = request.url
                response.request = request
                response.encoding = "utf-8"
                return response

            def close(self) -> None:
                pass

        def client_factory(credential: Any, subscription_id: str, **kwargs: Any) -> Any:
            seen["credential"], seen["subscription_id"] = credential, subscription_id
            session = requests.Session()
            session.mount("https://", Adapter())
            return ComputeManagementClient(
                credential=_StaticToken(),
                subscription_id=subscription_id,
                transport=RequestsTransport(session=session, session_owner=False),
                retry_total=0,
            )

        monkeypatch.setattr(
            "airflow.providers.microsoft.azure.hooks.compute.ComputeManagementClient", client_factory
        )
        return seen

    return install


def _vm_pages(request: Any) -> tuple[int, dict[str, Any]]:
    query = parse_qs(urlparse(request.url).query)
    page = "azure_vms_list_all_page2.json" if "$skiptoken" in query else "azure_vms_list_all_page1.json"
    return 200, _fixture(page)


def test_azure_vm_lister_maps_list_all(azure_target: Target, arm_http: Any) -> None:
    from azure.identity import ClientSecretCredential

    seen = arm_http(_vm_pages)
    records = _run("azure", "compute", azure_target, "westeurope")

    # The hook built a service-principal credential from the connection; the SDK walked nextLink.
    assert isinstance(seen["credential"], ClientSecretCredential)
    assert seen["subscription_id"] == AZURE_SUBSCRIPTION
    assert len(seen["urls"]) == 2
    first = urlparse(seen["urls"][0])
    assert first.netloc == "management.azure.com"
    assert first.path == f"/subscriptions/{AZURE_SUBSCRIPTION}/providers/Microsoft.Compute/virtualMachines"
    assert parse_qs(first.query)["statusOnly"] == ["true"]
    assert seen["headers"][0]["Authorization"] == "Bearer contract-test-token"

    assert sorted(r.name for r in records) == ["vm-batch-02", "vm-web-01"]
    web = next(r for r in records if r.name == "vm-web-01")
    assert web.resource_type == "azure.compute.vm"
    assert web.service == "compute"
    assert web.cloud == "azure" and web.account == AZURE_SUBSCRIPTION
    assert web.region == "westeurope"
    assert web.resource_id == (
        f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01"
    )
    assert web.tags == {"owner": "web-team", "cost-center": "cc-3000", "data-classification": "internal"}
    a = web.attributes
    assert a["state"] == "running"
    assert a["provisioning_state"] == "Succeeded"
    assert a["vm_size"] == "Standard_D2s_v5"
    assert a["location"] == "westeurope"
    assert a["zone"] == "2"
    assert a["created_at"] == "2025-03-14T09:15:31Z"
    assert a["os_type"] == "Linux"
    assert a["resource_group"] == "rg-web-prod"
    assert a["vm_id"] == "0f4a8c2e-9b1d-4e3f-a6c7-1d2e3f4a5b6c"
    assert a["managed_disks"] is True
    assert a["encrypted"] is True
    assert a["kms_key"].endswith("/diskEncryptionSets/des-prod-cmk")
    assert a["encryption_at_host"] is True
    assert a["disk_encryption_ade"] is False
    assert a["data_disks"] == 1
    assert a["network_interfaces"] == [
        f"/subscriptions/{AZURE_SUBSCRIPTION}/resourceGroups/rg-web-prod/providers/Microsoft.Network/networkInterfaces/vm-web-01-nic"
    ]
    assert "public_ip" not in a  # lives on the NIC (Microsoft.Network): not known here

    batch = next(r for r in records if r.name == "vm-batch-02")
    assert batch.tags == {}
    assert batch.attributes["state"] == "deallocated"
    assert batch.attributes["zone"] is None
    assert batch.attributes["kms_key"] is None
    assert batch.attributes["encryption_at_host"] is False
    assert batch.attributes["os_type"] == "Windows"


def test_azure_vm_lister_other_region_and_unknown_state(azure_target: Target, arm_http: Any) -> None:
    arm_http(_vm_pages)
    (legacy,) = _run("azure", "compute", azure_target, "eastus")
    assert legacy.name == "vm-legacy-03"
    assert legacy.region == "eastus"
    assert legacy.attributes["resource_group"] == "RG-LEGACY"
    assert legacy.attributes["managed_disks"] is False
    assert legacy.attributes["disk_encryption_ade"] is True
    assert legacy.attributes["created_at"] == "2019-08-21T11:02:47Z"
    assert "state" not in legacy.attributes  # no instance view in the answer: unknown, not "stopped"

    arm_http(_vm_pages)
    everything = _run("azure", "compute", azure_target, "global")
    assert sorted(r.name for r in everything) == ["vm-batch-02", "vm-legacy-03", "vm-web-01"]
    for record in everything:
        assert ResourceRecord.from_dict(json.loads(record.to_json())) == record


def test_azure_vm_authorization_failed_is_access_denied(azure_target: Target, arm_http: Any) -> None:
    body = {
        "error": {
            "code": "AuthorizationFailed",
            "message": (
                "The client '00000000-aaaa-bbbb-cccc-000000000001' with object id "
                "'00000000-aaaa-bbbb-cccc-000000000003' does not have authorization to perform action "
                f"'Microsoft.Compute/virtualMachines/read' over scope '/subscriptions/{AZURE_SUBSCRIPTION}' "
                "or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        }
    }
    arm_http(lambda request: (403, body))
    with pytest.raises(Exception) as caught:
        _run("azure", "compute", azure_target, "westeurope")
    assert classify(caught.value) == "access_denied"


def test_compute_listers_are_registered_with_permissions() -> None:
    (gce,) = listers_for("gcp", ["compute"])
    (vm,) = listers_for("azure", ["compute"])
    assert gce.regional and vm.regional
    assert gce.resource_types == ("gcp.compute.instance",)
    assert vm.resource_types == ("azure.compute.vm",)
    assert gce.permissions == ("compute.instances.list",)
    assert vm.permissions == ("Microsoft.Compute/virtualMachines/read",)
