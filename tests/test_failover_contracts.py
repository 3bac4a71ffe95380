"""Contract tests of the failover capabilities no emulator serves: Cloud SQL and Cloud DNS (through the Google
provider's ``CloudSQLHook`` / ``GoogleBaseHook`` and the discovery clients), Azure Database for PostgreSQL flexible
server and Azure DNS (ARM REST through the Azure provider's connection and azure-core's ARM pipeline).

The fixtures under ``tests/fixtures/contracts/`` replicate the documented response bodies (Cloud SQL Admin
v1beta4 ``instances.get`` / operations, Cloud Monitoring ``timeSeries.list``, Cloud DNS v1 ``managedZones.list``
/ ``resourceRecordSets.list`` / ``changes``, ARM ``flexibleServers`` 2024-08-01, Azure Monitor metrics
2023-10-01, ``dnsZones/A`` 2018-05-01). Only the HTTP transport is replaced (and, for Azure, the token the
credential would fetch): the hooks, the discovery documents and request building, azure-core's pipeline, our
capability code and the change-engine steps run for real. Every request is recorded and its method, path and
body asserted.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from include.capabilities.database_failover import DatabaseRef, FenceOptions, NotSupported, ReplicaOptions
from include.clouds.errors import classify

FIXTURES = Path(__file__).parent / "fixtures" / "contracts"
PROJECT = "rb-contract-project"
SUB = "11111111-2222-3333-4444-555555555555"
RG = f"/subscriptions/{SUB}/resourceGroups"
SERVER = f"{RG}/rg-orders/providers/Microsoft.DBforPostgreSQL/flexibleServers"


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- configuration: targets and a catalog with a GCP and an Azure service ---------------------------------
@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    targets = {"targets": [
        {"name": "gcp-contract", "cloud": "gcp", "conn_id": "gcp_contract", "project": PROJECT,
         "regions": ["us-central1", "europe-west1"]},
        {"name": "azure-contract", "cloud": "azure", "conn_id": "azure_contract", "subscription": SUB,
         "storage_account": "rbcontract", "regions": ["eastus", "northeurope"]},
    ]}

    def side(target: str, region: str, ident: str, ip: str, set_id: str | None, rg: str | None = None) -> dict[str, Any]:
        db: dict[str, Any] = {"target": target, "region": region, "identifier": ident}
        if rg:
            db["resource_group"] = rg
        dns: dict[str, Any] = {"values": [ip]}
        if set_id:
            dns["set_identifier"] = set_id
        return {"database": db, "probes": [{"url": "http://127.0.0.2:9/healthz"}], "dns": dns}

    fast = {"poll_interval_seconds": 0.01, "promote_timeout_seconds": 5, "dns_timeout_seconds": 5,
            "replica_timeout_seconds": 5}
    catalog = {"services": [
        {"name": "orders-gcp", "owner": "sre-team",
         "dns": {"target": "gcp-contract", "zone": "example-runbooks.com", "name": "orders.example-runbooks.com",
                 "routing": "weighted"},
         "primary": side("gcp-contract", "us-central1", "orders-db", "34.76.1.10", "orders-us"),
         "standby": side("gcp-contract", "europe-west1", "orders-db-replica-eu", "35.205.2.20", "orders-eu"),
         "replication": fast},
        {"name": "orders-azure", "owner": "sre-team",
         "dns": {"target": "azure-contract", "zone": "example-runbooks.com", "name": "orders.example-runbooks.com",
                 "routing": "simple", "resource_group": "rg-dns"},
         "primary": side("azure-contract", "eastus", "orders-db", "20.50.1.10", None, "rg-orders"),
         "standby": side("azure-contract", "northeurope", "orders-db-replica-ne", "40.113.2.20", None, "rg-orders"),
         "replication": fast},
    ]}
    (tmp_path / "targets.yaml").write_text(yaml.safe_dump(targets))
    (tmp_path / "services.yaml").write_text(yaml.safe_dump(catalog))
    monkeypatch.setenv("RUNBOOKS_TARGETS_FILE", str(tmp_path / "targets.yaml"))
    monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(tmp_path / "services.yaml"))
    monkeypatch.setenv("AIRFLOW_CONN_GCP_CONTRACT", json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": PROJECT}}))
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_CONTRACT", json.dumps(
        {"conn_type": "azure", "login": "00000000-aaaa-bbbb-cccc-000000000001", "password": "not-a-secret",
         "extra": {"tenantId": "00000000-aaaa-bbbb-cccc-000000000002", "subscriptionId": SUB}}))
    from include.targets import load_targets

    return {"targets": load_targets()}


# ---- Google: the discovery clients' HTTP replaced by a recording handler ---------------------------------------
class Google:
    """Cloud SQL, Cloud Monitoring and Cloud DNS answers with state (a promotion makes the replica a primary)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.promoted = self.fenced = False
        self.weights = {"34.76.1.10": 100.0, "35.205.2.20": 0.0}
        self.change_reads = 0
        self.forbidden = False

    def answer(self, method: str, uri: str, body: Any) -> tuple[int, dict[str, Any]]:
        path = urlparse(uri).path
        if self.forbidden:
            message = f"The client is not authorized to make this request (project {PROJECT})."
            return 403, {"error": {"code": 403, "message": message,
                                   "errors": [{"message": message, "domain": "global", "reason": "notAuthorized"}]}}
        if "/sql/v1beta4/" in path:
            return self._sql(method, path, body)
        if path.endswith("/timeSeries"):
            lag = fixture("monitoring_cloudsql_replica_lag.json")
            now = datetime.now(UTC)
            for n, point in enumerate(lag["timeSeries"][0]["points"]):  # recent points, newest first
                point["interval"]["startTime"] = point["interval"]["endTime"] = _iso(now - timedelta(minutes=n + 1))
            return 200, lag
        return self._dns(method, path, body)

    def _sql(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        operation = fixture("cloudsql_operation_pending.json")
        if method == "GET" and path.endswith("/instances/orders-db-replica-eu"):
            replica = fixture("cloudsql_instance_replica.json")
            if self.promoted:  # what instances.get shows once the promotion is done
                replica["instanceType"] = "CLOUD_SQL_INSTANCE"
                replica.pop("masterInstanceName")
                replica.pop("replicaConfiguration")
            return 200, replica
        if method == "GET" and path.endswith("/instances/orders-db"):
            primary = fixture("cloudsql_instance_primary.json")
            if self.fenced:
                primary["settings"]["activationPolicy"] = "NEVER"
                primary["state"] = "RUNNABLE"
            return 200, primary
        if method == "GET":
            message = "The Cloud SQL instance does not exist."
            return 404, {"error": {"code": 404, "message": message, "errors": [
                {"message": message, "domain": "global", "reason": "instanceDoesNotExist"}]}}
        if method == "POST" and path.endswith("/promoteReplica"):
            self.promoted = True
            return 200, operation
        if method == "POST" and path.endswith("/instances"):
            return 200, {**operation, "operationType": "CREATE_REPLICA", "targetId": body["name"]}
        if method == "PATCH":
            self.fenced = body == {"settings": {"activationPolicy": "NEVER"}}
            return 200, {**operation, "operationType": "UPDATE", "targetId": path.rsplit("/", 1)[-1]}
        raise AssertionError(f"unexpected Cloud SQL call {method} {path}")

    def _dns(self, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        if path.endswith("/managedZones"):
            return 200, fixture("clouddns_managed_zones.json")
        if path.endswith("/rrsets"):
            rrsets = fixture("clouddns_rrsets_wrr.json")
            for item in rrsets["rrsets"][0]["routingPolicy"]["wrr"]["items"]:
                item["weight"] = self.weights[item["rrdatas"][0]]
            return 200, rrsets
        if method == "POST" and path.endswith("/changes"):
            for item in body["additions"][0]["routingPolicy"]["wrr"]["items"]:
                self.weights[item["rrdatas"][0]] = item["weight"]
            return 200, {**fixture("clouddns_change_pending.json"), "additions": body["additions"],
                         "deletions": body["deletions"]}
        if method == "GET" and path.endswith("/changes/17"):
            self.change_reads += 1
            return 200, {**fixture("clouddns_change_pending.json"), "status": "pending" if self.change_reads < 2
                         else "done", "isServing": self.change_reads >= 2}
        raise AssertionError(f"unexpected Cloud DNS call {method} {path}")


@pytest.fixture
def google(config: Any, monkeypatch: pytest.MonkeyPatch) -> Google:
    import httplib2
    from googleapiclient.http import HttpMockSequence

    fake = Google()

    class Recording(HttpMockSequence):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__([])

        def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, *args: Any,
                    **kwargs: Any) -> Any:
            sent = json.loads(body) if body else None
            fake.calls.append((method, uri, sent))
            status, payload = fake.answer(method, uri, sent)
            return httplib2.Response({"status": str(status), "content-type": "application/json"}), \
                json.dumps(payload).encode()

    monkeypatch.setattr("airflow.providers.google.common.hooks.base_google.build_http", Recording)
    return fake


def _gcp_ref(ident: str, region: str) -> DatabaseRef:
    return DatabaseRef(target="gcp-contract", cloud="gcp", account=PROJECT, region=region, identifier=ident)


def test_cloud_sql_status_lag_and_not_found(google: Google, config: Any) -> None:
    from include.capabilities.database_failover import database_failover

    cap = database_failover(config["targets"].get("gcp-contract"))
    replica = cap.status(_gcp_ref("orders-db-replica-eu", "europe-west1"))
    assert replica.exists and replica.is_replica and replica.available and replica.state == "RUNNABLE"
    assert replica.source == "rb-contract-project:orders-db" and replica.endpoint == "10.20.0.5"
    assert replica.lag_seconds == 0.8  # the newest point, not the largest
    primary = cap.status(_gcp_ref("orders-db", "us-central1"))
    assert primary.exists and not primary.is_replica and primary.writable and primary.lag_seconds is None
    assert not cap.status(_gcp_ref("missing", "us-central1")).exists
    get, lag = google.calls[0], google.calls[1]
    assert get[0] == "GET" and urlparse(get[1]).path == \
        f"/sql/v1beta4/projects/{PROJECT}/instances/orders-db-replica-eu"
    query = parse_qs(urlparse(lag[1]).query)
    assert urlparse(lag[1]).path == f"/v3/projects/{PROJECT}/timeSeries"
    assert 'metric.type = "cloudsql.googleapis.com/database/replication/replica_lag"' in query["filter"][0]
    assert f'resource.labels.database_id = "{PROJECT}:orders-db-replica-eu"' in query["filter"][0]


def test_cloud_sql_promote_create_replica_fence_and_retire(google: Google, config: Any) -> None:
    from include.capabilities.database_failover import database_failover

    cap = database_failover(config["targets"].get("gcp-contract"))
    sent = cap.promote(_gcp_ref("orders-db-replica-eu", "europe-west1"))
    assert sent["operation"] == "3f9c2a1e-7b4d-4e8a-9c1f-000000000001"
    assert google.calls[-1][:2][0] == "POST" and urlparse(google.calls[-1][1]).path == \
        f"/sql/v1beta4/projects/{PROJECT}/instances/orders-db-replica-eu/promoteReplica"
    assert not cap.status(_gcp_ref("orders-db-replica-eu", "europe-west1")).is_replica
    created = cap.create_replica(_gcp_ref("orders-db", "us-central1"), _gcp_ref("orders-db-new", "europe-west1"),
                                 ReplicaOptions())
    method, uri, body = google.calls[-1]
    assert method == "POST" and urlparse(uri).path == f"/sql/v1beta4/projects/{PROJECT}/instances"
    assert body == {"name": "orders-db-new", "region": "europe-west1", "masterInstanceName": "orders-db",
                    "databaseVersion": "POSTGRES_16", "settings": {"tier": "db-custom-2-7680"}} == created["body"]
    cap.fence(_gcp_ref("orders-db", "us-central1"), FenceOptions())
    assert google.calls[-1][0] == "PATCH" and google.calls[-1][2] == {"settings": {"activationPolicy": "NEVER"}}
    fenced = cap.status(_gcp_ref("orders-db", "us-central1"))
    assert fenced.fenced and not fenced.writable
    with pytest.raises(NotSupported, match="cannot rename"):
        cap.retire(_gcp_ref("orders-db", "us-central1"), "orders-db-old")


def test_cloud_dns_weighted_switch_waits_until_done(google: Google, config: Any) -> None:
    from include.capabilities.dns import dns
    from include.failover.catalog import load_catalog, record_set_ref

    rs = record_set_ref(load_catalog().get("orders-gcp"))
    cap = dns(config["targets"].get("gcp-contract"))
    before = cap.read(rs)
    assert before.active == "primary" and before.answer == ("34.76.1.10",)
    change = cap.switch(rs, "standby")
    method, uri, body = google.calls[-1]
    assert method == "POST" and urlparse(uri).path == f"/dns/v1/projects/{PROJECT}/managedZones/example-runbooks/changes"
    assert body["deletions"][0]["routingPolicy"]["wrr"]["items"][0] == {"weight": 100, "rrdatas": ["34.76.1.10"]}
    assert body["additions"] == [{"name": "orders.example-runbooks.com.", "type": "A", "ttl": 60, "routingPolicy": {
        "wrr": {"items": [{"weight": 100.0, "rrdatas": ["35.205.2.20"]}, {"weight": 0.0, "rrdatas": ["34.76.1.10"]}]}}}]
    assert change.change_id == "17" and change.status == "pending"
    assert cap.in_sync(rs, change) is False and cap.in_sync(rs, change) is True
    assert cap.read(rs).active == "standby"


def test_failover_steps_run_on_gcp_through_the_engine(google: Google, config: Any) -> None:
    """The same change-engine steps the RDS runbook uses, on Cloud SQL and Cloud DNS: plan, apply, idempotence."""
    from include.changes import engine
    from include.failover.catalog import database_ref, load_catalog, record_set_ref
    from include.failover.core import step_options
    from include.failover.steps import PromoteReplica, SwitchDns, db_record, dns_record, resolver, step_class

    service = load_catalog().get("orders-gcp")
    items = [engine.Item(step=PromoteReplica.id, record=db_record(database_ref(service.standby.database))),
             engine.Item(step=SwitchDns.id, record=dns_record(record_set_ref(service)))]
    resolve = resolver(step_options(service, "contract:orders-gcp:INC-1", "standby"))
    planned = engine.plan_items(items, resolve)
    assert [i.change is not None for i in planned] == [True, True]
    assert not [c for c in google.calls if c[0] != "GET"], "planning only reads"
    done = engine.apply_items(planned, resolve)
    assert [i.outcome for i in done] == ["changed", "changed"]
    assert [i.outcome for i in engine.apply_items(planned, resolve)] == ["unchanged", "unchanged"]
    assert engine.plan_items(items, resolve)[0].change is None
    assert step_class(PromoteReplica.id, "gcp").permissions == (
        "cloudsql.instances.get", "cloudsql.instances.promoteReplica", "monitoring.timeSeries.list")


def test_google_permission_denied_is_access_denied(google: Google, config: Any) -> None:
    from include.capabilities.database_failover import database_failover

    google.forbidden = True
    with pytest.raises(Exception) as caught:
        database_failover(config["targets"].get("gcp-contract")).status(_gcp_ref("orders-db", "us-central1"))
    assert classify(caught.value) == "access_denied"


# ---- Azure: azure-core's ARM pipeline with its transport replaced -----------------------------------------------
class Arm:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []
        self.promoted = self.fenced = False
        self.a_record = "20.50.1.10"
        self.async_reads = 0

    def answer(self, method: str, url: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        parsed = urlparse(url)
        path = parsed.path
        if path.endswith("/providers/Microsoft.Insights/metrics"):
            metrics = fixture("azure_monitor_replication_delay.json")
            now = datetime.now(UTC)
            data = metrics["value"][0]["timeseries"][0]["data"]
            for n, point in enumerate(data):
                point["timeStamp"] = _iso(now - timedelta(minutes=len(data) - n))
            return 200, metrics, {}
        if path.startswith("/operations/"):
            self.async_reads += 1
            return 200, {"name": "op", "status": "InProgress" if self.async_reads < 2 else "Succeeded"}, {}
        if "/flexibleServers/" in path:
            return self._server(method, path, body)
        if path.endswith("/dnsZones/example-runbooks.com/A/orders"):
            record = fixture("azure_dns_a_recordset.json")
            if method == "PUT":
                self.a_record = body["properties"]["ARecords"][0]["ipv4Address"]
            record["properties"]["ARecords"] = [{"ipv4Address": self.a_record}]
            return 200, record, {"ETag": record["etag"]}
        raise AssertionError(f"unexpected ARM call {method} {path}")

    def _server(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        name = path.rsplit("/", 1)[-1]
        accepted = {"Azure-AsyncOperation": "https://management.azure.com/operations/op-1?api-version=2024-08-01",
                    "Location": "https://management.azure.com/operationResults/op-1?api-version=2024-08-01"}
        if method == "GET" and name in ("orders-db-replica-ne", "orders-db"):
            server = fixture("azure_pg_flexible_replica.json")
            if name == "orders-db" or self.promoted:
                server["properties"]["replica"] = {"role": "Primary", "capacity": 5}
                server["properties"]["replicationRole"] = "Primary"
                server["properties"].pop("sourceServerResourceId")
                server["name"], server["id"] = name, f"{SERVER}/{name}"
            if name == "orders-db" and self.fenced:
                server["properties"]["network"]["publicNetworkAccess"] = "Disabled"
                server["tags"]["runbooks-fence"] = "publicNetworkAccess"
            return 200, server, {}
        if method == "GET":
            return 404, {"error": {"code": "ResourceNotFound", "message": f"The Resource '{path}' was not found."}}, {}
        if method == "PATCH" and "replica" in (body.get("properties") or {}):
            self.promoted = True
            return 202, None, accepted
        if method == "PATCH":
            self.fenced = True
            return 202, None, accepted
        if method == "PUT":
            return 201, {"name": name, "properties": {"state": "Provisioning"}}, accepted
        raise AssertionError(f"unexpected flexible server call {method} {path}")


class _StaticToken:
    """Stands in for the token the service principal's credential would fetch from Entra ID."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        assert scopes == ("https://management.azure.com/.default",)
        return AccessToken("contract-test-token", 4102444800)


@pytest.fixture
def arm(config: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Arm]:
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from requests.structures import CaseInsensitiveDict

    fake = Arm()

    class Adapter(requests.adapters.BaseAdapter):
        def send(self, request: Any, **kwargs: Any) -> requests.Response:
            body = json.loads(request.body) if request.body else None
            fake.calls.append((request.method, request.url, body, dict(request.headers)))
            status, payload, headers = fake.answer(request.method, request.url, body)
            content = json.dumps(payload).encode() if payload is not None else b""
            response = requests.Response()
            response.status_code = status
            response.reason = "OK" if status < 400 else "Error"
            response._content = content
            response.raw = io.BytesIO(content)
            response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8",
                                                    "x-ms-request-id": "contract", **headers})
            response.url = request.url
            response.request = request
            response.encoding = "utf-8"
            return response

        def close(self) -> None:
            pass

    def transport() -> Any:
        session = requests.Session()
        session.mount("https://", Adapter())
        return RequestsTransport(session=session, session_owner=False)

    monkeypatch.setattr("include.clouds.azure.arm.transport_factory", transport)
    monkeypatch.setattr("include.clouds.azure.arm.credential_for", lambda conn_id: _StaticToken())
    yield fake


def _az_ref(ident: str, region: str) -> DatabaseRef:
    return DatabaseRef(target="azure-contract", cloud="azure", account=SUB, region=region, identifier=ident,
                       resource_group="rg-orders")


def test_azure_credential_is_the_service_principal_of_the_connection(config: Any) -> None:
    from azure.identity import ClientSecretCredential

    from include.clouds.azure.arm import credential_for

    assert isinstance(credential_for("azure_contract"), ClientSecretCredential)


def test_azure_flexible_server_status_promote_create_fence(arm: Arm, config: Any) -> None:
    from include.capabilities.database_failover import database_failover

    cap = database_failover(config["targets"].get("azure-contract"))
    replica = cap.status(_az_ref("orders-db-replica-ne", "northeurope"))
    assert replica.is_replica and replica.available and replica.replication_state == "Active"
    assert replica.source == f"{SERVER}/orders-db" and replica.lag_seconds == 1.0  # the newest point with a value
    method, url, _, headers = arm.calls[0]
    assert method == "GET" and urlparse(url).path == f"{SERVER}/orders-db-replica-ne"
    assert parse_qs(urlparse(url).query)["api-version"] == ["2024-08-01"]
    assert headers["Authorization"] == "Bearer contract-test-token"
    metrics = parse_qs(urlparse(arm.calls[1][1]).query)
    assert metrics["metricnames"] == ["physical_replication_delay_in_seconds"] and metrics["api-version"] == ["2023-10-01"]

    cap.promote(_az_ref("orders-db-replica-ne", "northeurope"))
    assert arm.calls[-1][0] == "PATCH" and arm.calls[-1][2] == {
        "properties": {"replica": {"promoteMode": "standalone", "promoteOption": "forced"}}}
    promoted = cap.status(_az_ref("orders-db-replica-ne", "northeurope"))
    assert not promoted.is_replica and promoted.writable

    cap.create_replica(_az_ref("orders-db-replica-ne", "northeurope"), _az_ref("orders-db-2", "eastus"),
                       ReplicaOptions(instance_class="Standard_D2ds_v5"))
    method, url, body, _ = arm.calls[-1]
    assert method == "PUT" and urlparse(url).path == f"{SERVER}/orders-db-2"
    assert body == {"location": "eastus", "sku": {"name": "Standard_D2ds_v5"},
                    "properties": {"createMode": "Replica", "sourceServerResourceId": f"{SERVER}/orders-db-replica-ne"}}

    cap.fence(_az_ref("orders-db", "eastus"), FenceOptions())
    assert arm.calls[-1][2]["properties"] == {"network": {"publicNetworkAccess": "Disabled"}}
    assert arm.calls[-1][2]["tags"] == {"owner": "data-team", "runbooks-fence": "publicNetworkAccess"}
    assert cap.status(_az_ref("orders-db", "eastus")).fenced
    assert not cap.status(_az_ref("gone", "eastus")).exists
    with pytest.raises(NotSupported, match="cannot be renamed"):
        cap.retire(_az_ref("orders-db", "eastus"), "orders-db-old")


def test_azure_dns_switch_is_one_put_guarded_by_the_etag(arm: Arm, config: Any) -> None:
    from include.capabilities.dns import dns
    from include.failover.catalog import load_catalog, record_set_ref

    rs = record_set_ref(load_catalog().get("orders-azure"))
    cap = dns(config["targets"].get("azure-contract"))
    assert cap.read(rs).active == "primary"
    change = cap.switch(rs, "standby")
    method, url, body, headers = arm.calls[-1]
    assert method == "PUT" and urlparse(url).path == \
        f"{RG}/rg-dns/providers/Microsoft.Network/dnsZones/example-runbooks.com/A/orders"
    assert parse_qs(urlparse(url).query)["api-version"] == ["2018-05-01"]
    assert body == {"properties": {"TTL": 60, "ARecords": [{"ipv4Address": "40.113.2.20"}]}}
    assert headers["If-Match"] == "a1b2c3d4-0000-4000-8000-00000000a001"
    assert change.change_id is None and cap.in_sync(rs, change)
    assert cap.read(rs).active == "standby"


def test_failover_steps_run_on_azure_through_the_engine(arm: Arm, config: Any) -> None:
    from include.changes import engine
    from include.failover.catalog import database_ref, load_catalog, record_set_ref
    from include.failover.core import step_options
    from include.failover.steps import FenceDatabase, PromoteReplica, SwitchDns, db_record, dns_record, resolver

    service = load_catalog().get("orders-azure")
    items = [engine.Item(step=FenceDatabase.id, record=db_record(database_ref(service.primary.database))),
             engine.Item(step=PromoteReplica.id, record=db_record(database_ref(service.standby.database))),
             engine.Item(step=SwitchDns.id, record=dns_record(record_set_ref(service)))]
    resolve = resolver(step_options(service, "contract:orders-azure:INC-1", "standby"))
    planned = engine.plan_items(items, resolve)
    assert all(i.change is not None for i in planned), [i.plan_error for i in planned]
    assert [i.outcome for i in engine.apply_items(planned, resolve)] == ["changed", "changed", "changed"]
    assert arm.fenced and arm.promoted and arm.a_record == "40.113.2.20"
    assert all(v for v in [i.verified for i in engine.verify_items(planned, resolve)])


def test_catalog_refuses_routings_a_cloud_cannot_switch(config: Any) -> None:
    from include.failover.catalog import CatalogError, parse_catalog

    text = Path(os.environ["RUNBOOKS_SERVICES_FILE"]).read_text()
    broken = yaml.safe_load(text)
    broken["services"][1]["dns"]["routing"] = "weighted"
    broken["services"][1]["primary"]["dns"]["set_identifier"] = "a"
    broken["services"][1]["standby"]["dns"]["set_identifier"] = "b"
    with pytest.raises(CatalogError, match="service 'orders-azure': dns.routing: weighted records cannot be switched on "
                                           "azure"):
        parse_catalog(yaml.safe_dump(broken))
    broken = copy.deepcopy(yaml.safe_load(text))
    broken["services"][0]["standby"]["database"].update(target="azure-contract", resource_group="rg-orders")
    with pytest.raises(CatalogError, match=r"service 'orders-gcp': standby.database.target: the standby's database \(azure\) "
                                           r"cannot be a managed read replica of the primary's \(gcp\)"):
        parse_catalog(yaml.safe_dump(broken))
    broken = copy.deepcopy(yaml.safe_load(text))
    broken["services"][0]["dns"] = {**yaml.safe_load(text)["services"][1]["dns"], "name": "orders.example-runbooks.com"}
    for side in ("primary", "standby"):
        broken["services"][0][side]["dns"].pop("set_identifier")
    parse_catalog(yaml.safe_dump(broken))  # GCP databases behind an Azure DNS zone: allowed
    broken = copy.deepcopy(yaml.safe_load(text))
    del broken["services"][0]["standby"]["database"]["identifier"]
    with pytest.raises(CatalogError, match="service 'orders-gcp': standby.database.identifier: Field required"):
        parse_catalog(yaml.safe_dump(broken))

