"""Google Cloud Storage and Azure Blob inventory against the emulators (gcp-storage-emulator, Azurite).

The estate is seeded from the ``gcp:`` and ``azure:`` sections of ``config/estate.yaml`` through the same
hooks production uses, then collected with :func:`include.inventory.collect.collect_target`; every seeded
bucket / container must come back with the attributes the estate description asked for.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from include.inventory.collect import TargetInventory, collect_target
from include.records import ResourceRecord
from include.targets import Target, load_targets
from localdev import emulators as emulators_mod
from localdev.seed import SEED_TAG, SeedReport, load_spec, seeded_objects

PREVENTION_DEFAULT = "inherited"


@pytest.fixture
def gcp_azure_estate(clean_clouds: emulators_mod.Emulators) -> SeedReport:
    """Emulators emptied, then only the gcp and azure sections of the estate seeded."""
    from localdev.seed import seed_estate

    return seed_estate(clouds=("gcp", "azure"))


def _by_name(inventory: TargetInventory) -> dict[str, ResourceRecord]:
    return {record.name: record for record in inventory.records}


def _target(data: dict[str, Any]) -> Target:
    return Target.model_validate(data)


# ---- completeness -------------------------------------------------------------------------------------


def test_every_seeded_bucket_is_inventoried(gcp_azure_estate: SeedReport) -> None:
    spec = load_spec()["gcp"]
    target = load_targets().get(spec["target"])
    inventory = collect_target(target)
    found = _by_name(inventory)
    assert sorted(found) == sorted(entry["name"] for entry in spec["buckets"])

    for entry in spec["buckets"]:
        record = found[entry["name"]]
        a = record.attributes
        location = entry.get("location", "US").upper()
        assert record.resource_type == "gcp.storage.bucket"
        assert record.service == "storage"
        assert record.cloud == "gcp" and record.account == target.account and record.target == target.name
        assert record.resource_id == f"//storage.googleapis.com/projects/_/buckets/{entry['name']}"
        assert record.region == location
        assert record.tags == {**entry.get("labels", {}), SEED_TAG: entry["seed_id"]}
        assert a["location"] == location
        assert a["storage_class"] == entry.get("storage_class", "STANDARD")
        assert a["uniform_access"] is entry.get("uniform_access", True)
        assert a["public_access_prevention"] == entry.get("public_access_prevention", PREVENTION_DEFAULT)
        assert a["versioning"] is entry.get("versioning", False)
        assert a["retention_days"] == entry.get("retention_days", 0)
        assert a["encrypted"] is True
        assert a["kms_key"] == entry.get("kms_key")
        assert a["logging"] is bool(entry.get("logging"))
        assert a["created_at"].endswith("Z") and len(a["created_at"]) == 20
        public = any(
            "allUsers" in b["members"] or "allAuthenticatedUsers" in b["members"]
            for b in entry.get("iam", [])
        )
        assert a["public"] is public, entry["name"]
        assert a["public_reasons"] == (["iam"] if public else [])
        assert a["public_members"] == (["allUsers"] if public else [])
        assert "location_type" in a

    # The deliberate imperfections the compliance rules are meant to find.
    pii = {r.name: r.region for r in inventory.records if r.tags.get("data-classification") == "pii"}
    allowed = set(target.residency.pii_allowed_regions)
    assert {name for name, region in pii.items() if region not in allowed} == {"rb-gcp-customer-pii-us"}
    assert {name for name, region in pii.items() if region in allowed} == {"rb-gcp-customer-pii-eu", "rb-gcp-backups"}
    assert [r.name for r in inventory.records if r.attributes["public"]] == ["rb-gcp-public-website"]
    assert found["rb-gcp-legacy-scratch"].attributes["uniform_access"] is False


def test_every_seeded_container_is_inventoried(gcp_azure_estate: SeedReport) -> None:
    spec = load_spec()["azure"]
    target = load_targets().get(spec["target"])
    inventory = collect_target(target)
    found = _by_name(inventory)
    assert sorted(found) == sorted(entry["name"] for entry in spec["containers"])

    for entry in spec["containers"]:
        record = found[entry["name"]]
        a = record.attributes
        access = entry.get("public_access", "private")
        assert record.resource_type == "azure.storage.container"
        assert record.service == "storage"
        assert record.cloud == "azure" and record.account == target.account
        # The public endpoint of the target's account, never the emulator URL.
        assert record.resource_id == f"https://{target.storage_account}.blob.core.windows.net/{entry['name']}"
        assert record.region == target.regions[0]
        # Metadata names carry `_`; tags read back with `-` like every other cloud.
        assert record.tags == {**entry.get("tags", {}), SEED_TAG: entry["seed_id"]}
        assert a["storage_account"] == target.storage_account
        assert a["public_access"] == (None if access == "private" else access)
        assert a["public"] is (access != "private")
        assert a["immutability_policy"] is False
        assert a["legal_hold"] is False
        assert a["lease_state"] == "available"
        assert a["last_modified"].endswith("Z")

    assert sorted(r.name for r in inventory.records if r.attributes["public"]) == [
        "public-assets",
        "public-downloads",
    ]
    assert [r.name for r in inventory.records if r.tags.get("data-classification") == "pii"] == [
        "customer-pii"
    ]


def test_collector_results_are_complete(gcp_azure_estate: SeedReport) -> None:
    targets = load_targets()
    spec = load_spec()
    for name, resource_type, count in (
        ("gcp-prod", "gcp.storage.bucket", len(spec["gcp"]["buckets"])),
        ("azure-prod", "azure.storage.container", len(spec["azure"]["containers"])),
    ):
        # No services passed: the target's own `services` ([storage]) keep the compute listers, which
        # no emulator serves, out of the local run.
        inventory = collect_target(targets.get(name))
        summary = inventory.summary()
        assert inventory.complete, summary["errors"]
        assert summary["by_type"] == {resource_type: count}
        assert inventory.calls == 1  # one non-regional lister
        assert len({r.key for r in inventory.records}) == count
        for record in inventory.records:
            assert ResourceRecord.from_dict(json.loads(record.to_json())) == record


def test_objects_to_back_up_are_seeded(gcp_azure_estate: SeedReport) -> None:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from localdev.seed import object_body

    spec = load_spec()
    gcs = GCSHook(gcp_conn_id=emulators_mod.GCP_CONN_ID)
    for entry in spec["gcp"]["buckets"]:
        wanted = len(seeded_objects(entry))  # count small objects + one of large_mib
        assert len(gcs.list(entry["name"])) == wanted, entry["name"]
    assert gcs.download("rb-gcp-app-data-eu", "app/object-000.txt") == object_body(
        "rb-gcp-app-data-eu", "app/object-000.txt", 2048
    )
    wasb = WasbHook(wasb_conn_id=emulators_mod.AZURE_CONN_ID)
    for entry in spec["azure"]["containers"]:
        wanted = entry.get("blobs", {}).get("count", 0)
        names = list(wasb.blob_service_client.get_container_client(entry["name"]).list_blob_names())
        assert len(names) == wanted, entry["name"]
    data = wasb.blob_service_client.get_blob_client(
        "customer-pii", "customers/object-001.txt"
    ).download_blob()
    assert data.readall() == object_body("customer-pii", "customers/object-001.txt", 1024)


# ---- unreachable / refused targets --------------------------------------------------------------------


def _azure_target(conn_id: str) -> Target:
    return _target(
        {
            "name": "azure-broken",
            "cloud": "azure",
            "conn_id": conn_id,
            "subscription": "00000000-0000-0000-0000-000000000000",
            "storage_account": emulators_mod.AZURITE_ACCOUNT,
            "regions": ["westeurope"],
            "services": ["storage"],
        }
    )


def _azure_conn(endpoint: str, key: str = emulators_mod.AZURITE_KEY) -> str:
    return json.dumps(
        {
            "conn_type": "wasb",
            "extra": {
                "connection_string": (
                    f"DefaultEndpointsProtocol=http;AccountName={emulators_mod.AZURITE_ACCOUNT};"
                    f"AccountKey={key};BlobEndpoint={endpoint};"
                ),
                "api_version": emulators_mod.AZURITE_API_VERSION,
            },
        }
    )


def test_unreachable_azure_target_is_reported_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = emulators_mod.free_port()  # nothing listens there
    monkeypatch.setenv(
        "AIRFLOW_CONN_AZURE_CLOSED", _azure_conn(f"http://127.0.0.1:{closed}/{emulators_mod.AZURITE_ACCOUNT}")
    )
    started = time.monotonic()
    inventory = collect_target(_azure_target("azure_closed"))
    elapsed = time.monotonic() - started
    assert not inventory.complete and inventory.records == []
    assert [(e.service, e.kind) for e in inventory.errors] == [("*", "unreachable")]
    assert elapsed < 10, f"took {elapsed:.1f}s"


def test_azure_wrong_key_is_access_denied(
    emulators: emulators_mod.Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong_key = emulators_mod.AZURITE_KEY[:-8] + "AAAAAAA="
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_WRONG_KEY", _azure_conn(emulators.azure_endpoint, key=wrong_key))
    started = time.monotonic()
    inventory = collect_target(_azure_target("azure_wrong_key"))
    assert [(e.service, e.kind) for e in inventory.errors] == [("*", "access_denied")]
    assert time.monotonic() - started < 10


def _gcp_target(conn_id: str) -> Target:
    return _target(
        {
            "name": "gcp-broken",
            "cloud": "gcp",
            "conn_id": conn_id,
            "project": "runbooks-broken",
            "regions": ["global"],
            "services": ["storage"],
        }
    )


def _gcp_conn() -> str:
    return json.dumps(
        {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": "runbooks-broken"}}
    )


def test_unreachable_gcs_endpoint_is_reported_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    # STORAGE_EMULATOR_HOST is process-wide: point it (for this test only) at a port nothing listens on,
    # the same situation as a Cloud Storage endpoint that cannot be reached.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{emulators_mod.free_port()}")
    monkeypatch.setenv("AIRFLOW_CONN_GCP_CLOSED", _gcp_conn())
    started = time.monotonic()
    inventory = collect_target(_gcp_target("gcp_closed"))
    elapsed = time.monotonic() - started
    assert not inventory.complete and inventory.records == []
    assert [(e.service, e.kind) for e in inventory.errors] == [("*", "unreachable")]
    assert elapsed < 15, f"took {elapsed:.1f}s"


@pytest.fixture
def gcs_refusing_endpoint() -> Iterator[str]:
    """An endpoint that answers every request as Cloud Storage answers a caller without permission."""

    class Handler(BaseHTTPRequestHandler):
        def _deny(self) -> None:
            message = (
                "anonymous caller does not have storage.buckets.list access to the Google Cloud project. "
                "Permission 'storage.buckets.list' denied on resource (or it may not exist)."
            )
            body = json.dumps(
                {
                    "error": {
                        "code": 403,
                        "message": message,
                        "errors": [{"message": message, "domain": "global", "reason": "forbidden"}],
                    }
                }
            ).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _deny

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_gcs_permission_denied_is_access_denied(
    gcs_refusing_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_refusing_endpoint)
    monkeypatch.setenv("AIRFLOW_CONN_GCP_DENIED", _gcp_conn())
    started = time.monotonic()
    inventory = collect_target(_gcp_target("gcp_denied"))
    assert [(e.service, e.kind) for e in inventory.errors] == [("*", "access_denied")]
    assert "storage.buckets.list" in inventory.errors[0].message
    assert time.monotonic() - started < 10
