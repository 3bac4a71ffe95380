"""The remediate_findings runbook: fixers, runner, audit trail, DAG.

Everything runs against the emulators (moto, GCS emulator, Azurite) through the provider hooks.
Non-compliant resources are created here through the hooks; records come from the real inventory
listers and findings from the real rule engine, so fixers, rules and listers are checked against
each other: after a fix, a re-scan of the re-listed resource passes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from include.audit import AuditRecord, read_audit, write_audit
from include.changes import engine, report
from include.changes.model import NeedsInput, RequestError
from include.changes.runbook import ChangeSet, approval_of
from include.clouds.aws.clients import client_for
from include.compliance.remediation import runner
from include.compliance.remediation.registry import (
    RemediationError,
    all_fixers,
    get_fixer,
    permissions_for,
)
from include.records import ResourceRecord
from include.redaction import redact, scrub
from localdev.emulators import AZURITE_KEY
from tests.dagrun import start_dag

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AWS, GCP, AZURE = "aws_estate", "gcp_estate", "azure_estate"
ALL_TAGS = {"owner": "bob", "cost-center": "cc-42", "data-classification": "internal"}


# ---- hooks (the same ones production uses) ---------------------------------------------------------
# AWS clients come from include.clouds.aws.clients.client_for: the provider's S3Hook / RdsHook / AwsBaseHook, one
# session per connection (a fresh hook per call would parse the service model again, ~0.1-0.3 s of CPU each).
def s3() -> Any:
    return client_for(AWS, "s3")


def aws(service: str, region: str = "us-east-1") -> Any:
    return client_for(AWS, service, region)


def rds(region: str = "eu-west-1") -> Any:
    return client_for(AWS, "rds", region)


def gcs_client() -> Any:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    return GCSHook(gcp_conn_id=GCP).get_conn()


def blob_service() -> Any:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    return WasbHook(wasb_conn_id=AZURE).get_conn()


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _client_error() -> type[Exception]:
    from botocore.exceptions import ClientError

    return ClientError


# ---- non-compliant resources --------------------------------------------------------------------------
def make_bucket(name: str, tags: dict[str, str] | None = None) -> str:
    s3().create_bucket(Bucket=name)
    if tags:
        s3().put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    return name


def make_db(name: str, retention: int = 1, tags: dict[str, str] | None = None) -> str:
    rds().create_db_instance(
        DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
        MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1", BackupRetentionPeriod=retention,
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )
    return name


def make_instance(name: str) -> str:
    ec2 = aws("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}, {"Key": "owner", "Value": "alice"}]}])
    return name


def make_volume(name: str) -> str:
    aws("ec2").create_volume(AvailabilityZone="us-east-1a", Size=1, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": name}, {"Key": "owner", "Value": "alice"}]}])
    return name


def make_table(name: str) -> str:
    aws("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        Tags=[{"Key": "owner", "Value": "alice"}],
    )
    return name


def make_gcs_bucket(name: str, labels: dict[str, str] | None = None) -> str:
    bucket = gcs_client().create_bucket(name)
    if labels:
        bucket.labels = labels
        bucket.patch()
    return name


def make_container(name: str, public: str | None = "blob", metadata: dict[str, str] | None = None) -> str:
    blob_service().create_container(name, public_access=public, metadata=metadata)
    return name


# ---- independent reads (never through the fixer code) --------------------------------------------------
def pab_state(name: str) -> dict[str, bool]:
    try:
        return dict(s3().get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"])
    except _client_error() as exc:
        assert _code(exc) == "NoSuchPublicAccessBlockConfiguration"
        return {}


def encryption_state(name: str) -> dict[str, Any]:
    try:
        rule = s3().get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
    except _client_error() as exc:
        assert _code(exc) == "ServerSideEncryptionConfigurationNotFoundError"
        return {}
    return dict(rule["ApplyServerSideEncryptionByDefault"])


def versioning_state(name: str) -> str | None:
    return s3().get_bucket_versioning(Bucket=name).get("Status")


def retention_state(name: str) -> int:
    return int(rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["BackupRetentionPeriod"])


def s3_tags(name: str) -> dict[str, str]:
    try:
        return {t["Key"]: t.get("Value", "") for t in s3().get_bucket_tagging(Bucket=name)["TagSet"]}
    except _client_error() as exc:
        assert _code(exc) == "NoSuchTagSet"
        return {}


def ec2_tags(kind: str, name: str) -> dict[str, str]:
    found = aws("ec2").describe_tags(Filters=[{"Name": "resource-type", "Values": [kind]},
                                              {"Name": "tag:Name", "Values": [name]}])["Tags"]
    resource = found[0]["ResourceId"]
    tags = aws("ec2").describe_tags(Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"]
    return {t["Key"]: t["Value"] for t in tags}


def rds_tags(name: str) -> dict[str, str]:
    arn = rds().describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceArn"]
    return {t["Key"]: t["Value"] for t in rds().list_tags_for_resource(ResourceName=arn)["TagList"]}


def dynamodb_tags(name: str) -> dict[str, str]:
    arn = aws("dynamodb").describe_table(TableName=name)["Table"]["TableArn"]
    return {t["Key"]: t["Value"] for t in aws("dynamodb").list_tags_of_resource(ResourceArn=arn)["Tags"]}


def gcs_state(name: str) -> dict[str, Any]:
    bucket = gcs_client().get_bucket(name)
    return {"ubla": bucket.iam_configuration.uniform_bucket_level_access_enabled,
            "pap": bucket.iam_configuration.public_access_prevention, "labels": dict(bucket.labels or {})}


def container_state(name: str) -> dict[str, Any]:
    client = blob_service().get_container_client(name)
    return {"public": client.get_container_access_policy()["public_access"],
            "metadata": dict(client.get_container_properties().metadata or {})}


# ---- records from the real listers, findings from the real rule engine -----------------------------------
_SERVICES = {"aws": ["s3", "ec2", "rds", "dynamodb"], "gcp": ["storage"], "azure": ["storage"]}
_TARGETS = {"aws": "aws-prod", "gcp": "gcp-prod", "azure": "azure-prod"}


def inventory(cloud: str, services: list[str] | None = None) -> list[ResourceRecord]:
    from include.inventory.collect import collect_target
    from include.targets import load_targets

    target = load_targets().get(_TARGETS[cloud])
    result = collect_target(target, services=services or _SERVICES[cloud])
    assert not result.errors, result.errors
    return result.records


def record_of(records: list[ResourceRecord], resource_type: str, name: str) -> ResourceRecord:
    found = [r for r in records if r.resource_type == resource_type and name in (r.name, r.resource_id)]
    assert len(found) == 1, f"{resource_type} {name}: {[r.name for r in records if r.resource_type == resource_type]}"
    return found[0]


def scan(records: list[ResourceRecord], rules: list[str]) -> list[Any]:
    from include.compliance.engine import scan as engine_scan
    from include.targets import load_targets

    return engine_scan(records, load_targets(), now=datetime.now(UTC), rules=rules)


def statuses(findings: list[Any], resource_id: str) -> dict[str, str]:
    return {f.rule_id: f.status for f in findings if f.resource_id == resource_id}


# ---- registry ----------------------------------------------------------------------------------------
def test_registry_covers_every_fixer_the_rules_name() -> None:
    from include.compliance.registry import FIXERS, all_rules, contract_resource_types

    registered = {e.id for e in all_fixers()}
    assert set(FIXERS) <= registered
    contract = contract_resource_types()
    for entry in all_fixers():
        assert entry.permissions, entry
        assert set(entry.resource_types) <= contract, entry
    # every rule that names a fixer has one for each of its resource types
    gaps = set()
    for rule in all_rules():
        for resource_type in rule.meta.resource_types if rule.meta.fixer else ():
            try:
                get_fixer(rule.meta.fixer, resource_type)
            except RemediationError as exc:
                assert f"not {resource_type}" in str(exc)
                gaps.add((rule.meta.fixer, resource_type))
    assert gaps == set(), gaps


def test_fixer_table_in_docs_is_current() -> None:
    text = (PROJECT_ROOT / "docs" / "remediation.md").read_text()
    for entry in all_fixers():
        row = (f"| `{entry.id}` | {entry.cloud} | {', '.join(f'`{t}`' for t in entry.resource_types)} | "
               f"{', '.join(f'`{p}`' for p in entry.permissions)} |")
        assert row in text, f"docs/remediation.md: update the row of {entry.id} ({entry.cloud}):\n{row}"


def test_permissions_per_fixer_and_cloud() -> None:
    assert permissions_for(["aws.s3.block_public_access"]) == [
        "s3:GetBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"]
    gcs = permissions_for(["gcp.gcs.uniform_access_and_pap"], cloud="gcp")
    assert gcs == ["storage.buckets.get", "storage.buckets.update"]
    assert "compute.instances.setLabels" in permissions_for(["tags.required"], cloud="gcp")
    aws_tags = permissions_for(["tags.required"], cloud="aws")
    assert "s3:PutBucketTagging" in aws_tags and "ec2:CreateTags" in aws_tags
    assert not any(p.startswith("storage.") for p in aws_tags)
    with pytest.raises(RemediationError, match="unknown fixer"):
        get_fixer("aws.s3.nope", "aws.s3.bucket")
    with pytest.raises(RemediationError, match="not gcp.storage.bucket"):
        get_fixer("aws.s3.versioning", "gcp.storage.bucket")


# ---- the idempotency matrix: every fixer, against the emulators ----------------------------------------
@dataclass
class Case:
    id: str
    fixer: str
    cloud: str
    resource_type: str
    make: Callable[[], str]
    state: Callable[[str], Any]
    compliant: Callable[[Any], bool]
    rules: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    services: list[str] | None = None


def _tags_ok(tags: dict[str, str]) -> bool:
    canon = {k.lower().replace("_", "-"): v for k, v in tags.items()}
    # the existing owner is kept; the missing keys get the run's values
    return canon.get("owner") == "alice" and canon.get("cost-center") == "cc-42" \
        and canon.get("data-classification") == "internal"


CASES = [
    Case("s3-block-public-access", "aws.s3.block_public_access", "aws", "aws.s3.bucket",
         lambda: make_bucket("pab-bucket"), pab_state,
         lambda s: len(s) == 4 and all(s.values()), ["aws_s3_bucket_public_access_block"], services=["s3"]),
    Case("s3-default-encryption", "aws.s3.default_encryption", "aws", "aws.s3.bucket",
         lambda: make_bucket("enc-bucket"), encryption_state,
         lambda s: s.get("SSEAlgorithm") == "AES256", ["aws_s3_bucket_default_encryption"], services=["s3"]),
    Case("s3-versioning", "aws.s3.versioning", "aws", "aws.s3.bucket",
         lambda: make_bucket("ver-bucket"), versioning_state,
         lambda s: s == "Enabled", ["aws_s3_bucket_versioning"], services=["s3"]),
    Case("rds-backup-retention", "aws.rds.backup_retention", "aws", "aws.rds.instance",
         lambda: make_db("db-short"), retention_state,
         lambda s: s == 9, ["aws_rds_instance_backup_retention"], {"retention_days": 9, "verify_wait": 0}, services=["rds"]),
    Case("gcs-uniform-and-pap", "gcp.gcs.uniform_access_and_pap", "gcp", "gcp.storage.bucket",
         lambda: make_gcs_bucket("acl-bucket"), gcs_state,
         lambda s: s["ubla"] is True and s["pap"] == "enforced",
         ["gcp_storage_bucket_uniform_access", "gcp_storage_bucket_public_access_prevention"]),
    Case("azure-private-access", "azure.blob.private_access", "azure", "azure.storage.container",
         lambda: make_container("public-container", "container"), container_state,
         lambda s: s["public"] is None, ["azure_storage_container_not_public"]),
    Case("tags-s3", "tags.required", "aws", "aws.s3.bucket",
         lambda: make_bucket("tag-bucket", {"owner": "alice", "app": "x"}), s3_tags,
         lambda s: _tags_ok(s) and s.get("app") == "x", ["aws_required_tags"], {"tag_values": ALL_TAGS},
         services=["s3"]),
    Case("tags-ec2-instance", "tags.required", "aws", "aws.ec2.instance",
         lambda: make_instance("tag-vm"), lambda n: ec2_tags("instance", n),
         _tags_ok, ["aws_required_tags"], {"tag_values": ALL_TAGS}, services=["ec2"]),
    Case("tags-ec2-volume", "tags.required", "aws", "aws.ec2.volume",
         lambda: make_volume("tag-vol"), lambda n: ec2_tags("volume", n),
         _tags_ok, ["aws_required_tags"], {"tag_values": ALL_TAGS}, services=["ec2"]),
    Case("tags-rds", "tags.required", "aws", "aws.rds.instance",
         lambda: make_db("db-tags", retention=7, tags={"owner": "alice"}), rds_tags,
         _tags_ok, ["aws_required_tags"], {"tag_values": ALL_TAGS}, services=["rds"]),
    Case("tags-dynamodb", "tags.required", "aws", "aws.dynamodb.table",
         lambda: make_table("tag-table"), dynamodb_tags,
         _tags_ok, ["aws_required_tags"], {"tag_values": ALL_TAGS}, services=["dynamodb"]),
    Case("labels-gcs", "tags.required", "gcp", "gcp.storage.bucket",
         lambda: make_gcs_bucket("label-bucket", {"owner": "alice"}), lambda n: gcs_state(n)["labels"],
         _tags_ok, ["gcp_required_labels"], {"tag_values": ALL_TAGS}),
    Case("metadata-azure", "tags.required", "azure", "azure.storage.container",
         lambda: make_container("meta-container", None, {"owner": "alice"}), lambda n: container_state(n)["metadata"],
         lambda s: _tags_ok(s) and "cost_center" in s, ["azure_required_metadata"], {"tag_values": ALL_TAGS}),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_fixer_idempotency_matrix(case: Case, clean_clouds: Any, data_dir: Path) -> None:
    name = case.make()
    record = record_of(inventory(case.cloud, case.services), case.resource_type, name)
    initial = case.state(name)
    assert not case.compliant(initial)
    assert "fail" in statuses(scan([record], case.rules), record.resource_id).values()

    fixer = get_fixer(case.fixer, case.resource_type).create(case.options)
    # plan (= what a dry run does): reads only, says exactly what it would do
    change = fixer.plan(record)
    assert change is not None and change.before != change.after and change.action and change.summary
    assert change.to_dict()["key"] == change.key
    assert case.state(name) == initial, "planning changed the cloud"
    assert fixer.verify(record) is False

    # apply: fixes it (checked with an independent read through the hook)
    applied = fixer.apply(change)
    assert applied.changed is True
    fixed = case.state(name)
    assert case.compliant(fixed), fixed
    assert fixer.verify(record) is True

    # idempotent: a second plan finds nothing to do; a second apply of the same change writes nothing
    assert fixer.plan(record) is None
    again = get_fixer(case.fixer, case.resource_type).create(case.options)
    assert again.plan(record) is None
    assert again.apply(change).changed is False
    assert case.state(name) == fixed

    # re-listed and re-scanned, the rules the fixer serves now pass
    relisted = record_of(inventory(case.cloud, case.services), case.resource_type, name)
    assert set(statuses(scan([relisted], case.rules), relisted.resource_id).values()) == {"pass"}


def test_s3_encryption_with_kms_key(clean_clouds: Any, data_dir: Path) -> None:
    key_id = aws("kms").create_key(Description="remediation test")["KeyMetadata"]["KeyId"]
    make_bucket("kms-bucket")
    record = record_of(inventory("aws", ["s3"]), "aws.s3.bucket", "kms-bucket")
    fixer = get_fixer("aws.s3.default_encryption", "aws.s3.bucket").create({"kms_key_id": key_id})
    change = fixer.plan(record)
    assert change is not None and change.after == {"sse_algorithm": "aws:kms", "kms_key": key_id}
    assert fixer.apply(change).changed
    assert encryption_state("kms-bucket") == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id}
    assert fixer.plan(record) is None
    # a KMS-encrypted bucket already complies when no key is asked for (never downgraded to AES256)
    assert get_fixer("aws.s3.default_encryption", "aws.s3.bucket").create({}).plan(record) is None


def test_rds_retention_is_never_lowered(clean_clouds: Any, data_dir: Path) -> None:
    make_db("db-long", retention=14)
    record = record_of(inventory("aws", ["rds"]), "aws.rds.instance", "db-long")
    assert get_fixer("aws.rds.backup_retention", "aws.rds.instance").create({"retention_days": 7}).plan(record) is None
    with pytest.raises(RemediationError, match="1..35"):
        get_fixer("aws.rds.backup_retention", "aws.rds.instance").create({"retention_days": 36})


def test_tags_never_overwrite_and_fill_empty_values(clean_clouds: Any, data_dir: Path) -> None:
    make_bucket("tagged", {"Owner": "alice", "cost_center": ""})
    record = record_of(inventory("aws", ["s3"]), "aws.s3.bucket", "tagged")
    fixer = get_fixer("tags.required", "aws.s3.bucket").create({"tag_values": ALL_TAGS})
    change = fixer.plan(record)
    assert change is not None
    # Owner (any case) counts as owner; the empty cost_center is filled under its own name, no twin key
    assert change.request == {"add": {"cost_center": "cc-42", "data-classification": "internal"}}
    # someone sets data-classification between plan and apply: their value is kept
    s3().put_bucket_tagging(Bucket="tagged", Tagging={"TagSet": [
        {"Key": "Owner", "Value": "alice"}, {"Key": "cost_center", "Value": ""},
        {"Key": "data-classification", "Value": "pii"}]})
    assert fixer.apply(change).changed
    assert s3_tags("tagged") == {"Owner": "alice", "cost_center": "cc-42", "data-classification": "pii"}
    with pytest.raises(NeedsInput, match="tag_values"):
        get_fixer("tags.required", "aws.s3.bucket").create({}).plan(record)
    with pytest.raises(RemediationError, match="not valid on Google Cloud"):
        get_fixer("tags.required", "gcp.storage.bucket").create({"tag_values": {"Owner": "Bob"}}).desired(
            {"tags": {}}, record)


# ---- compute tags: no emulator serves them, so a stateful fake of the documented REST API ---------------
# Only the HTTP transport is replaced: the provider hooks, the Google discovery client / the Azure SDK
# pipeline (serialisation, LRO polling) and the fixer run for real.
GCP_PROJECT, AZ_SUB = "rb-fix-project", "11111111-2222-3333-4444-555555555555"


def _compute_targets() -> Any:
    from include.targets import parse_targets

    return parse_targets(json.dumps({"targets": [
        {"name": "gcp-fix", "cloud": "gcp", "conn_id": "gcp_fix", "project": GCP_PROJECT, "regions": ["europe-west1"]},
        {"name": "azure-fix", "cloud": "azure", "conn_id": "azure_fix", "subscription": AZ_SUB,
         "storage_account": "rbfix", "regions": ["westeurope"]},
    ]}))


class FakeGce:
    """Compute Engine instances.get / setLabels (with labelFingerprint) / zoneOperations.wait."""

    def __init__(self, labels: dict[str, str]) -> None:
        base = f"https://www.googleapis.com/compute/v1/projects/{GCP_PROJECT}/zones/europe-west1-b"
        self.instance = {"kind": "compute#instance", "id": "4518296723617890123", "name": "web-eu-1",
                         "zone": base, "status": "RUNNING", "labels": dict(labels), "labelFingerprint": "fp-0",
                         "selfLink": f"{base}/instances/web-eu-1"}
        self.calls: list[tuple[str, str, Any]] = []
        self.version = 0
        self.race: dict[str, str] | None = None  # labels another writer sets just before our setLabels

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        from urllib.parse import urlparse

        import httplib2

        path = urlparse(uri).path
        sent = json.loads(body) if body else None
        self.calls.append((method, path, sent))
        operation = {"kind": "compute#operation", "id": "7", "name": "operation-setlabels-1",
                     "zone": self.instance["zone"], "operationType": "setLabels",
                     "targetLink": self.instance["selfLink"], "progress": 0, "status": "RUNNING"}
        if method == "GET" and path.endswith("/instances/web-eu-1"):
            status, answer = 200, self.instance
        elif method == "POST" and path.endswith("/instances/web-eu-1/setLabels"):
            if self.race is not None:
                self.instance = {**self.instance, "labels": self.race, "labelFingerprint": "fp-other"}
                self.race = None
            if sent["labelFingerprint"] != self.instance["labelFingerprint"]:
                status, answer = 412, {"error": {"code": 412, "message": "Labels fingerprint either invalid or "
                                                 "resource labels have changed", "errors": [
                                                     {"reason": "conditionNotMet", "domain": "global"}]}}
            else:
                self.version += 1
                self.instance = {**self.instance, "labels": sent["labels"], "labelFingerprint": f"fp-{self.version}"}
                status, answer = 200, operation
        elif method == "POST" and path.endswith("/operations/operation-setlabels-1/wait"):
            status, answer = 200, {**operation, "status": "DONE", "progress": 100}
        else:
            status, answer = 404, {"error": {"code": 404, "message": f"unexpected {method} {path}"}}
        return httplib2.Response({"status": str(status)}), json.dumps(answer).encode()


@pytest.fixture
def fake_gce(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], FakeGce]:
    conn = {"conn_type": "google_cloud_platform", "extra": {"is_anonymous": True, "project": GCP_PROJECT}}
    monkeypatch.setenv("AIRFLOW_CONN_GCP_FIX", json.dumps(conn))

    def install(labels: dict[str, str]) -> FakeGce:
        fake = FakeGce(labels)
        monkeypatch.setattr("airflow.providers.google.common.hooks.base_google.build_http", lambda: fake)
        return fake

    return install


def test_gce_instance_labels_fixer(fake_gce: Any) -> None:
    fake = fake_gce({"owner": "web-team", "env": "prod"})
    record = ResourceRecord(cloud="gcp", target="gcp-fix", account=GCP_PROJECT, region="europe-west1",
                            service="compute", resource_type="gcp.compute.instance", name="web-eu-1",
                            resource_id=f"//compute.googleapis.com/projects/{GCP_PROJECT}/zones/europe-west1-b"
                                        "/instances/web-eu-1")
    targets = _compute_targets()
    fixer = get_fixer("tags.required", record.resource_type).create({"tag_values": ALL_TAGS}, targets)
    change = fixer.plan(record)
    assert change is not None and change.action == "compute.instances.setLabels"
    assert change.request == {"add": {"cost-center": "cc-42", "data-classification": "internal"}}
    assert [c[0] for c in fake.calls] == ["GET"], "planning only reads"
    assert fixer.apply(change).changed
    sets = [c for c in fake.calls if c[1].endswith("/setLabels")]
    assert sets == [("POST", f"/compute/v1/projects/{GCP_PROJECT}/zones/europe-west1-b/instances/web-eu-1/setLabels",
                     {"labels": {"owner": "web-team", "env": "prod", "cost-center": "cc-42",
                                 "data-classification": "internal"}, "labelFingerprint": "fp-0"})]
    assert any(c[1].endswith("/wait") for c in fake.calls), "the zone operation is waited for"
    assert fixer.verify(record) and fixer.plan(record) is None
    calls = len(fake.calls)
    assert fixer.apply(change).changed is False and not any(c[1].endswith("/setLabels") for c in fake.calls[calls:])

    # someone relabels between our read and our write: the fingerprint makes GCE refuse, nothing lost
    fake = fake_gce({"owner": "web-team"})
    fake.race = {"owner": "ops"}  # another writer, just before our setLabels arrives
    fixer = get_fixer("tags.required", record.resource_type).create({"tag_values": ALL_TAGS}, targets)
    with pytest.raises(Exception, match="412"):
        fixer.apply(fixer.plan(record))
    assert fake.instance["labels"] == {"owner": "ops"}


@pytest.fixture
def fake_arm(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], dict[str, Any]]:
    """A VM behind Azure Resource Manager GET / PATCH (tags), under the real azure-core pipeline."""
    import io

    import requests
    from azure.core.credentials import AccessToken
    from azure.core.pipeline.transport import RequestsTransport
    from azure.mgmt.compute import ComputeManagementClient
    from requests.structures import CaseInsensitiveDict

    conn = {"conn_type": "azure_compute", "login": "00000000-aaaa-bbbb-cccc-000000000001", "password": "x",
            "extra": {"tenantId": "00000000-aaaa-bbbb-cccc-000000000002", "subscriptionId": AZ_SUB}}
    monkeypatch.setenv("AIRFLOW_CONN_AZURE_FIX", json.dumps(conn))

    class Token:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            return AccessToken("fix-test-token", 4102444800)

    def install(tags: dict[str, str]) -> dict[str, Any]:
        vm_id = f"/subscriptions/{AZ_SUB}/resourceGroups/rg-web-prod/providers/Microsoft.Compute/virtualMachines/vm-web-01"
        state: dict[str, Any] = {"calls": [], "vm": {
            "name": "vm-web-01", "id": vm_id, "type": "Microsoft.Compute/virtualMachines", "location": "westeurope",
            "tags": dict(tags), "properties": {"vmId": "0f4a8c2e", "provisioningState": "Succeeded",
                                               "hardwareProfile": {"vmSize": "Standard_D2s_v5"}}}}

        class Adapter(requests.adapters.BaseAdapter):
            def send(self, request: Any, **kwargs: Any) -> requests.Response:
                from urllib.parse import urlparse

                path = urlparse(request.url).path
                sent = json.loads(request.body) if request.body else None
                state["calls"].append((request.method, path, sent))
                if path.lower() != vm_id.lower():
                    status, body = 404, {"error": {"code": "ResourceNotFound", "message": path}}
                elif request.method == "PATCH":
                    # ARM PATCH of tags replaces the VM's tag set with the one sent
                    state["vm"] = {**state["vm"], "tags": dict(sent.get("tags") or {})}
                    status, body = 200, state["vm"]
                else:
                    status, body = 200, state["vm"]
                content = json.dumps(body).encode()
                response = requests.Response()
                response.status_code, response.reason = status, "OK" if status == 200 else "Error"
                response._content, response.raw = content, io.BytesIO(content)
                response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8"})
                response.url, response.request, response.encoding = request.url, request, "utf-8"
                return response

            def close(self) -> None:
                pass

        def client_factory(credential: Any, subscription_id: str, **kwargs: Any) -> Any:
            session = requests.Session()
            session.mount("https://", Adapter())
            return ComputeManagementClient(credential=Token(), subscription_id=subscription_id, retry_total=0,
                                           transport=RequestsTransport(session=session, session_owner=False))

        monkeypatch.setattr("airflow.providers.microsoft.azure.hooks.compute.ComputeManagementClient", client_factory)
        return state

    return install


def test_azure_vm_tags_fixer(fake_arm: Any) -> None:
    state = fake_arm({"owner": "web-team", "Cost_Center": ""})
    record = ResourceRecord(cloud="azure", target="azure-fix", account=AZ_SUB, region="westeurope",
                            service="compute", resource_type="azure.compute.vm", name="vm-web-01",
                            resource_id=state["vm"]["id"])
    fixer = get_fixer("tags.required", record.resource_type).create({"tag_values": ALL_TAGS}, _compute_targets())
    change = fixer.plan(record)
    assert change is not None
    # VM tags keep '-' (only container metadata needs '_'); the empty Cost_Center is filled in place
    assert change.request == {"add": {"Cost_Center": "cc-42", "data-classification": "internal"}}
    assert [c[0] for c in state["calls"]] == ["GET"], "planning only reads"
    assert fixer.apply(change).changed
    patches = [c for c in state["calls"] if c[0] == "PATCH"]
    assert len(patches) == 1 and patches[0][2] == {"tags": {
        "owner": "web-team", "Cost_Center": "cc-42", "data-classification": "internal"}}
    assert fixer.verify(record) and fixer.plan(record) is None
    assert fixer.apply(change).changed is False
    assert len([c for c in state["calls"] if c[0] == "PATCH"]) == 1, "a second apply writes nothing"


# ---- the runner: findings -> plan -> apply -> verify, failures isolated, audited -------------------------
def _save_scan(records: list[ResourceRecord], rules: list[str]) -> list[Any]:
    from include.compliance.store import save_scan

    findings = scan(records, rules)
    save_scan(findings, scanned_at=datetime.now(UTC))
    return [f for f in findings if f.status == "fail"]


class FakeTI:
    """The task instance's XCom push, as the plan task uses it (approval subject and body)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


