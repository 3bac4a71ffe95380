"""Every provisioning kind against the emulators (moto, the GCS emulator, Azurite), through the hooks.

The idempotency matrix for each kind: plan from nothing = create; apply creates it (checked with an
independent read); verify; a second plan is empty and a second apply writes nothing; changing one field
in the spec plans exactly that field; teardown deletes it and verifies it is gone. Then the ownership rules
(an unmanaged look-alike is a conflict and is never touched) and the protections teardown refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from include.changes import engine
from include.changes.engine import Item
from include.provisioning.base import Session
from include.provisioning.runbook import build_items
from include.provisioning.spec import Spec, load_spec
from include.targets import load_targets
from tests.test_provision_support import aws, blobs, bucket_exists, gcs, instances, s3_tags, table_exists, write_spec

ENV = "steps"
OWNERSHIP = {"managed-by": "cloud-runbooks", "runbooks-environment": ENV, "owner": "platform-team",
             "cost-center": "cc-1000"}


def make_spec(folder: Path, resources: list[dict[str, Any]], **extra: Any) -> Spec:
    write_spec(folder, {"environment": ENV, "production": False, "owner": "platform-team", "cost_center": "cc-1000",
                        "targets": {"aws": "aws-prod", "gcp": "gcp-prod", "azure": "azure-prod"},
                        "tags": {"app": "steps"}, **extra, "resources": resources})
    return load_spec(ENV, folder=folder)


def plan(spec: Spec, mode: str = "provision") -> list[Item]:
    items, _, _ = build_items(spec, mode, load_targets())  # type: ignore[arg-type]
    return engine.plan_items(items, Session(spec, mode, cache_absent=True).resolver())  # type: ignore[arg-type]


def apply(spec: Spec, planned: list[Item], mode: str = "provision") -> list[Item]:
    session = Session(spec, mode)  # type: ignore[arg-type]
    done = engine.apply_items(planned, session.resolver())
    return engine.verify_items(done, Session(spec, mode).resolver())  # type: ignore[arg-type]


def only(items: list[Item], address: str) -> Item:
    return next(i for i in items if i.labels["address"] == address)


# ---- the matrix --------------------------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    resources: list[dict[str, Any]]  # the last one is the resource under test; the others its dependencies
    exists: Any  # () -> live facts (None: absent), read independently through the hooks
    change: tuple[str, Any]  # (property, new value): one field to change
    changed_field: str  # the field the update must name
    check_changed: Any  # (facts) -> bool, after the update
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.resources[-1]['kind']}.{self.resources[-1]['name']}"


def _bucket() -> Any:
    if not bucket_exists("rb-steps-bucket"):
        return None
    s3 = aws("s3")
    return {"tags": s3_tags("rb-steps-bucket"), "versioning": s3.get_bucket_versioning(Bucket="rb-steps-bucket").get("Status"),
            "pab": s3.get_public_access_block(Bucket="rb-steps-bucket")["PublicAccessBlockConfiguration"],
            "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket="rb-steps-bucket")["Rules"],
            "encryption": s3.get_bucket_encryption(Bucket="rb-steps-bucket")["ServerSideEncryptionConfiguration"]}


def _group() -> Any:
    found = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["rb-steps-sg"]}])
    groups = found["SecurityGroups"]
    return ({"tags": {t["Key"]: t["Value"] for t in groups[0].get("Tags", [])}, "ingress": groups[0]["IpPermissions"]}
            if groups else None)


def _instance() -> Any:
    found = instances("rb-steps-vm")
    return ({"tags": {t["Key"]: t["Value"] for t in found[0]["Tags"]}, "type": found[0]["InstanceType"],
             "groups": [g["GroupId"] for g in found[0]["SecurityGroups"]],
             "imds": found[0]["MetadataOptions"]["HttpTokens"]} if found else None)


def _db() -> Any:
    try:
        db = aws("rds").describe_db_instances(DBInstanceIdentifier="rb-steps-db")["DBInstances"][0]
    except Exception:
        return None
    return {"tags": {t["Key"]: t["Value"] for t in db["TagList"]}, "retention": db["BackupRetentionPeriod"],
            "encrypted": db["StorageEncrypted"], "secret": bool(db.get("MasterUserSecret"))}


def _zone() -> Any:
    r53 = aws("route53")
    zones = [z for z in r53.list_hosted_zones()["HostedZones"] if z["Name"] == "rb-steps.example.com."]
    if not zones:
        return None
    zone_id = zones[0]["Id"].split("/")[-1]
    tags = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)["ResourceTagSet"]["Tags"]
    return {"tags": {t["Key"]: t["Value"] for t in tags}, "comment": zones[0]["Config"].get("Comment"), "id": zone_id}


def _record() -> Any:
    zone = _zone()
    if zone is None:
        return None
    sets = aws("route53").list_resource_record_sets(HostedZoneId=zone["id"])["ResourceRecordSets"]
    www = [r for r in sets if r["Name"] == "www.rb-steps.example.com." and r["Type"] == "A"]
    owner = [r for r in sets if r["Name"] == "_rb-a.www.rb-steps.example.com." and r["Type"] == "TXT"]
    if not www:
        return None
    return {"ttl": www[0]["TTL"], "values": sorted(v["Value"] for v in www[0]["ResourceRecords"]),
            "tags": {"owner-record": owner[0]["ResourceRecords"][0]["Value"]} if owner else {}}


def _table() -> Any:
    if not table_exists("rb-steps-table"):
        return None
    ddb = aws("dynamodb")
    arn = ddb.describe_table(TableName="rb-steps-table")["Table"]["TableArn"]
    pitr = ddb.describe_continuous_backups(TableName="rb-steps-table")["ContinuousBackupsDescription"]
    return {"tags": {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=arn)["Tags"]},
            "pitr": pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]}


def _gcs_bucket() -> Any:
    bucket = gcs().lookup_bucket("rb-steps-gcs")
    if bucket is None:
        return None
    props = bucket._properties
    return {"tags": dict(bucket.labels or {}), "class": props.get("storageClass"), "location": props.get("location"),
            "iam": props.get("iamConfiguration"), "versioning": props.get("versioning"),
            "lifecycle": props.get("lifecycle")}


def _container() -> Any:
    client = blobs().get_container_client("rb-steps-container")
    try:
        found = client.get_container_properties()
    except Exception:
        return None
    return {"tags": dict(found.metadata or {}), "public": found.public_access}


SG = {"kind": "sg", "name": "web", "properties": {"name": "rb-steps-sg", "description": "steps",
                                                    "ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443,
                                                                 "cidrs": ["0.0.0.0/0"]}]}}
ZONE = {"kind": "zone", "name": "main", "properties": {"name": "rb-steps.example.com", "comment": "steps"}}

CASES = [
    Case("s3", [{"kind": "s3", "name": "data", "properties": {
        "name": "rb-steps-bucket", "lifecycle": [{"id": "old", "noncurrent_expire_days": 30}]}}],
         _bucket, ("versioning", False), "versioning", lambda f: f["versioning"] == "Suspended"),
    Case("security-group", [SG], _group,
         ("ingress", [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0", "10.0.0.0/8"]}]),
         "ingress", lambda f: sorted(r["CidrIp"] for r in f["ingress"][0]["IpRanges"]) == ["0.0.0.0/0", "10.0.0.0/8"]),
    Case("ec2-instance", [SG, {"kind": "ec2", "name": "vm", "properties": {
        "name": "rb-steps-vm", "image_id": "ami-04681a1dbd79675a5", "instance_type": "t3.micro",
        "security_groups": ["${sg.web.id}"]}}],
         _instance, ("instance_type", "t3.small"), "instance_type", lambda f: f["type"] == "t3.small"),
    Case("rds-instance", [{"kind": "rds", "name": "db", "properties": {
        "name": "rb-steps-db", "engine": "postgres", "instance_class": "db.t3.micro"}}],
         _db, ("backup_retention_days", 14), "backup_retention_days", lambda f: f["retention"] == 14),
    Case("route53-zone", [ZONE], _zone, ("comment", "steps, again"), "comment",
         lambda f: f["comment"] == "steps, again"),
    Case("route53-record", [ZONE, {"kind": "record", "name": "www", "properties": {
        "zone": "${zone.main.name}", "name": "www.rb-steps.example.com", "type": "A", "ttl": 60,
        "values": ["10.0.0.1", "10.0.0.2"]}}],
         _record, ("ttl", 120), "ttl", lambda f: f["ttl"] == 120),
    Case("dynamodb-table", [{"kind": "dynamodb", "name": "t", "properties": {
        "name": "rb-steps-table", "hash_key": {"name": "id", "type": "S"}}}],
         _table, ("pitr", False), "pitr", lambda f: f["pitr"] == "DISABLED"),
    Case("gcs-bucket", [{"kind": "gcs", "name": "b", "properties": {
        "name": "rb-steps-gcs", "location": "EU", "lifecycle": [{"action": "delete", "age_days": 30}]}}],
         _gcs_bucket, ("storage_class", "NEARLINE"), "storage_class", lambda f: f["class"] == "NEARLINE"),
    Case("azure-container", [{"kind": "container", "name": "c", "tags": {"team": "a"},
                              "properties": {"name": "rb-steps-container"}}],
         _container, ("tags", {"team": "b"}), "tags", lambda f: f["tags"].get("team") == "b"),
]


def _managed(facts: dict[str, Any], case: Case) -> bool:
    if case.id == "route53-record":
        text = facts["tags"].get("owner-record", "")
        return all(f'"{k}={v}"' in text for k, v in OWNERSHIP.items())
    tags = {k.replace("_", "-"): v for k, v in facts["tags"].items()}
    return all(tags.get(k) == v for k, v in OWNERSHIP.items())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_kind_idempotency_matrix(case: Case, clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, case.resources)
    # plan from nothing: create, and planning changed nothing
    planned = plan(spec)
    assert [i.change.operation if i.change else None for i in planned] == ["create"] * len(planned)
    assert case.exists() is None
    # apply: created, tagged as managed by the environment, verified
    done = apply(spec, planned)
    assert all(i.outcome == "changed" and i.verified for i in done), [(i.outcome, i.apply_error, i.verify_error)
                                                                       for i in done]
    facts = case.exists()
    assert facts is not None and _managed(facts, case), facts
    # idempotent: a second plan is empty; replaying the same changes writes nothing
    again = plan(spec)
    assert all(i.change is None and not i.plan_error for i in again), [i.change for i in again]
    replay = engine.apply_items(planned, Session(spec, "provision").resolver())
    assert {i.outcome for i in replay} == {"unchanged"}
    assert case.exists() == facts
    # one field changed in the spec: exactly that field is planned, applied, verified
    changed = [dict(r) for r in case.resources]
    changed[-1] = {**changed[-1], "properties": dict(changed[-1]["properties"])}
    key, value = case.change
    if key == "tags":
        changed[-1]["tags"] = value
    else:
        changed[-1]["properties"][key] = value
    spec2 = make_spec(tmp_path, changed)
    update = plan(spec2)
    changes = [i for i in update if i.change]
    assert len(changes) == 1 and changes[0].labels["address"] == case.address
    change = changes[0].change
    assert change is not None and change.operation == "update"
    assert set(change.after or {}) == {case.changed_field} and change.before != change.after
    assert case.changed_field in change.summary
    done = apply(spec2, update)
    assert all(i.verified for i in done), [(i.apply_error, i.verify_error) for i in done]
    assert case.check_changed(case.exists())
    assert all(i.change is None for i in plan(spec2))
    # teardown: deletes in reverse order, verifies they are gone
    down = plan(spec2, "teardown")
    assert [i.change.operation if i.change else None for i in down] == ["delete"] * len(down)
    gone = apply(spec2, down, "teardown")
    assert all(i.outcome == "changed" and i.verified for i in gone), [(i.apply_error, i.verify_error) for i in gone]
    assert case.exists() is None
    assert all(i.change is None for i in plan(spec2, "teardown"))


# ---- ownership: an unmanaged look-alike is a conflict and is never touched ---------------------------------
def test_unmanaged_look_alikes_are_conflicts_never_adopted(clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    aws("s3").create_bucket(Bucket="rb-steps-bucket")
    aws("s3").put_bucket_tagging(Bucket="rb-steps-bucket", Tagging={"TagSet": [{"Key": "owner", "Value": "someone"}]})
    aws("dynamodb").create_table(TableName="rb-steps-table", BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                                 KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    blobs().create_container("rb-steps-container", metadata={"managed_by": "cloud-runbooks",
                                                             "runbooks_environment": "other-env"})
    spec = make_spec(tmp_path, [CASES[0].resources[0], CASES[6].resources[0], CASES[8].resources[0]])
    planned = plan(spec)
    errors = {i.labels["address"]: i.plan_error for i in planned}
    assert errors["s3.data"] is not None and errors["s3.data"].startswith("Conflict: S3 bucket rb-steps-bucket exists and "
                                                                      "is not managed by cloud-runbooks")
    assert "it is not adopted" in errors["s3.data"]
    assert errors["dynamodb.t"] is not None and errors["dynamodb.t"].startswith("Conflict: DynamoDB table")
    assert errors["container.c"] is not None and "managed by another environment (other-env)" in errors["container.c"]
    # apply never adopts them (even a change planned before someone created the look-alike)
    assert s3_tags("rb-steps-bucket") == {"owner": "someone"}
    assert _container()["tags"] == {"managed_by": "cloud-runbooks", "runbooks_environment": "other-env"}
    # teardown leaves them alone: nothing to delete
    down = plan(spec, "teardown")
    assert all(i.change is None and not i.plan_error for i in down)
    assert bucket_exists("rb-steps-bucket") and table_exists("rb-steps-table")


def test_a_look_alike_created_between_plan_and_apply_fails_the_change(clean_clouds: Any, data_dir: Path,
                                                                       tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [CASES[0].resources[0]])
    planned = plan(spec)
    assert planned[0].change is not None and planned[0].change.operation == "create"
    aws("s3").create_bucket(Bucket="rb-steps-bucket")  # someone else, just before the apply
    (done,) = engine.apply_items(planned, Session(spec, "provision").resolver())
    assert done.outcome == "failed" and done.apply_error is not None and done.apply_error.startswith("Conflict: ")
    with pytest.raises(Exception, match="NoSuchTagSet"):
        aws("s3").get_bucket_tagging(Bucket="rb-steps-bucket")


def test_instances_with_the_same_name_only_ours_is_managed(clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, CASES[2].resources)
    apply(spec, plan(spec))
    ec2 = aws("ec2")
    image = "ami-04681a1dbd79675a5"
    stranger = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.nano", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "rb-steps-vm"}]}])["Instances"][0]["InstanceId"]
    assert all(i.change is None for i in plan(spec)), "the look-alike does not disturb the plan"
    gone = apply(spec, plan(spec, "teardown"), "teardown")
    assert all(i.verified for i in gone)
    assert [i["InstanceId"] for i in instances("rb-steps-vm")] == [stranger], "only the managed one was terminated"


def test_instance_creates_share_one_name_read_and_still_refuse_a_look_alike(clean_clouds: Any, data_dir: Path,
                                                                            tmp_path: Path) -> None:
    """Apply asks once which instance names are taken; a taken name gets the full read: a look-alike created
    after the plan is a conflict (never a second instance), and a replayed change set creates nothing twice."""
    vm = CASES[2].resources[1]
    resources = [SG, *({**vm, "name": n, "properties": {**vm["properties"], "name": f"rb-steps-{n}"}}
                       for n in ("a", "b", "c"))]
    spec = make_spec(tmp_path, resources)
    planned = plan(spec)
    assert [i.change.operation for i in planned if i.change] == ["create"] * 4
    stranger = aws("ec2").run_instances(ImageId="ami-04681a1dbd79675a5", MinCount=1, MaxCount=1, InstanceType="t3.nano",
                                        TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                            {"Key": "Name", "Value": "rb-steps-b"}]}])["Instances"][0]["InstanceId"]
    session = Session(spec, "provision")
    calls: list[str] = []
    client = session.step("ec2").aws(spec.resource("ec2.a"), "ec2")
    client.meta.events.register("before-call.ec2.DescribeInstances", lambda **kw: calls.append("describe"),
                                unique_id="test-describe-count")  # a shared client: unregistered below
    try:
        done = engine.apply_items(planned, session.resolver())
    finally:
        client.meta.events.unregister("before-call.ec2.DescribeInstances", unique_id="test-describe-count")
    outcomes = {i.labels["address"]: i.outcome for i in done}
    assert outcomes == {"sg.web": "changed", "ec2.a": "changed", "ec2.b": "failed", "ec2.c": "changed"}
    assert (only(done, "ec2.b").apply_error or "").startswith("Conflict: EC2 instance rb-steps-b exists and is not "
                                                               "managed")
    assert calls == ["describe", "describe"], "one batched read, one full read for the taken name"
    assert [i["InstanceId"] for i in instances("rb-steps-b")] == [stranger]
    # the same change set again (a retried task): the names are taken by ours now, nothing is created twice
    again = engine.apply_items(planned, Session(spec, "provision").resolver())
    assert {i.labels["address"]: i.outcome for i in again if i.labels["kind"] == "ec2"} == {
        "ec2.a": "unchanged", "ec2.b": "failed", "ec2.c": "unchanged"}
    assert len(instances("rb-steps-a")) == 1 and len(instances("rb-steps-c")) == 1


# ---- protection: teardown refuses and says which ----------------------------------------------------------
def test_teardown_refuses_protected_resources(clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    resources = [
        {"kind": "dynamodb", "name": "t", "properties": {"name": "rb-steps-table", "hash_key": {"name": "id", "type": "S"},
                                                          "deletion_protection": True}},
        {"kind": "rds", "name": "db", "properties": {"name": "rb-steps-db", "engine": "postgres",
                                                      "instance_class": "db.t3.micro", "deletion_protection": True}},
        {"kind": "ec2", "name": "vm", "properties": {"name": "rb-steps-vm", "image_id": "ami-04681a1dbd79675a5",
                                                      "instance_type": "t3.micro", "termination_protection": True}},
        {"kind": "s3", "name": "full", "properties": {"name": "rb-steps-full"}},
        {"kind": "s3", "name": "kept", "prevent_destroy": True, "properties": {"name": "rb-steps-kept"}},
        {"kind": "gcs", "name": "locked", "properties": {"name": "rb-steps-locked", "retention_days": 1}},
        {"kind": "container", "name": "c", "properties": {"name": "rb-steps-container"}},
    ]
    spec = make_spec(tmp_path, resources)
    assert all(i.verified for i in apply(spec, plan(spec)))
    aws("s3").put_object(Bucket="rb-steps-full", Key="data.txt", Body=b"keep me")
    locked = gcs().get_bucket("rb-steps-locked")
    locked._patch_property("retentionPolicy", {"retentionPeriod": "86400", "isLocked": True})  # a locked policy
    locked.patch()
    blobs().get_container_client("rb-steps-container").upload_blob("x.txt", b"data")
    down = {i.labels["address"]: i for i in plan(spec, "teardown")}
    why = {a: (i.plan_error or "") for a, i in down.items()}
    assert why["dynamodb.t"] == "Protected: DynamoDB table rb-steps-table: deletion protection is on"
    assert why["rds.db"] == "Protected: RDS instance rb-steps-db: deletion protection is on"
    assert why["ec2.vm"] == "Protected: EC2 instance rb-steps-vm: termination protection (disableApiTermination) is on"
    assert why["s3.full"] == "Protected: S3 bucket rb-steps-full: it holds objects and force_destroy is false"
    assert why["s3.kept"] == "Protected: S3 bucket rb-steps-kept: prevent_destroy is set in the spec"
    assert why["gcs.locked"].endswith("its retention policy is locked (a retention lock)")
    assert why["container.c"].endswith("it holds blobs and force_destroy is false")
    # an object-locked bucket: a retention lock
    aws("s3").create_bucket(Bucket="rb-steps-lock", ObjectLockEnabledForBucket=True)
    aws("s3").put_bucket_tagging(Bucket="rb-steps-lock", Tagging={"TagSet": [
        {"Key": k, "Value": v} for k, v in {**OWNERSHIP, "app": "steps"}.items()]})
    lock_spec = make_spec(tmp_path, [{"kind": "s3", "name": "lock", "properties": {"name": "rb-steps-lock",
                                                                                    "force_destroy": True}}])
    (lock,) = plan(lock_spec, "teardown")
    assert lock.plan_error == ("Protected: S3 bucket rb-steps-lock: S3 Object Lock is enabled (its objects may be "
                               "under retention): a retention lock")
    # force_destroy empties a bucket (every version) and then deletes it
    forced = make_spec(tmp_path, [{"kind": "s3", "name": "full", "properties": {"name": "rb-steps-full",
                                                                                "force_destroy": True}}])
    (item,) = apply(forced, plan(forced, "teardown"), "teardown")
    assert item.verified and not bucket_exists("rb-steps-full")


def test_cross_region_replica_references_its_source_arn(clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, [
        {"kind": "rds", "name": "main", "properties": {"name": "rb-steps-main", "engine": "postgres",
                                                        "instance_class": "db.t3.micro"}},
        {"kind": "rds", "name": "dr", "region": "eu-west-1", "properties": {
            "name": "rb-steps-dr", "replica_of": "${rds.main.arn}", "instance_class": "db.t3.micro"}}])
    planned = plan(spec)
    assert only(planned, "rds.dr").change.after["replica_of"] == "(known after apply: rds.main.arn)"  # type: ignore[union-attr]
    assert all(i.verified for i in apply(spec, planned))
    replica = aws("rds", "eu-west-1").describe_db_instances(DBInstanceIdentifier="rb-steps-dr")["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"].endswith(":db:rb-steps-main")
    assert all(i.change is None for i in plan(spec))


# ---- a denied GetBucketLocation: a missing permission, or another account's bucket ---------------------------
class _DeniedLocation:
    """An S3 client whose GetBucketLocation is denied and whose ListObjectsV2 answers ``head`` (an HTTP status).

    moto cannot hold another account's bucket under the same name, so this one call pair is played here; the
    other side (our own bucket, the permission removed) runs on moto under IAM enforcement in
    tests/test_least_privilege.py."""

    def __init__(self, head: int) -> None:
        self.head = head

    @staticmethod
    def _error(status: int, code: str, operation: str) -> Exception:
        from botocore.exceptions import ClientError

        return ClientError({"Error": {"Code": code, "Message": "Access Denied"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, operation)

    def get_bucket_location(self, **_: Any) -> dict[str, Any]:
        raise self._error(403, "AccessDenied", "GetBucketLocation")

    def list_objects_v2(self, **_: Any) -> dict[str, Any]:
        if self.head != 200:
            raise self._error(self.head, "AccessDenied" if self.head == 403 else "NoSuchBucket", "ListObjectsV2")
        return {"KeyCount": 0}


@pytest.mark.parametrize(("head", "foreign"), [(403, True), (200, False), (404, False)])
def test_a_denied_bucket_location_is_foreign_only_when_the_bucket_is_out_of_reach(
        head: int, foreign: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from include.provisioning.aws.s3 import S3Bucket

    step = S3Bucket.__new__(S3Bucket)
    monkeypatch.setattr(S3Bucket, "aws", lambda self, res, service: _DeniedLocation(head))
    res: Any = object()
    if foreign:  # another account holds the name: a conflict, never adopted, nothing more read
        live = step.fetch(res, {"name": "taken-elsewhere"})
        assert live is not None and live.detail == {"foreign": True}
    else:  # ours (or no bucket at all): this run lacks s3:GetBucketLocation, and says so instead of "conflict"
        with pytest.raises(ClientError, match="GetBucketLocation"):
            step.fetch(res, {"name": "ours"})
