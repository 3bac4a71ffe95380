"""AWS inventory on the seeded moto estate: every seeded resource is found, with the documented attributes.

The estate is seeded and collected once per module (a reset, then ``seed_estate(clouds=("aws",))``, the
same as the ``clean_clouds`` fixture does, but once instead of per test: a seed plus a collection take a
few seconds). The expectations are read from ``config/estate.yaml`` itself, so adding a resource there
is checked without touching this file.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from include.inventory.collect import TargetInventory, collect_target
from include.inventory.registry import GLOBAL, ListContext, listers_for
from include.records import ResourceRecord
from include.targets import Target, load_targets
from localdev import emulators as emulators_mod
from localdev.seed import SEED_TAG, load_spec, seed_estate, seeded_objects

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def aws_spec() -> dict[str, Any]:
    return load_spec()["aws"]


@pytest.fixture(scope="module")
def aws_target() -> Target:
    return load_targets().get("aws-prod")


@pytest.fixture(scope="module")
def inventory(emulators: emulators_mod.Emulators, aws_target: Target) -> Iterator[TargetInventory]:
    emulators.reset()
    report = seed_estate(clouds=("aws",))
    assert report.created and not report.existing
    yield collect_target(aws_target, max_workers=8)


def _epoch(iso: str) -> float:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def by_type(inv: TargetInventory, resource_type: str) -> list[ResourceRecord]:
    return [r for r in inv.records if r.resource_type == resource_type]


def by_name(inv: TargetInventory, resource_type: str) -> dict[str, ResourceRecord]:
    return {r.name: r for r in by_type(inv, resource_type)}


def by_seed(inv: TargetInventory, resource_type: str) -> dict[str, ResourceRecord]:
    return {r.tags[SEED_TAG]: r for r in by_type(inv, resource_type) if SEED_TAG in r.tags}


# ---- the collection as a whole ---------------------------------------------------------------------------


def test_collection_is_complete(inventory: TargetInventory, aws_target: Target) -> None:
    assert inventory.errors == []
    assert inventory.complete
    listers = listers_for("aws")
    expected_calls = sum(len(aws_target.regions) if entry.regional else 1 for entry in listers)
    assert inventory.calls == expected_calls
    declared = {t for entry in listers for t in entry.resource_types}
    assert {r.resource_type for r in inventory.records} == declared  # every documented type is produced


def test_records_follow_the_contract(inventory: TargetInventory, aws_target: Target) -> None:
    ids = [r.resource_id for r in inventory.records]
    assert len(ids) == len(set(ids)), "resource ids must be unique"
    for record in inventory.records:
        assert record.cloud == "aws" and record.target == "aws-prod" and record.account == ACCOUNT
        assert record.resource_id.startswith("arn:aws:"), record.resource_id
        assert record.resource_type.startswith(f"aws.{record.service}.")
        assert record.region in (*aws_target.regions, GLOBAL), record
        assert ResourceRecord.from_dict(json.loads(record.to_json())) == record
        for key, value in record.attributes.items():
            if key.endswith("_at") and value is not None:
                assert ISO.match(value), (record.name, key, value)
    for record in by_type(inventory, "aws.iam.user") + by_type(inventory, "aws.route53.zone"):
        assert record.region == GLOBAL


def test_every_lister_declares_read_permissions() -> None:
    for entry in listers_for("aws"):
        assert entry.permissions, entry.id
        for permission in entry.permissions:
            assert re.match(r"^[a-z0-9]+:(List|Get|Describe)[A-Za-z0-9]+$", permission), permission


# ---- S3 ------------------------------------------------------------------------------------------------------


def test_every_seeded_bucket_is_found_with_its_settings(
    inventory: TargetInventory, aws_spec: dict[str, Any]
) -> None:
    buckets = by_name(inventory, "aws.s3.bucket")
    keys = by_seed(inventory, "aws.kms.key")
    for spec in aws_spec["s3_buckets"]:
        record = buckets[spec["name"]]
        attrs = record.attributes
        assert record.resource_id == f"arn:aws:s3:::{spec['name']}"
        assert record.region == spec["region"]
        assert record.tags == {**spec.get("tags", {}), SEED_TAG: spec["seed_id"]}
        assert attrs["versioning"] is bool(spec.get("versioning"))
        assert attrs["mfa_delete"] is False
        encryption = spec.get("encryption", "none")
        assert attrs["encrypted"] is (encryption != "none")
        assert (
            attrs["encryption_algorithm"] == {"none": None, "aes256": "AES256", "kms": "aws:kms"}[encryption]
        )
        if encryption == "kms":
            assert attrs["kms_key"] == keys[spec["kms_key"]].resource_id
        else:
            assert attrs["kms_key"] is None
        full_block = spec.get("public_access_block", "full") == "full"
        assert attrs["public_access_block_configured"] is full_block
        assert set(attrs["public_access_block"].values()) == {full_block}
        assert attrs["logging"] is bool(spec.get("logging"))
        assert attrs["lifecycle_rules"] == (1 if spec.get("lifecycle") else 0)
        assert attrs["object_lock"] is False
        assert ISO.match(attrs["created_at"])
        if not any(spec["name"] == b.get("logging", {}).get("target") for b in aws_spec["s3_buckets"]):
            # (A logging target also holds the access logs moto writes, so its count grows.)
            objects = seeded_objects(spec)
            assert attrs["object_count"] == len(objects)
            assert attrs["size_bytes"] == sum(objects.values())
            assert attrs["object_count_truncated"] is False


def test_bucket_exposure(inventory: TargetInventory) -> None:
    buckets = by_name(inventory, "aws.s3.bucket")
    website = buckets["rb-prod-public-website"].attributes
    assert website["public"] is True
    assert website["public_reasons"] == ["policy"]
    assert website["policy_public"] is True and website["acl_public"] is False
    legacy = buckets["rb-prod-legacy-assets"].attributes
    assert legacy["public"] is True
    assert legacy["public_reasons"] == ["acl"]
    assert legacy["acl_public"] is True and legacy["policy_public"] is False
    # A policy granting only AWS services (access logs, CloudTrail) is not public.
    audit = buckets["rb-prod-audit-logs"].attributes
    assert audit["policy_public"] is False and audit["public"] is False
    public = sorted(name for name, record in buckets.items() if record.attributes["public"])
    assert public == ["rb-prod-legacy-assets", "rb-prod-public-website"]


def test_pii_buckets_and_residency_facts(inventory: TargetInventory, aws_target: Target) -> None:
    pii = {
        r.name: r.region
        for r in by_type(inventory, "aws.s3.bucket")
        if r.tags.get("data-classification") == "pii"
    }
    assert pii == {"rb-prod-customer-exports": "us-east-1", "rb-prod-customer-records-eu": "eu-west-1"}
    allowed = set(aws_target.residency.pii_allowed_regions)
    assert {name for name, region in pii.items() if region not in allowed} == {"rb-prod-customer-exports"}


def test_bucket_with_objects_to_back_up(inventory: TargetInventory) -> None:
    exports = by_name(inventory, "aws.s3.bucket")["rb-prod-customer-exports"].attributes
    assert exports["object_count"] == 13  # 12 x 4 KiB + one 1 MiB object
    assert exports["size_bytes"] == 12 * 4096 + 1024 * 1024
    assert exports["logging"] is True


def test_object_count_is_capped(
    inventory: TargetInventory, aws_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    from include.clouds.aws.inventory import s3

    monkeypatch.setattr(s3, "MAX_KEYS_COUNTED", 5)
    records = {r.name: r for r in s3.list_s3(ListContext(target=aws_target, region=GLOBAL))}
    exports = records["rb-prod-customer-exports"].attributes
    assert exports["object_count"] == 5 and exports["object_count_truncated"] is True
    assert records["rb-prod-scratch-eu"].attributes["object_count_truncated"] is False


# ---- EC2 -----------------------------------------------------------------------------------------------------


def test_instances(inventory: TargetInventory, aws_spec: dict[str, Any]) -> None:
    instances = by_seed(inventory, "aws.ec2.instance")
    groups = by_seed(inventory, "aws.ec2.security_group")
    assert set(instances) == {i["seed_id"] for i in aws_spec["ec2"]["instances"]}
    for spec in aws_spec["ec2"]["instances"]:
        record = instances[spec["seed_id"]]
        attrs = record.attributes
        instance_id = record.resource_id.rsplit("/", 1)[1]
        assert record.resource_id == f"arn:aws:ec2:{spec['region']}:{ACCOUNT}:instance/{instance_id}"
        assert record.region == spec["region"]
        assert attrs["state"] == spec["state"]
        assert attrs["instance_type"] == spec["instance_type"]
        assert attrs["image_id"] == spec["image_id"]
        assert record.tags == {**spec.get("tags", {}), SEED_TAG: spec["seed_id"]}
        assert record.name == spec.get("tags", {}).get("Name", instance_id)
        if spec.get("security_groups"):
            assert attrs["security_groups"] == [
                groups[g].attributes["group_id"] for g in spec["security_groups"]
            ]
        assert (attrs["public_ip"] is not None) is (spec["state"] == "running")
        assert attrs["imdsv2_required"] is bool(spec.get("imdsv2_required", False))
        assert attrs["vpc_id"] and attrs["subnet_id"] and ISO.match(attrs["created_at"])
        assert attrs["volume_ids"], "every instance has at least its root volume"
    assert len(instances["ec2-web-1"].attributes["volume_ids"]) == 2  # root + data volume
    untagged = [s for s, r in instances.items() if not {"owner", "cost-center"} <= set(r.tags)]
    assert sorted(untagged) == ["ec2-bastion-1", "ec2-batch-1", "ec2-jump-eu-1"]
    assert {r.region for r in instances.values()} == {"us-east-1", "eu-west-1"}


def test_volumes(inventory: TargetInventory, aws_spec: dict[str, Any]) -> None:
    volumes = by_seed(inventory, "aws.ec2.volume")
    instances = by_seed(inventory, "aws.ec2.instance")
    keys = by_seed(inventory, "aws.kms.key")
    for spec in aws_spec["ec2"]["volumes"]:
        attrs = volumes[spec["seed_id"]].attributes
        assert volumes[spec["seed_id"]].region == spec["region"]
        assert attrs["size_gb"] == spec["size_gb"] and attrs["size_bytes"] == spec["size_gb"] * 1024**3
        assert attrs["encrypted"] is spec["encrypted"]
        if spec.get("kms_key"):
            assert attrs["kms_key"] == keys[spec["kms_key"]].resource_id
        if spec.get("attach_to"):
            instance_id = instances[spec["attach_to"]].resource_id.rsplit("/", 1)[1]
            assert attrs["attached"] is True and attrs["attachments"] == [instance_id]
            assert attrs["state"] == "in-use"
        else:
            assert attrs["attached"] is False and attrs["attachments"] == []
            assert attrs["state"] == "available"
    unattached_unencrypted = [
        s for s, r in volumes.items() if not r.attributes["attached"] and not r.attributes["encrypted"]
    ]
    assert unattached_unencrypted == ["vol-orphan-unencrypted"]
    # Root volumes carry their instance's tags, with seed-id and Name suffixed -root.
    for seed_id, record in instances.items():
        root = volumes[f"{seed_id}-root"]
        assert root.attributes["attachments"] == [record.resource_id.rsplit("/", 1)[1]]
        if "Name" in record.tags:
            assert root.name == f"{record.tags['Name']}-root"
        assert {k: v for k, v in root.tags.items() if k not in {"Name", SEED_TAG}} == {
            k: v for k, v in record.tags.items() if k not in {"Name", SEED_TAG}
        }


def test_snapshots_are_honest_about_their_age(inventory: TargetInventory, aws_spec: dict[str, Any]) -> None:
    snapshots = by_seed(inventory, "aws.ec2.snapshot")
    volumes = by_seed(inventory, "aws.ec2.volume")
    assert set(snapshots) == {s["seed_id"] for s in aws_spec["ec2"]["snapshots"]}
    assert len(by_type(inventory, "aws.ec2.snapshot")) == len(snapshots), "only the account's own snapshots"
    now = time.time()
    for spec in aws_spec["ec2"]["snapshots"]:
        record = snapshots[spec["seed_id"]]
        attrs = record.attributes
        assert re.match(rf"^arn:aws:ec2:{spec['region']}::snapshot/snap-[0-9a-f]+$", record.resource_id)
        assert attrs["volume_id"] == volumes[spec["volume"]].resource_id.rsplit("/", 1)[1]
        assert record.tags["intended-age-days"] == str(spec["intended_age_days"])
        assert f"intended age {spec['intended_age_days']} days" in attrs["description"]
        assert attrs["state"] == "completed"
        # moto cannot backdate: the recorded creation time is the real one (seconds ago), not a faked one.
        assert abs(now - _epoch(attrs["created_at"])) < 3600


def test_security_groups(inventory: TargetInventory) -> None:
    groups = by_seed(inventory, "aws.ec2.security_group")
    ssh = groups["sg-bastion-ssh-open"].attributes
    assert ssh["open_to_world"] is True and ssh["open_to_world_ports"] == [22]
    assert ssh["ingress"] == [{"protocol": "tcp", "from_port": 22, "to_port": 22, "cidrs": ["0.0.0.0/0"]}]
    rdp = groups["sg-windows-rdp-open"]
    assert rdp.region == "eu-west-1" and rdp.attributes["open_to_world_ports"] == [3389]
    for clean in ("sg-app-internal", "sg-app-internal-eu"):
        assert groups[clean].attributes["open_to_world"] is False
        assert groups[clean].attributes["open_to_world_ports"] == []
    open_groups = sorted(
        r.name for r in by_type(inventory, "aws.ec2.security_group") if r.attributes["open_to_world"]
    )
    assert open_groups == ["rb-bastion-ssh", "rb-windows-rdp"]


def test_ebs_default_encryption_per_region(inventory: TargetInventory) -> None:
    settings = {r.region: r for r in by_type(inventory, "aws.ec2.region_settings")}
    assert settings["eu-west-1"].attributes == {"ebs_default_encryption": True}
    assert settings["us-east-1"].attributes == {"ebs_default_encryption": False}
    assert settings["us-east-1"].resource_id == f"arn:aws:ec2:us-east-1:{ACCOUNT}:ebs-default-encryption"


# ---- RDS, Route 53 -------------------------------------------------------------------------------------------


def test_rds_instances_and_replica(inventory: TargetInventory) -> None:
    dbs = by_name(inventory, "aws.rds.instance")
    keys = by_seed(inventory, "aws.kms.key")
    primary, replica, legacy = (
        dbs["rb-orders-db"],
        dbs["rb-orders-db-replica-eu"],
        dbs["rb-legacy-reporting-db"],
    )
    assert primary.region == "us-east-1" and replica.region == "eu-west-1"
    assert primary.resource_id == f"arn:aws:rds:us-east-1:{ACCOUNT}:db:rb-orders-db"
    p = primary.attributes
    assert (p["encrypted"], p["public"], p["retention_days"], p["multi_az"]) == (True, False, 7, True)
    assert p["kms_key"] == keys["kms-data-use1"].resource_id
    assert p["replica_source"] is None
    assert p["read_replicas"] == [replica.resource_id]
    assert p["engine"] == "postgres" and p["state"] == "available" and p["deletion_protection"] is True
    r = replica.attributes
    assert r["replica_source"] == primary.resource_id
    assert r["encrypted"] is True and r["kms_key"] == keys["kms-data-euw1"].resource_id
    legacy_attrs = legacy.attributes
    assert (legacy_attrs["encrypted"], legacy_attrs["public"], legacy_attrs["multi_az"]) == (
        False,
        True,
        False,
    )
    assert legacy_attrs["retention_days"] == 1 and legacy_attrs["replica_source"] is None
    assert legacy.tags == {"owner": "legacy-team", SEED_TAG: "rds-legacy-reporting"}


def test_route53_failover_records_with_health_checks(inventory: TargetInventory) -> None:
    zones = by_type(inventory, "aws.route53.zone")
    assert [(z.name, z.attributes["private"]) for z in zones] == [("example-runbooks.com.", False)]
    zone_id = zones[0].attributes["zone_id"]
    checks = {r.resource_id.rsplit("/", 1)[1]: r for r in by_type(inventory, "aws.route53.health_check")}
    assert {c.tags[SEED_TAG] for c in checks.values()} == {"r53-hc-app-primary", "r53-hc-app-secondary"}
    app = {
        r.attributes["failover"]: r
        for r in by_type(inventory, "aws.route53.record")
        if r.name == "app.example-runbooks.com."
    }
    assert set(app) == {"PRIMARY", "SECONDARY"}
    for role, seed_id, ip in (
        ("PRIMARY", "r53-hc-app-primary", "203.0.113.10"),
        ("SECONDARY", "r53-hc-app-secondary", "198.51.100.20"),
    ):
        attrs = app[role].attributes
        assert attrs["zone_id"] == zone_id and attrs["record_type"] == "A" and attrs["ttl"] == 60
        assert attrs["values"] == [ip]
        check = checks[attrs["health_check_id"]]
        assert check.tags[SEED_TAG] == seed_id
        assert check.attributes["ip"] == ip and check.attributes["port"] == 443
        assert check.attributes["check_type"] == "HTTPS" and check.attributes["path"] == "/healthz"
    records = by_type(inventory, "aws.route53.record")
    assert zones[0].attributes["record_count"] == len(records)  # NS, SOA, 2 x A, CNAME


# ---- IAM, KMS, CloudTrail, DynamoDB --------------------------------------------------------------------------


def test_iam_users(inventory: TargetInventory) -> None:
    users = by_name(inventory, "aws.iam.user")
    assert set(users) == {"alice.console", "ci-deployer", "bob.admin"}
    alice, ci, bob = (
        users["alice.console"].attributes,
        users["ci-deployer"].attributes,
        users["bob.admin"].attributes,
    )
    assert (alice["password_enabled"], alice["mfa_enabled"], alice["access_keys"]) == (True, False, [])
    assert (bob["password_enabled"], bob["mfa_enabled"]) == (True, True)
    assert (ci["password_enabled"], ci["mfa_enabled"]) == (False, False)
    [key] = ci["access_keys"]
    assert key["status"] == "Active" and key["id"].startswith("AKIA") and key["last_used_at"] is None
    # The key's intended age is only a tag: its recorded creation time is the real one (just now).
    assert abs(time.time() - _epoch(key["created_at"])) < 3600
    assert users["ci-deployer"].tags["intended-key-age-days"] == "400"
    assert users["alice.console"].resource_id == f"arn:aws:iam::{ACCOUNT}:user/alice.console"


def test_iam_account(inventory: TargetInventory) -> None:
    [account] = by_type(inventory, "aws.iam.account")
    assert account.resource_id == f"arn:aws:iam::{ACCOUNT}:root" and account.region == GLOBAL
    attrs = account.attributes
    assert attrs["root_mfa_enabled"] is False and attrs["root_access_keys_present"] is False
    policy = attrs["password_policy"]
    assert policy["MinimumPasswordLength"] == 8 and policy["RequireSymbols"] is False


def test_kms_keys(inventory: TargetInventory) -> None:
    keys = by_seed(inventory, "aws.kms.key")
    assert keys["kms-data-use1"].attributes["rotation_enabled"] is True
    assert keys["kms-data-euw1"].attributes["rotation_enabled"] is True
    assert keys["kms-legacy-use1"].attributes["rotation_enabled"] is False
    for seed_id, region in (
        ("kms-data-use1", "us-east-1"),
        ("kms-data-euw1", "eu-west-1"),
        ("kms-legacy-use1", "us-east-1"),
    ):
        record = keys[seed_id]
        assert record.region == region
        assert record.attributes["key_manager"] == "CUSTOMER" and record.attributes["state"] == "Enabled"
        assert record.attributes["key_spec"] == "SYMMETRIC_DEFAULT"
        assert record.resource_id.startswith(f"arn:aws:kms:{region}:{ACCOUNT}:key/")
    assert keys["kms-data-use1"].name == "alias/runbooks-data"
    # The key moto makes for EBS default encryption is AWS-managed (alias/aws/ebs), not the account's own.
    ebs = [r for r in by_type(inventory, "aws.kms.key") if "alias/aws/ebs" in r.attributes["aliases"]]
    assert [r.attributes["key_manager"] for r in ebs] == ["AWS"]


def test_cloudtrail(inventory: TargetInventory) -> None:
    [trail] = by_type(inventory, "aws.cloudtrail.trail")
    assert trail.name == "rb-account-trail" and trail.region == "us-east-1"
    assert trail.resource_id == f"arn:aws:cloudtrail:us-east-1:{ACCOUNT}:trail/rb-account-trail"
    assert trail.attributes == {
        "multi_region": False,
        "log_file_validation": False,
        "logging": True,
        "s3_bucket": "rb-prod-audit-logs",
        "kms_key": None,
        "encrypted": False,
        "home_region": "us-east-1",
    }
    assert trail.tags[SEED_TAG] == "ct-account-trail"


def test_dynamodb_tables(inventory: TargetInventory) -> None:
    tables = by_name(inventory, "aws.dynamodb.table")
    orders, sessions = tables["rb-orders"], tables["rb-sessions-eu"]
    assert orders.region == "us-east-1" and sessions.region == "eu-west-1"
    assert orders.attributes["pitr"] is True and sessions.attributes["pitr"] is False
    assert orders.attributes["item_count"] == 6 and sessions.attributes["item_count"] == 4
    assert orders.attributes["encrypted"] is True and orders.attributes["state"] == "ACTIVE"
    assert orders.resource_id == f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/rb-orders"
    assert orders.tags["data-classification"] == "pii"


# ---- failure: an unreachable account ----------------------------------------------------------------------


def test_unreachable_target_is_one_quick_error(
    emulators: emulators_mod.Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed_port = emulators_mod.free_port()  # nothing listens here
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_UNREACHABLE",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {
                    "endpoint_url": f"http://127.0.0.1:{closed_port}",
                    "region_name": "us-east-1",
                    "config_kwargs": {
                        "connect_timeout": 1,
                        "read_timeout": 1,
                        "retries": {"mode": "standard", "max_attempts": 1},
                    },
                },
            }
        ),
    )
    target = Target(
        name="aws-unreachable",
        cloud="aws",
        conn_id="aws_unreachable",
        account=ACCOUNT,
        regions=("us-east-1", "eu-west-1"),
    )
    started = time.monotonic()
    result = collect_target(target)
    assert time.monotonic() - started < 10
    assert result.records == []
    assert not result.complete
    [error] = result.errors
    assert (error.service, error.kind, error.region) == ("*", "unreachable", GLOBAL)
    assert str(closed_port) in error.message


def test_not_configured_answers_are_facts_but_other_errors_propagate() -> None:
    from botocore.exceptions import ClientError

    from include.clouds.aws.inventory.common import unless

    def fail(code: str) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": code}}, "GetBucketPolicyStatus")

    assert unless({"NoSuchBucketPolicy"}, lambda: fail("NoSuchBucketPolicy"), False) is False
    with pytest.raises(ClientError, match="AccessDenied"):
        unless({"NoSuchBucketPolicy"}, lambda: fail("AccessDenied"), False)