#: Secret-looking parameters a caller might pass: the audit trail must never show their values.
_SECRET_PARAMS = {"api_token": "tok-123456789", "conn": f"AccountKey={AZURITE_KEY};x=1"}


def task_context(run_id: str, params: dict[str, Any], user: str = "tester") -> dict[str, Any]:
    """What Airflow gives the runbook's tasks: the run, its conf / params, the DAG's declared params."""
    from types import SimpleNamespace

    declared = {**{k: None for k in ("dry_run", "finding_ids", "rule", "resources", "tag_values", "retention_days",
                                     "kms_key_id", "reason", "max_concurrency", "max_errors", "idempotency_key")},
                **{k: None for k in _SECRET_PARAMS}}
    return {
        "run_id": run_id, "ti": FakeTI(), "params": dict(params),
        "dag": SimpleNamespace(dag_id="remediate_findings", params=declared),
        "dag_run": SimpleNamespace(dag_id="remediate_findings", run_id=run_id, conf=dict(params), run_type="manual",
                                   triggering_user_name=user),
    }


APPROVE = {"chosen_options": ["Approve"], "approved": True, "responded_by": "carol", "timed_out": False}


def run_remediation(run_id: str, **params: Any) -> dict[str, Any]:
    """The runbook's tasks in the DAG's order, through the same functions (approved by carol)."""
    ctx = task_context(run_id, {**params, **_SECRET_PARAMS})
    planned = runner.REMEDIATION.plan(ctx, runner.resolve_request(ctx))
    if not ChangeSet.from_dict(planned).needs_approval:
        runner.REMEDIATION.report_plan(ctx, planned)
    else:
        assert ctx["ti"].pushed["approval_subject"].startswith("Apply ")
        applied = runner.REMEDIATION.apply(ctx, planned, APPROVE)
        verified = runner.REMEDIATION.verify(ctx, applied)
        runner.REMEDIATION.report(ctx, planned=planned, decision=APPROVE, applied=applied, verified=verified)
    return dict(json.loads(report.result_path(runner.WORDING, run_id).read_text()))


