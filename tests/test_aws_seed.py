"""The AWS estate seed is idempotent: a second run creates nothing and leaves the inventory unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from include.inventory.collect import collect_target
from include.records import ResourceRecord
from include.targets import load_targets
from localdev import emulators as emulators_mod
from localdev.seed import SeedError, SeedReport, load_spec, object_body, seed_estate, seeded_objects


def _comparable(records: list[ResourceRecord], volatile_buckets: set[str]) -> dict[str, dict[str, Any]]:
    """Records by key; buckets that receive access logs lose their object counts (moto writes real logs)."""
    out = {}
    for record in records:
        data = record.to_dict()
        if record.resource_type == "aws.s3.bucket" and record.name in volatile_buckets:
            data["attributes"] = {
                k: v for k, v in data["attributes"].items() if k not in {"object_count", "size_bytes"}
            }
        out[record.key] = data
    return out


def test_seeding_twice_creates_nothing_the_second_time(clean_clouds: emulators_mod.Emulators) -> None:
    spec = load_spec()["aws"]
    target = load_targets().get("aws-prod")
    log_targets = {b["logging"]["target"] for b in spec["s3_buckets"] if b.get("logging")}

    first = seed_estate(clouds=("aws",))
    assert first.existing == []
    assert len(first.created) == len(set(first.created))
    before = collect_target(target, max_workers=8)
    assert before.complete, before.errors

    second = seed_estate(clouds=("aws",))
    after = collect_target(target, max_workers=8)

    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    assert after.complete, after.errors
    assert _comparable(after.records, log_targets) == _comparable(before.records, log_targets)


def test_first_run_reports_every_described_resource(clean_clouds: emulators_mod.Emulators) -> None:
    spec = load_spec()["aws"]
    report = seed_estate(clouds=("aws",))
    kinds: dict[str, int] = {}
    for entry in report.created:
        kind = entry.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    ec2 = spec["ec2"]
    assert kinds == {
        "aws.kms.key": len(spec["kms_keys"]),
        "aws.s3.bucket": len(spec["s3_buckets"]),
        "aws.ec2.security_group": len(ec2["security_groups"]),
        "aws.ec2.instance": len(ec2["instances"]),
        "aws.ec2.volume": len(ec2["volumes"]),
        "aws.ec2.snapshot": len(ec2["snapshots"]),
        "aws.ec2.ebs_default_encryption": sum(1 for on in ec2["ebs_default_encryption"].values() if on),
        "aws.rds.instance": len(spec["rds_instances"]),
        "aws.route53.zone": len(spec["route53"]["zones"]),
        "aws.route53.health_check": len(spec["route53"]["health_checks"]),
        "aws.route53.record": len(spec["route53"]["records"]),
        "aws.iam.user": len(spec["iam"]["users"]),
        "aws.iam.password_policy": 1,
        "aws.cloudtrail.trail": len(spec["cloudtrail"]),
        "aws.dynamodb.table": len(spec["dynamodb"]),
    }


def test_seeded_objects_have_known_content(clean_clouds: emulators_mod.Emulators) -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    seed_estate(clouds=("aws",))
    spec = next(b for b in load_spec()["aws"]["s3_buckets"] if b["name"] == "rb-prod-customer-exports")
    objects = seeded_objects(spec)
    assert len(objects) == 13 and max(objects.values()) == 1024 * 1024
    hook = S3Hook(aws_conn_id="aws_estate", region_name=spec["region"])
    for key in ("exports/object-000.txt", "exports/large-1mib.bin"):
        body = hook.conn.get_object(Bucket=spec["name"], Key=key)["Body"].read()
        assert body == object_body(spec["name"], key, objects[key])


def test_a_reference_to_an_unknown_key_is_a_clear_error(clean_clouds: emulators_mod.Emulators) -> None:
    from localdev.seed import aws as seed_aws

    section = {
        "target": "aws-prod",
        "s3_buckets": [
            {
                "name": "rb-bad-ref",
                "seed_id": "s3-bad",
                "region": "us-east-1",
                "encryption": "kms",
                "kms_key": "nope",
            }
        ],
    }
    with pytest.raises(SeedError, match="unknown seed_id 'nope'"):
        seed_aws.seed(load_targets().get("aws-prod"), section, SeedReport())
