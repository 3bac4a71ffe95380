"""The lister registry: one service = one module, one naming rule, validated ``services`` requests."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator

import pytest

from include.inventory import registry
from include.inventory.registry import ListContext, known_services, lister, listers_for, validate_services
from include.records import ResourceRecord, service_of
from include.targets import parse_targets

CLOUDS = ("aws", "gcp", "azure")
TARGET = parse_targets(
    "targets:\n  - {name: t1, cloud: gcp, conn_id: none, project: p1, regions: [global]}"
).targets[0]

#: What each lister may call (least-privilege policies are generated from these): unchanged by the split.
PERMISSIONS = {
    "aws.s3": (
        "s3:ListAllMyBuckets", "s3:GetBucketLocation", "s3:GetBucketTagging", "s3:GetEncryptionConfiguration",
        "s3:GetBucketVersioning", "s3:GetBucketPublicAccessBlock", "s3:GetBucketPolicyStatus", "s3:GetBucketAcl",
        "s3:GetBucketLogging", "s3:GetLifecycleConfiguration", "s3:GetBucketObjectLockConfiguration",
        "s3:ListBucket",
    ),
    "aws.ec2": (
        "ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots", "ec2:DescribeSecurityGroups",
        "ec2:GetEbsEncryptionByDefault",
    ),
    "aws.rds": ("rds:DescribeDBInstances",),
    "aws.route53": (
        "route53:ListHostedZones", "route53:ListResourceRecordSets", "route53:ListHealthChecks",
        "route53:ListTagsForResources",
    ),
    "aws.iam": (
        "iam:ListUsers", "iam:ListUserTags", "iam:GetLoginProfile", "iam:ListMFADevices", "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed", "iam:GetAccountSummary", "iam:GetAccountPasswordPolicy",
    ),
    "aws.kms": (
        "kms:ListKeys", "kms:ListAliases", "kms:DescribeKey", "kms:GetKeyRotationStatus", "kms:ListResourceTags",
    ),
    "aws.cloudtrail": ("cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags"),
    "aws.dynamodb": (
        "dynamodb:ListTables", "dynamodb:DescribeTable", "dynamodb:DescribeContinuousBackups",
        "dynamodb:ListTagsOfResource",
    ),
    "gcp.storage": ("storage.buckets.list", "storage.buckets.getIamPolicy"),
    "gcp.compute": ("compute.instances.list",),
    "azure.storage": ("Microsoft.Storage/storageAccounts/blobServices/containers/read",),
    "azure.compute": ("Microsoft.Compute/virtualMachines/read",),
}


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, registry.Lister]]:
    """An empty registry for decorating test listers (the real one stays as it is)."""
    listers: dict[str, registry.Lister] = {}
    monkeypatch.setattr(registry, "_LISTERS", listers)
    yield listers


# ---- layout: one service = one module --------------------------------------------------------------------


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_service_module_registers_the_lister_named_after_it(cloud: str) -> None:
    package = importlib.import_module(f"include.clouds.{cloud}.inventory")
    modules = {m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")}
    entries = listers_for(cloud)
    assert {entry.service for entry in entries} == modules - {"common"}, "one module per service, no other"
    for entry in entries:
        assert entry.func.__module__ == f"include.clouds.{cloud}.inventory.{entry.service}", entry.id
    assert callable(package.probe)


def test_the_split_kept_every_lister_and_its_permissions() -> None:
    found = {entry.id: entry.permissions for cloud in CLOUDS for entry in listers_for(cloud)}
    assert found == PERMISSIONS


def test_one_naming_rule_service_is_the_middle_of_the_resource_type() -> None:
    for cloud in CLOUDS:
        for entry in listers_for(cloud):
            for resource_type in entry.resource_types:
                assert resource_type.split(".")[0] == cloud
                assert service_of(resource_type) == entry.service, (entry.id, resource_type)
    assert known_services("gcp") == ("compute", "storage")
    assert known_services("azure") == ("compute", "storage")


# ---- the rule, enforced -------------------------------------------------------------------------------------


def test_service_of() -> None:
    assert service_of("gcp.storage.bucket") == "storage"
    assert service_of("aws.ec2.region_settings") == "ec2"
    for bad in ("gcp.storage", "gcp..bucket", "a.b.c.d", ""):
        with pytest.raises(ValueError, match="is not <cloud>.<service>.<kind>"):
            service_of(bad)


def test_lister_refuses_a_resource_type_of_another_service(private_registry: dict[str, registry.Lister]) -> None:
    def nothing(ctx: ListContext) -> list[ResourceRecord]:
        return []

    with pytest.raises(ValueError, match=r"gcp\.gcs: resource type 'gcp\.storage\.bucket' is not gcp\.gcs\.<kind>"):
        lister("gcp", "gcs", ["gcp.storage.bucket"])(nothing)
    with pytest.raises(ValueError, match="is not azure.storage.<kind>"):
        lister("azure", "storage", ["gcp.storage.bucket"])(nothing)
    with pytest.raises(ValueError, match="declares no resource type"):
        lister("aws", "s3", [])(nothing)
    assert private_registry == {}
    lister("gcp", "storage", ["gcp.storage.bucket"])(nothing)
    assert list(private_registry) == ["gcp.storage"]


def test_records_take_their_service_from_the_resource_type() -> None:
    ctx = ListContext(target=TARGET, region="global")
    record = ctx.record(resource_type="gcp.storage.bucket", resource_id="//x", name="x")
    assert record.service == "storage" and record.target == "t1" and record.account == "p1"
    with pytest.raises(ValueError, match="service 'gcs' does not match resource type 'gcp.storage.bucket'"):
        ctx.record(service="gcs", resource_type="gcp.storage.bucket", resource_id="//x", name="x")


# ---- validating a services request ----------------------------------------------------------------------------


def test_validate_services_per_cloud() -> None:
    assert validate_services(["s3", "storage", "s3"], CLOUDS) == {
        "aws": ("s3",), "gcp": ("storage",), "azure": ("storage",),
    }
    # A request that concerns no service of a selected cloud gives it nothing to list, not everything.
    assert validate_services(["ec2"], ["aws", "gcp"]) == {"aws": ("ec2",), "gcp": ()}
    assert validate_services([], ["aws"]) == {"aws": ()}


def test_validate_services_names_the_unknown_and_the_allowed() -> None:
    with pytest.raises(ValueError) as caught:
        validate_services(["foo", "storage", "gcs"], ["gcp", "azure"])
    assert str(caught.value) == (
        "unknown services: foo, gcs; known: gcp: compute, storage; azure: compute, storage"
    )
    # Only the selected targets' clouds count: s3 is not a service of a GCP-only selection.
    with pytest.raises(ValueError, match=r"^unknown services: s3; known: gcp: compute, storage$"):
        validate_services(["s3"], ["gcp"])
    with pytest.raises(ValueError, match="unknown cloud 'oracle'"):
        validate_services(["s3"], ["oracle"])


def test_listers_for_a_subset() -> None:
    assert [entry.id for entry in listers_for("aws", ["s3", "iam"])] == ["aws.iam", "aws.s3"]
    assert listers_for("aws", []) == []
    with pytest.raises(ValueError, match=r"^unknown services: gcs; known: gcp: compute, storage$"):
        listers_for("gcp", ["gcs"])