def test_remediate_by_finding_ids_dry_run_then_apply(clean_clouds: Any, data_dir: Path) -> None:
    for name in ("fleet-a", "fleet-b"):
        make_bucket(name)
    make_container("fleet-c", "container")
    records = inventory("aws", ["s3"]) + inventory("azure")
    failing = _save_scan(records, ["aws_s3_bucket_versioning", "aws_s3_bucket_public_access_block",
                                   "azure_storage_container_not_public"])
    ids = [f.finding_id for f in failing]
    assert len(ids) == 5

    dry = run_remediation("dry", finding_ids=ids)
    assert dry["status"] == "dry_run" and dry["totals"]["planned_changes"] == 5
    assert all("->" in line for line in dry["plan"]), dry["plan"]
    assert versioning_state("fleet-a") is None and pab_state("fleet-b") == {}
    assert container_state("fleet-c")["public"] == "container"
    assert {r.outcome for r in read_audit(run_id="dry")} == {"skipped"}

    done = run_remediation("real", finding_ids=ids, dry_run=False, reason="CHG-1")
    assert done["status"] == "fixed", done["failed"]
    assert done["totals"] == {**done["totals"], "changed": 5, "verified": 5, "failed": 0, "not_verified": 0}
    assert done["approver"] == "carol"
    assert versioning_state("fleet-a") == "Enabled" and all(pab_state("fleet-b").values())
    assert container_state("fleet-c")["public"] is None

    trail = read_audit(run_id="real")
    assert {(r.step, r.outcome) for r in trail} == {("plan", "skipped"), ("apply", "changed"), ("verify", "unchanged")}
    assert len(trail) == 15 and all(r.actor == "tester" for r in trail)
    assert all(r.approver == "carol" for r in trail if r.step != "plan")
    applies = [r for r in trail if r.step == "apply"]
    assert all(r.before != r.after for r in applies)
    text = "".join(p.read_text() for p in (data_dir / "audit").glob("*.jsonl"))
    assert AZURITE_KEY not in text and "tok-123456789" not in text and "testing" not in text

    # the same request again (a new key) changes nothing: everything is already compliant
    again = run_remediation("again", finding_ids=ids, dry_run=False, reason="CHG-1")
    assert again["status"] == "compliant" and again["totals"]["planned_changes"] == 0
    assert again["totals"]["changed"] == 0


