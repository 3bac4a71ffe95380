"""great-expectations validation of inventory facts: real emulator records pass, broken ones fail by name.

Resources are created through the provider hooks production uses (S3Hook, GCSHook, WasbHook), collected
by the real listers (``collect_target``) and validated with the suites in ``config/expectations/``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.compliance.validation import (
    DEFAULT_SUITES_DIR,
    SuiteError,
    ValidationSummary,
    load_suites,
    validate_inventory,
)
from include.inventory.collect import collect_target
from include.records import ResourceRecord
from include.targets import load_targets
from localdev import emulators as emulators_mod

S3_BUCKET = "val-facts-bucket"
GCS_BUCKET = "val-facts-gcs"
CONTAINER = "val-facts-container"


def create_resources() -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.google.cloud.hooks.gcs import GCSHook
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    s3 = S3Hook(aws_conn_id=emulators_mod.AWS_CONN_ID)
    s3.create_bucket(bucket_name=S3_BUCKET, region_name="us-east-1")
    client = s3.get_conn()
    client.put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(
        Bucket=S3_BUCKET,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    )
    client.put_bucket_tagging(Bucket=S3_BUCKET, Tagging={"TagSet": [{"Key": "owner", "Value": "platform-team"}]})
    GCSHook(gcp_conn_id=emulators_mod.GCP_CONN_ID).create_bucket(
        bucket_name=GCS_BUCKET, location="EU", project_id=emulators_mod.GCP_LOCAL_PROJECT, labels={"owner": "data"}
    )
    WasbHook(wasb_conn_id=emulators_mod.AZURE_CONN_ID).create_container(CONTAINER)


def collect(services: dict[str, list[str]] | None = None) -> list[ResourceRecord]:
    records: list[ResourceRecord] = []
    for target in load_targets().targets:
        wanted = (services or {}).get(target.cloud)
        inventory = collect_target(target, max_workers=4, services=wanted)
        assert inventory.complete, [e.to_dict() for e in inventory.errors]
        records.extend(inventory.records)
    return records


@pytest.fixture(scope="module")
def hook_records(emulators: emulators_mod.Emulators) -> list[ResourceRecord]:
    """A couple of buckets / containers per cloud, collected by the storage listers."""
    emulators.reset()
    create_resources()
    records = collect({"aws": ["s3"], "gcp": ["storage"], "azure": ["storage"]})
    types = {r.resource_type for r in records}
    assert {"aws.s3.bucket", "gcp.storage.bucket", "azure.storage.container"} <= types, types
    return records


@pytest.fixture(scope="module")
def hook_summary(hook_records: list[ResourceRecord], tmp_path_factory: pytest.TempPathFactory) -> ValidationSummary:
    return validate_inventory(hook_records, out_dir=tmp_path_factory.mktemp("validation"))


def by_type(records: list[ResourceRecord], resource_type: str) -> list[ResourceRecord]:
    return [r for r in records if r.resource_type == resource_type]


def with_attributes(record: ResourceRecord, **changes: Any) -> ResourceRecord:
    attributes = {**record.attributes, **changes}
    for key in [k for k, v in changes.items() if v is _DROP]:
        attributes.pop(key)
    return dataclasses.replace(record, attributes=attributes)


_DROP = object()


# ---- real records pass ------------------------------------------------------------------------------
def test_emulator_records_pass(hook_summary: ValidationSummary, hook_records: list[ResourceRecord]) -> None:
    assert hook_summary.success, hook_summary.failed_labels()
    ran = {s.suite: s for s in hook_summary.suites if not s.skipped}
    assert set(ran) == {"inventory_records", "aws_s3_bucket", "gcp_storage_bucket", "azure_storage_container"}
    assert ran["inventory_records"].rows == len(hook_records)
    assert ran["aws_s3_bucket"].rows == len(by_type(hook_records, "aws.s3.bucket"))
    assert all(s.evaluated > 0 and s.unsuccessful == 0 for s in ran.values())
    assert hook_summary.records == len(hook_records)


def test_data_docs_and_summary_file(hook_summary: ValidationSummary) -> None:
    assert hook_summary.renderer == "gx-data-docs", hook_summary.docs_error
    index = Path(hook_summary.html_path or "")
    assert index.name == "index.html" and index.is_file()
    page = next(s for s in hook_summary.suites if s.suite == "aws_s3_bucket").docs_page
    assert page and Path(page).is_file()
    rendered = Path(page).read_text()  # GX renders expectations as prose: "values must never be null"
    assert "aws_s3_bucket" in rendered and "encrypted" in rendered and "never be null" in rendered
    saved = json.loads(Path(hook_summary.results_path or "").read_text())
    assert ValidationSummary.from_dict(saved) == hook_summary
    assert saved["statistics"]["unsuccessful_expectations"] == 0


# ---- broken facts fail, naming the expectation -------------------------------------------------------
def test_corrupted_records_fail_with_the_expectation_named(hook_records: list[ResourceRecord], tmp_path: Path) -> None:
    records = list(hook_records)
    s3 = next(i for i, r in enumerate(records) if r.resource_type == "aws.s3.bucket")
    gcs = next(i for i, r in enumerate(records) if r.resource_type == "gcp.storage.bucket")
    blob = next(i for i, r in enumerate(records) if r.resource_type == "azure.storage.container")
    records[s3] = with_attributes(records[s3], encrypted="yes")  # a string where a boolean belongs
    records[gcs] = with_attributes(records[gcs], public_access_prevention=_DROP)  # a missing fact
    records[blob] = with_attributes(records[blob], public_access="everyone")  # a value outside the set
    duplicate = hook_records[s3]
    records.append(duplicate)  # the same resource twice
    untyped = dataclasses.replace(hook_records[blob], resource_id=hook_records[blob].resource_id + "-untyped")
    object.__setattr__(untyped, "tags", {"owner": 5})  # bypass the record's str() normalisation
    records.append(untyped)

    summary = validate_inventory(records, out_dir=tmp_path, data_docs=False)
    assert not summary.success
    failed = {f.label: f for f in summary.failures}
    expected = {
        "aws_s3_bucket: expect_column_values_to_be_of_type(encrypted)": (records[s3].resource_id, "yes"),
        "gcp_storage_bucket: expect_column_values_to_not_be_null(public_access_prevention)": (records[gcs].resource_id, None),
        "azure_storage_container: expect_column_values_to_be_in_set(public_access)": (records[blob].resource_id, "everyone"),
        "inventory_records: expect_column_values_to_be_unique(resource_id)": (duplicate.resource_id, duplicate.resource_id),
        "inventory_records: expect_column_values_to_match_regex(tags)": (untyped.resource_id, json.dumps({"owner": 5})),
    }
    assert set(expected) <= set(failed), sorted(failed)
    for label, (resource_id, value) in expected.items():
        assert {"resource_id": resource_id, "value": value} in failed[label].examples, (label, failed[label].examples)
    assert len(summary.failures) == len(expected), sorted(failed)  # nothing else broke
    page = Path(summary.html_path or "").read_text()  # own rendering when Data Docs are off
    assert summary.renderer == "runbooks-html" and "expect_column_values_to_be_of_type" in page


def test_a_fact_no_record_has_fails_not_null(hook_records: list[ResourceRecord]) -> None:
    records = [
        with_attributes(r, versioning=_DROP) if r.resource_type == "aws.s3.bucket" else r for r in hook_records
    ]
    summary = validate_inventory(records, data_docs=False)
    labels = summary.failed_labels()
    assert labels == ["aws_s3_bucket: expect_column_values_to_not_be_null(versioning)"], labels
    failure = summary.failures[0]
    assert failure.unexpected_count == failure.element_count == len(by_type(records, "aws.s3.bucket"))


# ---- suites are data, checked when loaded ------------------------------------------------------------
def test_every_suite_file_loads() -> None:
    suites = load_suites(DEFAULT_SUITES_DIR)
    names = {s.name for s in suites}
    assert {"inventory_records", "aws_s3_bucket", "gcp_storage_bucket", "azure_storage_container"} <= names
    assert all(s.path.stem == s.name for s in suites)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not readable JSON"),
        (json.dumps({"name": "x", "meta": {"applies_to": {"resource_types": ["*"]}}, "expectations": []}), "non-empty"),
        (json.dumps({"name": "x", "expectations": [{"type": "expect_column_values_to_not_be_null",
                                                   "kwargs": {"column": "cloud"}}]}), "applies_to"),
        (json.dumps({"name": "x", "meta": {"applies_to": {"resource_types": ["*"]}},
                     "expectations": [{"type": "expect_column_to_be_magic", "kwargs": {"column": "cloud"}}]}), "x.json"),
        (json.dumps({"name": "x", "meta": {"applies_to": {"resource_types": ["*"]}},
                     "expectations": [{"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "cloud"}}]}),
         "x.json"),
    ],
)
def test_broken_suite_files_are_errors(tmp_path: Path, hook_records: list[ResourceRecord], content: str, message: str) -> None:
    (tmp_path / "x.json").write_text(content)
    with pytest.raises(SuiteError, match=message):
        validate_inventory(hook_records[:3], suites_dir=tmp_path, data_docs=False)


# ---- the whole seeded estate and a 10,000-record estate ----------------------------------------------
@pytest.fixture(scope="module")
def seeded_records(emulators: emulators_mod.Emulators) -> Iterator[list[ResourceRecord]]:
    from localdev.seed import seed_estate

    emulators.reset()
    seed_estate()
    yield collect()
    emulators.reset()


@pytest.mark.slow
def test_seeded_estate_passes_every_suite(seeded_records: list[ResourceRecord], tmp_path: Path) -> None:
    started = time.monotonic()
    summary = validate_inventory(seeded_records, out_dir=tmp_path)
    print(f"\nGX validation of {len(seeded_records)} seeded records: {time.monotonic() - started:.2f} s")
    assert summary.success, [(f.label, f.examples[:2]) for f in summary.failures]
    types = {r.resource_type for r in seeded_records}
    for suite in load_suites():
        ran = next(s for s in summary.suites if s.suite == suite.name)
        assert ran.skipped == (not ("*" in suite.resource_types or types & set(suite.resource_types))), suite.name


@pytest.mark.slow
@pytest.mark.parametrize("size", [50, 10_000])
def test_validation_of_small_and_large_inventories(hook_records: list[ResourceRecord], tmp_path: Path, size: int) -> None:
    """The suites pass on a clean inventory of any size (their cost is measured by bench, not asserted here)."""
    records = [
        dataclasses.replace(r, resource_id=f"{r.resource_id}-{i}" if r.cloud != "aws" else f"{r.resource_id}{i}")
        for i, r in ((i, hook_records[i % len(hook_records)]) for i in range(size))
    ]
    summary = validate_inventory(records, out_dir=tmp_path)
    assert summary.success, summary.failed_labels()
