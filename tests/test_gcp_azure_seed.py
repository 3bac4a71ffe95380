"""Seeding the Google Cloud and Azure estate is idempotent: a second run creates nothing, changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from include.inventory.collect import collect_target
from include.targets import load_targets
from localdev import emulators as emulators_mod
from localdev.seed import SeedError, SeedReport, load_spec, seed_estate, seeded_objects


def _inventory() -> list[dict[str, Any]]:
    targets = load_targets()
    records = []
    for name in ("gcp-prod", "azure-prod"):
        inventory = collect_target(targets.get(name))
        assert inventory.complete, inventory.summary()["errors"]
        records.extend(record.to_dict() for record in inventory.records)
    return records


def test_second_seed_creates_nothing_and_changes_nothing(clean_clouds: emulators_mod.Emulators) -> None:
    first = seed_estate(clouds=("gcp", "azure"))
    spec = load_spec()
    buckets = [entry["name"] for entry in spec["gcp"]["buckets"]]
    containers = [entry["name"] for entry in spec["azure"]["containers"]]
    assert first.existing == []
    assert [c for c in first.created if c.startswith("gcp.storage.bucket:")] == [
        f"gcp.storage.bucket:{b}" for b in buckets
    ]
    assert [c for c in first.created if c.startswith("azure.storage.container:")] == [
        f"azure.storage.container:{c}" for c in containers
    ]
    objects = sum(len(seeded_objects(entry)) for entry in spec["gcp"]["buckets"])  # count + large_mib
    blobs = sum(entry.get("blobs", {}).get("count", 0) for entry in spec["azure"]["containers"])
    assert len([c for c in first.created if c.startswith("gcp.storage.object:")]) == objects
    assert len([c for c in first.created if c.startswith("azure.storage.blob:")]) == blobs
    before = _inventory()

    second = seed_estate(clouds=("gcp", "azure"))
    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    assert _inventory() == before


def test_seed_keeps_existing_resources_as_they_are(clean_clouds: emulators_mod.Emulators) -> None:
    """A remediated bucket / container stays remediated when the estate is seeded again."""
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    seed_estate(clouds=("gcp", "azure"))
    bucket = GCSHook(gcp_conn_id=emulators_mod.GCP_CONN_ID).get_conn().get_bucket("rb-gcp-public-website")
    policy = bucket.get_iam_policy(requested_policy_version=3)
    policy.bindings = [b for b in policy.bindings if "allUsers" not in b.get("members", ())]
    bucket.set_iam_policy(policy)
    container = WasbHook(wasb_conn_id=emulators_mod.AZURE_CONN_ID).blob_service_client.get_container_client(
        "public-downloads"
    )
    container.set_container_access_policy(signed_identifiers={}, public_access=None)

    report = seed_estate(clouds=("gcp", "azure"))
    assert report.created == []
    records = {r["name"]: r for r in _inventory()}
    assert records["rb-gcp-public-website"]["attributes"]["public"] is False
    assert records["public-downloads"]["attributes"]["public"] is False


def test_seed_refuses_to_adopt_foreign_resources(clean_clouds: emulators_mod.Emulators) -> None:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    from localdev.seed import azure as seed_azure
    from localdev.seed import gcp as seed_gcp

    targets = load_targets()
    spec = load_spec()
    GCSHook(gcp_conn_id=emulators_mod.GCP_CONN_ID).get_conn().create_bucket("rb-gcp-access-logs")
    with pytest.raises(SeedError, match="rb-gcp-access-logs exists without label seed-id"):
        seed_gcp.seed(targets.get("gcp-prod"), spec["gcp"], SeedReport())

    WasbHook(wasb_conn_id=emulators_mod.AZURE_CONN_ID).blob_service_client.create_container("app-data")
    with pytest.raises(SeedError, match="app-data exists without metadata seed_id"):
        seed_azure.seed(targets.get("azure-prod"), spec["azure"], SeedReport())


@pytest.mark.parametrize(
    ("cloud", "entry", "message"),
    [
        ("gcp", {"name": "b", "seed_id": "x", "colour": "red"}, "unknown keys"),
        ("gcp", {"name": "b"}, "needs name and seed_id"),
        ("gcp", {"name": "b", "seed_id": "x", "public_access_prevention": "on"}, "public_access_prevention"),
        ("gcp", {"name": "b", "seed_id": "x", "versioning": True, "retention_days": 7}, "cannot be combined"),
        ("azure", {"name": "c", "seed_id": "x", "public_access": "anonymous"}, "public_access must be"),
        ("azure", {"name": "c", "seed_id": "x", "metadata": {}}, "unknown keys"),
    ],
)
def test_malformed_entries_are_refused_before_any_call(
    cloud: str, entry: dict[str, Any], message: str
) -> None:
    from localdev.seed import azure as seed_azure
    from localdev.seed import gcp as seed_gcp

    validate = seed_gcp._validate if cloud == "gcp" else seed_azure._validate
    with pytest.raises(SeedError, match=message):
        validate(entry)


def test_tag_names_round_trip_through_azure_metadata() -> None:
    from include.clouds.azure.inventory.storage import metadata_to_tags
    from localdev.seed.azure import container_metadata

    metadata = container_metadata(
        {"seed_id": "blob-x", "tags": {"cost-center": "cc-1", "data-classification": "pii"}}
    )
    assert metadata == {"cost_center": "cc-1", "data_classification": "pii", "seed_id": "blob-x"}
    assert all(key.isidentifier() for key in metadata)
    assert metadata_to_tags(metadata) == {
        "cost-center": "cc-1",
        "data-classification": "pii",
        "seed-id": "blob-x",
    }