def test_a_failing_fixer_leaves_the_others_fixed(clean_clouds: Any, data_dir: Path) -> None:
    from include.audit import AuditContext

    for name in ("keep-1", "gone-2", "keep-3"):
        make_bucket(name)
    ids = [f.finding_id for f in _save_scan(inventory("aws", ["s3"]), ["aws_s3_bucket_versioning"])]
    request = runner.Request(finding_ids=tuple(ids), dry_run=False, reason="CHG-2")
    audit = AuditContext(runbook="remediate_findings", run_id="partial", actor="tester", dry_run=False,
                         approver="carol")
    resolve = runner.resolver(request.options)
    items = engine.plan_items(runner.resolve(request), resolve, audit=audit)
    assert len(engine.changes(items)) == 3
    s3().delete_bucket(Bucket="gone-2")  # deleted between plan (approval) and apply
    items = engine.apply_items(items, resolve, rate=request.rate, audit=audit)
    items = engine.verify_items(items, resolve, audit=audit)
    by_name = {i.record.name: i for i in items}
    assert by_name["keep-1"].outcome == by_name["keep-3"].outcome == "changed"
    assert by_name["gone-2"].outcome == "failed" and "NoSuchBucket" in (by_name["gone-2"].apply_error or "")
    assert versioning_state("keep-1") == versioning_state("keep-3") == "Enabled"
    result = report.summarise(items, runner.WORDING, status="failed", run_id="partial", dry_run=False,
                              request=request.to_dict())
    assert [f["resource_id"] for f in result["failed"]] == ["arn:aws:s3:::gone-2"]
    assert [f["resource_id"] for f in result["not_verified"]] == ["arn:aws:s3:::gone-2"]
    failed = [r for r in read_audit(run_id="partial") if r.outcome == "failed"]
    assert {(r.step, r.resource) for r in failed} == {("apply", "arn:aws:s3:::gone-2"), ("verify", "arn:aws:s3:::gone-2")}


