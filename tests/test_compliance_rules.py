"""The rule registry: metadata over the whole registry, and every rule tripped and passed on the emulators.

The estate is the seeded one (``config/estate.yaml``, deliberately imperfect) plus a few fixture
resources created here through the same provider hooks, collected with the production collector and
scanned with the production engine. The scans ("phases"):

- ``A``: seed + fixtures, scanned now.
- ``FUTURE``: the same inventory scanned 400 days from now. moto cannot backdate a creation time, so age
  rules (access key rotation, unused credentials, snapshot age) are tripped by moving the scan time
  forward instead; that is what a scan a year later would see, so it is a legitimate test.
- ``RESIDENCY``: the same inventory scanned with azure-prod's allowed PII regions set to northeurope only
  (Azure containers carry the target's region, so residency is tripped through the target's config).
- ``B``: after setting a strong password policy and adding a multi-region, validated, KMS-encrypted,
  logging trail that writes to a bucket with access logging.
- ``C``: after deleting the password policy.
- ``FIXTURE``: records no emulator can produce: moto always reports the root user without MFA and without
  access keys, so the passing case of ``aws_iam_root_mfa_enabled`` and the failing case of
  ``aws_iam_root_access_keys_absent`` are the collected account record with that one attribute flipped.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from include.compliance.engine import scan, select_rules
from include.compliance.frameworks import catalogues, cis_benchmarks
from include.compliance.model import SEVERITIES, Finding, Verdict
from include.compliance.policy import Policy, PolicyError, parse_policy
from include.compliance.registry import (
    FIXERS,
    Rule,
    RuleDefinitionError,
    RuleError,
    RuleMeta,
    all_rules,
    contract_resource_types,
    register,
    rule,
    rule_ids,
    validate_meta,
)
from include.records import ResourceRecord

ACCOUNT = "123456789012"

# rule id -> ((phase, resource) that fails, (phase, resource) that passes). A resource is its seed-id tag
# or its name. Every registered rule must be here: a new rule without a trip/pass case fails the suite.
CASES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    # S3
    "aws_s3_bucket_default_encryption": (("A", "rb-prod-public-website"), ("A", "rb-prod-audit-logs")),
    "aws_s3_bucket_versioning": (("A", "rb-prod-scratch-eu"), ("A", "rb-prod-audit-logs")),
    "aws_s3_bucket_public_access_block": (("A", "rb-prod-scratch-eu"), ("A", "rb-prod-audit-logs")),
    "aws_s3_bucket_not_public": (("A", "rb-prod-public-website"), ("A", "rb-prod-scratch-eu")),
    "aws_s3_bucket_access_logging": (("A", "rb-prod-scratch-eu"), ("A", "rb-prod-customer-exports")),
    "aws_s3_cloudtrail_bucket_access_logging": (("A", "rb-prod-audit-logs"), ("B", "rb-prod-customer-exports")),
    # IAM
    "aws_iam_root_mfa_enabled": (("A", ACCOUNT), ("FIXTURE", ACCOUNT)),
    "aws_iam_root_access_keys_absent": (("FIXTURE", ACCOUNT), ("A", ACCOUNT)),
    "aws_iam_password_policy_exists": (("C", ACCOUNT), ("A", ACCOUNT)),
    "aws_iam_password_policy_min_length": (("A", ACCOUNT), ("B", ACCOUNT)),
    "aws_iam_password_policy_reuse_prevention": (("A", ACCOUNT), ("B", ACCOUNT)),
    "aws_iam_user_console_mfa": (("A", "alice.console"), ("A", "bob.admin")),
    "aws_iam_access_key_rotation": (("FUTURE", "ci-deployer"), ("A", "ci-deployer")),
    "aws_iam_credentials_unused": (("FUTURE", "alice.console"), ("A", "alice.console")),
    "aws_iam_user_single_active_key": (("A", "rb-test-two-keys"), ("A", "ci-deployer")),
    # KMS
    "aws_kms_key_rotation": (("A", "kms-legacy-use1"), ("A", "kms-data-use1")),
    # EC2
    "aws_ec2_security_group_ssh_open": (("A", "sg-bastion-ssh-open"), ("A", "sg-app-internal")),
    "aws_ec2_security_group_rdp_open": (("A", "sg-windows-rdp-open"), ("A", "sg-app-internal")),
    "aws_ec2_security_group_all_ports_open": (("A", "rb-test-all-open"), ("A", "sg-bastion-ssh-open")),
    "aws_ec2_ebs_default_encryption": (("A", "us-east-1"), ("A", "eu-west-1")),
    "aws_ec2_volume_encrypted": (("A", "vol-orphan-unencrypted"), ("A", "vol-web-1-data")),
    "aws_ec2_volume_unattached": (("A", "vol-orphan-unencrypted"), ("A", "vol-web-1-data")),
    "aws_ec2_snapshot_age": (("FUTURE", "snap-web-1-data-recent"), ("A", "snap-web-1-data-recent")),
    "aws_ec2_snapshot_encrypted": (("A", "snap-orphan-old"), ("A", "snap-web-1-data-recent")),
    "aws_ec2_instance_imdsv2": (("A", "ec2-bastion-1"), ("A", "ec2-web-1")),
    # RDS
    "aws_rds_instance_encrypted": (("A", "rds-legacy-reporting"), ("A", "rds-orders-db")),
    "aws_rds_instance_not_public": (("A", "rds-legacy-reporting"), ("A", "rds-orders-db")),
    "aws_rds_instance_backup_retention": (("A", "rds-legacy-reporting"), ("A", "rds-orders-db")),
    "aws_rds_instance_multi_az": (("A", "rds-legacy-reporting"), ("A", "rds-orders-db")),
    "aws_rds_instance_deletion_protection": (("A", "rds-legacy-reporting"), ("A", "rds-orders-db")),
    # DynamoDB
    "aws_dynamodb_table_pitr": (("A", "ddb-sessions-eu"), ("A", "ddb-orders")),
    # CloudTrail
    "aws_cloudtrail_account_multi_region_trail": (("A", ACCOUNT), ("B", ACCOUNT)),
    "aws_cloudtrail_multi_region": (("A", "ct-account-trail"), ("B", "rb-org-trail")),
    "aws_cloudtrail_logging_enabled": (("A", "rb-test-stopped-trail"), ("A", "ct-account-trail")),
    "aws_cloudtrail_log_file_validation": (("A", "ct-account-trail"), ("B", "rb-org-trail")),
    "aws_cloudtrail_kms_encryption": (("A", "ct-account-trail"), ("B", "rb-org-trail")),
    # cross-cloud, AWS
    "aws_required_tags": (("A", "rb-prod-public-website"), ("A", "rb-prod-audit-logs")),
    "aws_pii_data_residency": (("A", "rb-prod-customer-exports"), ("A", "rb-prod-customer-records-eu")),
    # Google Cloud
    "gcp_storage_bucket_uniform_access": (("A", "rb-gcp-legacy-scratch"), ("A", "rb-gcp-app-data-eu")),
    "gcp_storage_bucket_public_access_prevention": (("A", "rb-gcp-customer-pii-us"), ("A", "rb-gcp-app-data-eu")),
    "gcp_storage_bucket_not_public": (("A", "rb-gcp-public-website"), ("A", "rb-gcp-app-data-eu")),
    "gcp_storage_bucket_versioning": (("A", "rb-gcp-customer-pii-us"), ("A", "rb-gcp-app-data-eu")),
    "gcp_required_labels": (("A", "rb-gcp-legacy-scratch"), ("A", "rb-gcp-app-data-eu")),
    "gcp_pii_data_residency": (("A", "rb-gcp-customer-pii-us"), ("A", "rb-gcp-customer-pii-eu")),
    # Azure
    "azure_storage_container_not_public": (("A", "public-downloads"), ("A", "app-data")),
    "azure_required_metadata": (("A", "legacy-dumps"), ("A", "app-data")),
    "azure_pii_data_residency": (("RESIDENCY", "customer-pii"), ("A", "customer-pii")),
}


# ---- metadata over the whole registry --------------------------------------------------------------------


def test_registry_has_at_least_30_rules() -> None:
    assert len(rule_ids()) >= 30


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.id)
def test_rule_metadata_is_valid(rule: Rule) -> None:
    meta = rule.meta
    validate_meta(meta)  # the same checks as at registration
    assert meta.severity in SEVERITIES
    assert meta.remediation.strip() and meta.rationale.strip() and meta.title.strip()
    assert meta.id.startswith(meta.cloud + "_")
    assert set(meta.resource_types) <= contract_resource_types()
    assert meta.frameworks and set(meta.frameworks) <= set(catalogues())
    assert all(ids for ids in meta.frameworks.values()), "every framework lists control ids"
    assert meta.fixer is None or meta.fixer in FIXERS
    assert meta.enabled


def test_rule_ids_are_unique_and_cis_is_cited_per_cloud() -> None:
    ids = [r.id for r in all_rules()]
    assert len(ids) == len(set(ids))
    assert set(cis_benchmarks()) == {"aws", "gcp", "azure"}
    for cloud, framework in cis_benchmarks().items():
        assert any(framework in r.meta.frameworks for r in all_rules() if r.meta.cloud == cloud), cloud
    for tag in ("GDPR", "HIPAA"):
        assert any(tag in r.meta.frameworks for r in all_rules()), tag


def test_every_fixer_is_used_by_a_rule() -> None:
    assert {r.meta.fixer for r in all_rules() if r.meta.fixer} == set(FIXERS)


@pytest.mark.parametrize("rule_id", rule_ids())
def test_every_rule_has_a_trip_and_pass_case(rule_id: str) -> None:
    assert rule_id in CASES, f"add a failing and a passing resource for {rule_id} to CASES"


def _meta(**changes: Any) -> RuleMeta:
    base = RuleMeta(
        id="aws_test_rule", title="t", severity="low", cloud="aws", resource_types=("aws.s3.bucket",),
        rationale="r", remediation="fix it", frameworks={"CIS-AWS-3.0": ("2.1.4",)},
    )
    return replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"severity": "urgent"}, "unknown severity 'urgent'"),
        ({"remediation": "  "}, "remediation is empty"),
        ({"frameworks": {"CIS-AWS-9.9": ("1.1",)}}, "unknown framework 'CIS-AWS-9.9'"),
        ({"frameworks": {"CIS-GCP-3.0": ("5.1",)}}, "not the CIS benchmark of aws"),
        ({"frameworks": {"CIS-AWS-3.0": ("CIS 2.1.4",)}}, "not a valid CIS-AWS-3.0 id"),
        ({"frameworks": {"CIS-AWS-3.0": ("2.1.9",)}}, "control '2.1.9' is not in the CIS-AWS-3.0 catalogue"),
        ({"frameworks": {"AWS-FSBP": ("IAM.9",)}}, "control 'IAM.9' is not in the AWS-FSBP catalogue"),
        ({"frameworks": {"CIS-AWS-3.0": ()}}, "lists no control id"),
        (
            {"id": "gcp_test_rule", "cloud": "gcp", "resource_types": ("gcp.storage.bucket",),
             "frameworks": {"AWS-FSBP": ("S3.8",)}},
            "framework 'AWS-FSBP' applies to aws rules only, not gcp",
        ),
        ({"frameworks": {}}, "maps to no framework"),
        ({"id": "AwsBadId"}, "snake_case"),
        ({"id": "gcp_wrong_cloud"}, "must start with its cloud 'aws'"),
        ({"resource_types": ("aws.s3.bukket",)}, "not in docs/inventory-records.md"),
        ({"fixer": "aws.s3.delete_everything"}, "unknown fixer"),
    ],
)
def test_invalid_metadata_is_a_clear_error_naming_the_rule(changes: dict[str, Any], message: str) -> None:
    meta = _meta(**changes)
    with pytest.raises(RuleDefinitionError, match="rule '") as info:
        validate_meta(meta)
    assert message in str(info.value)
    assert meta.id in str(info.value)


def test_a_rule_citing_an_unknown_control_fails_at_registration_naming_the_rule() -> None:
    with pytest.raises(
        RuleDefinitionError,
        match=r"^rule 'aws_test_unknown_control': control 'S3\.99' is not in the AWS-FSBP catalogue \(aws-fsbp\.yaml\)",
    ):

        @rule(
            id="aws_test_unknown_control", title="t", severity="low", resource_types=("aws.s3.bucket",),
            rationale="r", remediation="fix it", frameworks={"AWS-FSBP": ["S3.99"]},
        )
        def unknown_control(record: ResourceRecord, ctx: Any) -> Verdict | None:
            return None

    assert "aws_test_unknown_control" not in rule_ids()


def test_duplicate_rule_id_is_an_error() -> None:
    existing = all_rules()[0]
    with pytest.raises(RuleDefinitionError, match="registered twice"):
        register(existing.meta, lambda record, ctx: None)


# ---- engine, policy --------------------------------------------------------------------------------------


def _bucket(name: str, target: str = "aws-prod", **attributes: Any) -> ResourceRecord:
    return ResourceRecord(
        cloud="aws", target=target, account=ACCOUNT, region="us-east-1", service="s3",
        resource_type="aws.s3.bucket", resource_id=f"arn:aws:s3:::{name}", name=name, attributes=attributes,
    )


def test_scan_is_deterministic_and_skips_not_applicable() -> None:
    records = [_bucket("b2", versioning=False), _bucket("b1", versioning=True), _bucket("b3")]
    now = datetime(2026, 11, 28, tzinfo=UTC)
    first = scan(records, None, now=now, rules=["aws_s3_bucket_versioning"])
    second = scan(list(reversed(records)), None, now=now, rules=["aws_s3_bucket_versioning"])
    assert first == second
    assert [(f.resource_name, f.status) for f in first] == [("b1", "pass"), ("b2", "fail")]  # b3: unknown
    assert first[1].fixer == "aws.s3.versioning" and first[1].frameworks == {
        "AWS-SecurityHub": ["S3.14"], "HIPAA": ["164.308(a)(7)(ii)(A)"]
    }


def test_a_rule_that_raises_stops_the_scan_naming_rule_and_resource() -> None:
    def broken(record: ResourceRecord, ctx: Any) -> Verdict | None:
        raise KeyError("oops")

    bad = Rule(_meta(), broken)
    with pytest.raises(RuleError, match=r"aws_test_rule failed on arn:aws:s3:::b1"):
        scan([_bucket("b1")], None, now=datetime.now(UTC), rules=[bad])


def test_policy_disables_rules_and_overrides_thresholds() -> None:
    policy = parse_policy(
        "disabled_rules: [aws_s3_bucket_versioning]\nparameters: {aws_ec2_snapshot_age: {max_age_days: 0}}\n"
    )
    assert "aws_s3_bucket_versioning" not in {r.id for r in select_rules(policy=policy)}
    snapshot = ResourceRecord(
        cloud="aws", target="aws-prod", account=ACCOUNT, region="us-east-1", service="ec2",
        resource_type="aws.ec2.snapshot", resource_id="arn:aws:ec2:us-east-1::snapshot/snap-1", name="snap-1",
        attributes={"created_at": "2026-11-27T00:00:00Z", "encrypted": True},
    )
    now = datetime(2026, 11, 28, tzinfo=UTC)
    default = scan([snapshot], None, now=now, rules=["aws_ec2_snapshot_age"])
    strict = scan([snapshot], None, now=now, rules=["aws_ec2_snapshot_age"], policy=policy)
    assert default[0].status == "pass" and strict[0].status == "fail"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fail_on: [critical, urgent]\n", "fail_on"),
        ("disabled_rules: [aws_no_such_rule]\n", "unknown rules: aws_no_such_rule"),
        ("parameters: {aws_ec2_snapshot_age: {max_days: 3}}\n", "has no parameter 'max_days'"),
        ("parameters: {aws_ec2_snapshot_age: {max_age_days: soon}}\n", "must be a number"),
        ("required_tags: []\n", "required_tags"),
        ("surprise: 1\n", "surprise"),
        ("fail_on: [critical\n", "not valid YAML"),
    ],
)
def test_malformed_policy_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match="invalid policy|unknown|has no|must be|not valid") as info:
        parse_policy(text, source="policy.yaml")
    assert message in str(info.value)


def test_required_tag_keys_come_from_the_policy_and_match_azure_spelling() -> None:
    container = ResourceRecord(
        cloud="azure", target="azure-prod", account="sub", region="westeurope", service="storage",
        resource_type="azure.storage.container", resource_id="https://a.blob.core.windows.net/c", name="c",
        tags={"Owner": "x", "cost_center": "cc-1"},
    )
    now = datetime.now(UTC)
    default = scan([container], None, now=now, rules=["azure_required_metadata"])
    assert default[0].status == "fail" and default[0].evidence["missing"] == ["data-classification"]
    relaxed = scan([container], None, now=now, rules=["azure_required_metadata"],
                   policy=Policy(required_tags=("owner", "cost-center")))
    assert relaxed[0].status == "pass"


# ---- every rule on the emulators -------------------------------------------------------------------------


def _aws(client_type: str, region: str = "us-east-1") -> Any:
    from include.clouds.aws.clients import client_for

    return client_for("aws_estate", client_type, region)


def _add_fixture_resources() -> None:
    """Resources the seeded estate lacks: a user with two keys, an all-ports group, a stopped trail."""
    iam = _aws("iam")
    iam.create_user(UserName="rb-test-two-keys", Tags=[{"Key": "owner", "Value": "test"}])
    iam.create_access_key(UserName="rb-test-two-keys")
    iam.create_access_key(UserName="rb-test-two-keys")
    ec2 = _aws("ec2")  # the provider's EC2Hook
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName="rb-test-all-open", Description="all traffic", VpcId=vpc)
    ec2.authorize_security_group_ingress(
        GroupId=group["GroupId"], IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    _aws("cloudtrail").create_trail(Name="rb-test-stopped-trail", S3BucketName="rb-prod-audit-logs")


def _collect(targets: Any, names: list[str] | None = None, services: list[str] | None = None) -> list[ResourceRecord]:
    from include.inventory.collect import collect_target

    records: list[ResourceRecord] = []
    for target in targets.select(names):
        result = collect_target(target, services=services)
        assert result.complete, result.errors
        records.extend(result.records)
    return records


@pytest.fixture(scope="module")
def phases(emulators: Any) -> dict[str, tuple[list[ResourceRecord], list[Finding]]]:
    """Scan results per phase (see the module docstring): {phase: (records, findings)}."""
    from include.targets import load_targets
    from localdev.seed import seed_estate

    emulators.reset()
    seed_estate()
    _add_fixture_resources()
    targets = load_targets()
    now = datetime.now(UTC)
    out: dict[str, tuple[list[ResourceRecord], list[Finding]]] = {}

    records = _collect(targets)
    out["A"] = (records, scan(records, targets, now=now))
    out["FUTURE"] = (records, scan(records, targets, now=now + timedelta(days=400)))
    azure = targets.get("azure-prod")
    elsewhere = azure.model_copy(update={"residency": azure.residency.model_copy(
        update={"pii_allowed_regions": ("northeurope",)})})
    out["RESIDENCY"] = (records, scan(records, [elsewhere], now=now))
    account = next(r for r in records if r.resource_type == "aws.iam.account")
    fixture = replace(
        account, attributes={**account.attributes, "root_mfa_enabled": True, "root_access_keys_present": True}
    )
    out["FIXTURE"] = ([fixture], scan([fixture], targets, now=now))

    iam = _aws("iam")
    iam.update_account_password_policy(
        MinimumPasswordLength=14, PasswordReusePrevention=24, RequireSymbols=True, RequireNumbers=True,
        RequireUppercaseCharacters=True, RequireLowercaseCharacters=True, MaxPasswordAge=90,
    )
    key = _aws("kms").describe_key(KeyId="alias/runbooks-data")["KeyMetadata"]["Arn"]
    trail = _aws("cloudtrail")
    trail.create_trail(
        Name="rb-org-trail", S3BucketName="rb-prod-customer-exports", IsMultiRegionTrail=True,
        EnableLogFileValidation=True, KmsKeyId=key,
    )
    trail.start_logging(Name="rb-org-trail")
    records = _collect(targets, ["aws-prod"], ["iam", "cloudtrail", "s3"])
    out["B"] = (records, scan(records, targets, now=now))

    iam.delete_account_password_policy()
    records = _collect(targets, ["aws-prod"], ["iam"])
    out["C"] = (records, scan(records, targets, now=now))
    return out


def _status(phases: dict[str, tuple[list[ResourceRecord], list[Finding]]], rule_id: str, phase: str, key: str) -> str:
    records, findings = phases[phase]
    ids = {r.resource_id for r in records if r.tags.get("seed-id") == key or r.name == key}
    assert ids, f"phase {phase}: no resource with seed-id or name {key!r}"
    found = [f for f in findings if f.rule_id == rule_id and f.resource_id in ids]
    assert len(found) == 1, f"phase {phase}: {rule_id} gave {len(found)} findings for {key!r}"
    return found[0].status


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_trips_and_passes_on_the_emulated_estate(phases, rule_id: str) -> None:  # type: ignore[no-untyped-def]
    (fail_phase, fail_key), (pass_phase, pass_key) = CASES[rule_id]
    assert _status(phases, rule_id, fail_phase, fail_key) == "fail"
    assert _status(phases, rule_id, pass_phase, pass_key) == "pass"


def test_public_bucket_findings_carry_reasons_and_fixer(phases) -> None:  # type: ignore[no-untyped-def]
    _, findings = phases["A"]
    public = {f.resource_name: f for f in findings if f.rule_id == "aws_s3_bucket_not_public" and f.status == "fail"}
    assert public["rb-prod-public-website"].evidence["public_reasons"] == ["policy"]
    assert public["rb-prod-legacy-assets"].evidence["public_reasons"] == ["acl"]
    assert all(f.fixer == "aws.s3.block_public_access" and f.severity == "critical" for f in public.values())