def test_a_bucket_gone_before_a_dry_run_fails_the_plan(clean_clouds: Any, data_dir: Path) -> None:
    """A plan error that is not missing input (here: the resource no longer exists) fails a dry run too."""
    from airflow.sdk.exceptions import AirflowFailException

    for name in ("still-here", "vanished"):
        make_bucket(name)
    ids = [f.finding_id for f in _save_scan(inventory("aws", ["s3"]), ["aws_s3_bucket_versioning"])]
    s3().delete_bucket(Bucket="vanished")
    with pytest.raises(AirflowFailException, match="could not be planned") as failed:
        run_remediation("dry-gone", finding_ids=ids)
    assert "vanished" in str(failed.value) and "NoSuchBucket" in str(failed.value)
    saved = json.loads(report.result_path(runner.WORDING, "dry-gone").read_text())
    assert saved["status"] == "plan_failed" and [f["resource_id"] for f in saved["failed"]] == ["arn:aws:s3:::vanished"]
    assert saved["needs_input"] == [] and versioning_state("still-here") is None


def test_unknown_finding_id_and_unknown_parameter_change_nothing(clean_clouds: Any, data_dir: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    make_bucket("untouched")
    known = [f.finding_id for f in _save_scan(inventory("aws", ["s3"]), ["aws_s3_bucket_versioning"])]
    bogus = "aws_s3_bucket_versioning:0123456789abcdef"
    with pytest.raises(AirflowFailException, match=f"unknown finding ids.*{bogus}"):
        run_remediation("bogus", finding_ids=[known[0], bogus], dry_run=False, reason="x")
    # a typo in a parameter name is refused, naming the allowed ones (never silently ignored)
    with pytest.raises(AirflowFailException, match="unknown parameter.*'finding_id'.*allowed:.*finding_ids"):
        run_remediation("typo", finding_id=known, dry_run=False, reason="x")
    assert versioning_state("untouched") is None
    assert read_audit(run_id="bogus") == [] and read_audit(run_id="typo") == []


def test_request_validation_and_rule_form(clean_clouds: Any, data_dir: Path) -> None:
    from include.inventory.store import publish, staging_path, write_jsonl

    with pytest.raises(RemediationError, match="nothing selected"):
        runner.Request.from_params({"dry_run": True})
    with pytest.raises(RemediationError, match="not both"):
        runner.Request.from_params({"finding_ids": ["a:1"], "rule": "aws_s3_bucket_versioning", "resources": ["x"]})
    with pytest.raises(RemediationError, match="without resources"):
        runner.Request.from_params({"rule": "aws_s3_bucket_versioning"})
    with pytest.raises(RemediationError, match="1..35"):
        runner.Request.from_params({"finding_ids": ["a"], "retention_days": 0})

    make_bucket("by-rule")
    records = inventory("aws", ["s3"])
    staged = staging_path("inv-1", "aws-prod")
    write_jsonl(staged, records)
    publish("inv-1", [staged], [{"target": "aws-prod", "errors": []}])

    ok = runner.resolve(runner.Request(rule="aws_s3_bucket_versioning", resources=("by-rule",)))
    assert [(i.step, i.resource_id) for i in ok] == [("aws.s3.versioning", "arn:aws:s3:::by-rule")]
    with pytest.raises(RemediationError, match="unknown resource 'nope'"):
        runner.resolve(runner.Request(rule="aws_s3_bucket_versioning", resources=("by-rule", "nope")))
    with pytest.raises(RemediationError, match="has no fixer"):
        runner.resolve(runner.Request(rule="aws_s3_bucket_access_logging", resources=("by-rule",)))
    with pytest.raises(RemediationError, match="unknown rule"):
        runner.resolve(runner.Request(rule="aws_no_such_rule", resources=("by-rule",)))
    with pytest.raises(RemediationError, match="needs tag_values"):
        runner.resolve(runner.Request(rule="aws_required_tags", resources=("by-rule",), dry_run=False, reason="x"))
    # a dry run without tag_values still plans, and says what a real run would need
    dry = runner.Request(rule="aws_required_tags", resources=("by-rule",))
    (entry,) = engine.plan_items(runner.resolve(dry), runner.resolver(dry.options))
    assert entry.needs_input and "tag_values" in (entry.plan_error or "")
    summary = report.summarise([entry], runner.WORDING, status="dry_run", run_id="r", dry_run=True,
                               request=dry.to_dict())
    assert summary["failed"] == [] and [n["resource_id"] for n in summary["needs_input"]] == [entry.resource_id]
    assert engine.plan_errors([entry], include_needs_input=False) == []
    assert "NEEDS INPUT" in report.plan_lines([entry], runner.WORDING)[0]
    assert versioning_state("by-rule") is None and s3_tags("by-rule") == {}


# ---- audit trail -------------------------------------------------------------------------------------
def test_audit_redacts_secrets_and_appends_whole_lines(data_dir: Path) -> None:
    secret_url = "postgresql://admin:hunter2@db:5432/x"
    record = AuditRecord(
        runbook="rb", run_id="r1", actor="api", step="apply", action="x", outcome="changed", dry_run=False,
        params={"password": "p4ss", "client_secret": "abc", "kms_key_id": "k-1", "tag_values": {"owner": "a"},
                "url": secret_url, "sas_url": "https://a/b?sv=1&sig=SIGNATURE"},
        error=f"failed with AccountKey={AZURITE_KEY}; Bearer abcdefghijkl",
    )
    assert record.params["password"] == record.params["client_secret"] == record.params["sas_url"] == "***"
    assert record.params["kms_key_id"] == "k-1" and record.params["tag_values"] == {"owner": "a"}
    assert "hunter2" not in record.params["url"] and AZURITE_KEY not in (record.error or "")
    assert "abcdefghijkl" not in (record.error or "")
    assert scrub("https://h/p?sig=abc&se=1") == "https://h/p?sig=***&se=1"
    assert redact({"nested": [{"token": "t"}]}) == {"nested": [{"token": "***"}]}
    with pytest.raises(ValueError, match="outcome"):
        AuditRecord(runbook="rb", run_id="r", actor="a", step="s", action="a", outcome="done", dry_run=True)  # type: ignore[arg-type]

    def writer(n: int) -> None:
        for i in range(50):
            write_audit(AuditRecord(runbook="rb", run_id=f"t{n}", actor="a", step="apply", action="x" * 3000,
                                    outcome="unchanged", dry_run=False, resource=f"r{i}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_audit(record)
    everything = read_audit(runbook="rb")
    assert len(everything) == 201  # every line parsed: no interleaving
    assert len(read_audit(run_id="t2")) == 50 and read_audit(run_id="r1")[0].params["password"] == "***"
    assert read_audit(since="2999-01-01") == []


# ---- the DAG -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "remediate_findings.py"))
    assert not bag.import_errors
    return bag.dags["remediate_findings"]


def test_dag_wiring_and_approval_gate(dag: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert dag.dag_id == "remediate_findings" and dag.is_paused_upon_creation is False
    assert type(dag.timetable).__name__ == "NullTimetable", "triggered by hand or API only"
    order = ["resolve_targets", "plan_changes", "choose_path", "report_plan", "approve_changes",
             "apply_changes", "verify_changes", "report"]
    assert sorted(dag.task_ids) == sorted(order)
    down = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert down["choose_path"] == {"report_plan", "approve_changes"}
    assert down["approve_changes"] == {"apply_changes"}  # Reject skips exactly apply_changes (and so the rest)
    assert down["apply_changes"] == {"verify_changes"} and down["verify_changes"] == {"report"}
    approve = dag.get_task("approve_changes")
    assert isinstance(approve, ApprovalOperator)
    assert approve.options == ["Approve", "Reject"] and approve.defaults == ["Reject"]  # timeout = Reject
    assert approve.response_timeout is not None and approve.retries >= 1
    assert "plan_changes" in approve.subject and "approval_body" in approve.body
    assert str(dag.get_task("report").trigger_rule) in ("all_done", "TriggerRule.ALL_DONE")
    params = dag.params
    assert params["dry_run"] is True and params["retention_days"] == 7
    schema = {k: params.get_param(k).schema for k in params}
    assert schema["retention_days"]["minimum"] == 1 and schema["retention_days"]["maximum"] == 35
    assert schema["finding_ids"]["type"] == ["null", "array"] and schema["tag_values"]["type"] == ["null", "object"]
    assert "## Steps" in dag.doc_md and "**Owner:**" in dag.doc_md


def test_approval_decision_recorded_and_enforced() -> None:
    from include.approval import RecordedApprovalOperator, decision_from_event

    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    approved = decision_from_event({"chosen_options": ["Approve"], "params_input": {}, "responded_at": at,
                                    "responded_by_user": {"id": "u1", "name": "carol"}})
    assert approved == {"chosen_options": ["Approve"], "approved": True, "responded_by": "carol",
                        "responded_at": "2026-11-28T12:00:00+00:00", "timed_out": False}
    timeout = decision_from_event({"chosen_options": ["Reject"], "params_input": {}, "responded_at": at,
                                   "responded_by_user": None, "timedout": True})
    assert timeout["approved"] is False and timeout["responded_by"] is None and timeout["timed_out"] is True
    assert approval_of(approved, require_approved=True) == "carol"
    with pytest.raises(RequestError, match="not approved"):
        approval_of(timeout, require_approved=True)
    with pytest.raises(RequestError, match="no approval"):
        approval_of(None, require_approved=True)
    assert approval_of(timeout) is None

    # the decision is pushed before the stock operator skips downstream tasks on Reject
    pushed: dict[str, Any] = {}

    class FakeTI:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    op = RecordedApprovalOperator(task_id="approve", subject="s")  # no downstream: nothing to skip
    result = op.execute_complete({"ti": FakeTI(), "task": op}, {
        "chosen_options": ["Reject"], "params_input": {}, "responded_at": at,
        "responded_by_user": {"id": "u2", "name": "dave"}})
    assert result["chosen_options"] == ["Reject"]
    assert pushed["decision"]["responded_by"] == "dave" and pushed["decision"]["approved"] is False


# ---- end to end through Airflow (dag.test in a child process, killed on timeout) -------------------------
def _wait_for_approval_request(deadline: float) -> str:
    """The run id once approve_changes is parked in awaiting_input."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == "remediate_findings", TaskInstance.task_id == "approve_changes",
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT))
            if ti is not None:
                return str(ti.run_id)
        time.sleep(0.5)
    raise AssertionError("approve_changes never reached awaiting_input")


def _answer_approval(run_id: str, option: str, user: str) -> None:
    """Answer through the REST API's own handler (PATCH .../hitlDetails), as a signed-in user would."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    time.sleep(2.5)  # Airflow 3.3.2: an answer within ~1 s of waiting can fail the task
    with create_session() as session:
        update_hitl_detail(
            dag_id="remediate_findings", dag_run_id=run_id, task_id="approve_changes",
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
            user=SimpleAuthManagerUser(username=user, role="user"), session=session, map_index=-1,
        )


def _let_approval_time_out(run_id: str) -> None:
    """Move the response deadline into the past and run the scheduler's own timeout sweep once."""
    from datetime import timedelta

    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    time.sleep(2.5)
    with create_session() as session:
        ti = session.scalar(select(TaskInstance).where(
            TaskInstance.dag_id == "remediate_findings", TaskInstance.run_id == run_id,
            TaskInstance.task_id == "approve_changes"))
        assert ti.trigger_timeout is not None, "approve_changes has no response deadline"
        ti.trigger_timeout = datetime.now(UTC) - timedelta(seconds=1)
    SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()


# The dry run and the Approve path run for real in the browser (tests/test_local_stack.py): the form, the
# Required Actions page, apply, verify, result and audit. Here: the two ways a plan is not applied.
@pytest.mark.slow
@pytest.mark.parametrize("option", ["Reject", "timeout"])
def test_dag_approval_path(option: str, clean_clouds: Any, data_dir: Path, airflow_db: Path) -> None:
    make_bucket("dag-hitl")
    make_container("dag-hitl-c", "blob")
    records = inventory("aws", ["s3"]) + inventory("azure")
    ids = [f.finding_id for f in _save_scan(records, ["aws_s3_bucket_versioning",
                                                      "azure_storage_container_not_public"])]
    started = time.monotonic()
    proc = start_dag("remediate_findings", {"finding_ids": ids, "dry_run": False, "reason": f"test {option}"})
    try:
        run_id = _wait_for_approval_request(deadline=time.monotonic() + 240)
        if option == "timeout":
            _let_approval_time_out(run_id)
        else:
            _answer_approval(run_id, option, "approver")
    except BaseException:
        proc.kill()
        raise
    result = proc.finish(timeout=240)
    print(f"{option} dag.test: {time.monotonic() - started:.1f}s")
    assert result["run_id"] == run_id
    assert result["state"] == "success", result["output"][-4000:]
    tasks = result["tasks"]
    assert tasks["approve_changes"] == "success" and tasks["report_plan"] == "skipped"
    saved = json.loads(report.result_path(runner.WORDING, run_id).read_text())
    trail = read_audit(run_id=run_id)
    assert {r.outcome for r in trail if r.step == "plan"} == {"skipped"}
    # Reject, or no answer before the timeout: the safe outcome, nothing changes
    assert tasks["apply_changes"] == tasks["verify_changes"] == "skipped" and tasks["report"] == "success"
    assert saved["status"] == "rejected" and saved["decision"]["timed_out"] is (option == "timeout")
    assert saved["approver"] == (None if option == "timeout" else "approver")
    assert versioning_state("dag-hitl") is None and container_state("dag-hitl-c")["public"] == "blob"
    (decision,) = [r for r in trail if r.step != "plan"]
    assert decision.step == "approve" and decision.outcome == "skipped"
