"""Least privilege, proven: the generated per-runbook policies are current, complete, sufficient and minimal.

- ``deploy/iam/`` equals what ``include.least_privilege`` generates from the code's declarations now, and every
  runbook in ``dags/`` has an entry there (a runbook added later without a policy fails here);
- against this module's own moto server with IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``), an IAM user
  holding exactly a runbook's generated policy, its access keys in the Airflow ``aws`` connection
  (``AIRFLOW_CONN_AWS_ESTATE``, as production configures it), runs the runbook's cloud work through the same
  ``include/`` functions its tasks call: it succeeds. With any single action removed from that policy, the
  declaration unit that needs it (a lister, a fixer) fails with an access-denied message naming the action.

moto checks S3 calls under its own action names, which differ from AWS's for a few calls
(``MOTO_S3_ALIASES``): for those, the removal check cannot be made on the emulator (see deploy/iam/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from include import least_privilege as lp
from include.records import ResourceRecord
from include.targets import Target, load_targets
from localdev.emulators import AWS_CONN_ID, _bin, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
#: AWS action -> the name moto 5.2.5 checks that S3 call under (moto/s3/responses.py ACTION_MAP), where they differ.
MOTO_S3_ALIASES = {
    "s3:GetEncryptionConfiguration": "s3:ListBucket",
    "s3:PutEncryptionConfiguration": "s3:CreateBucket",
    "s3:GetBucketPublicAccessBlock": "s3:ListBucket",
    "s3:PutBucketPublicAccessBlock": "s3:CreateBucket",
    "s3:GetBucketObjectLockConfiguration": "s3:ListBucket",
}
#: Services whose calls moto 5.2.5 cannot check: once enforcement is on it answers every signed Route 53 request
#: with SignatureDoesNotMatch (its signature check of Route 53's REST paths), whatever the policy.
MOTO_UNCHECKABLE_SERVICES = {"route53"}
REQUIRED_TAGS = {"owner": "bob", "cost-center": "cc-42", "data-classification": "internal"}


# ---- the generated files -----------------------------------------------------------------------------------------
def test_committed_files_equal_what_the_code_declares() -> None:
    assert lp.differences() == [], f"run `{lp.COMMAND}` and commit deploy/iam/"


def test_every_runbook_has_an_entry() -> None:
    index = json.loads((lp.OUT_DIR / "index.json").read_text())
    dag_ids = {lp.read_dag(path).dag_id for path in lp.dag_files()}
    assert dag_ids == set(index), "every runbook in dags/ has an entry in deploy/iam/index.json"
    readme = (lp.OUT_DIR / "README.md").read_text()
    for dag_id, entry in index.items():
        assert f"| `{dag_id}` |" in readme
        if entry["clouds"] == "none":
            assert entry["sources"] == []
            continue
        for spec in entry["clouds"].values():
            assert (lp.OUT_DIR / spec["file"]).exists(), f"{dag_id}: {spec['file']}"
            assert spec["count"] > 0


def test_a_runbook_added_without_a_known_source_fails(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "new_runbook.py").write_text(
        "from airflow.sdk import dag, task\n\n@dag(dag_id='new_runbook')\ndef new_runbook():\n"
        "    @task\n    def work():\n        from include.capabilities import object_store_for\n"
        "        return object_store_for\n    work()\n\nnew_runbook()\n")
    with pytest.raises(lp.LeastPrivilegeError, match=r"new_runbook\.py .*include\.capabilities"):
        lp.all_policies(dags)
    # and the committed files miss it: the check names what is missing
    (dags / "new_runbook.py").write_text("from include.approval import approval_gate\n")
    problems = lp.differences(lp.OUT_DIR, dags)
    assert any("not generated (stale)" in p for p in problems)


def test_the_mapping_follows_what_each_dag_uses() -> None:
    policies = {p.dag_id: p for p in lp.all_policies()}
    assert policies["compliance_scan"].permissions == {}
    # failover_service names fence / promote / switch_dns, not the failback's rebuild
    failover = set(policies["failover_service"].permissions["aws"])
    failback = set(policies["failback_service"].permissions["aws"])
    assert "rds:PromoteReadReplica" in failover and "rds:CreateDBInstanceReadReplica" not in failover
    assert "rds:CreateDBInstanceReadReplica" in failback
    assert failover | failback <= set(policies["failover_drill"].permissions["aws"])
    # provisioning: create without delete; teardown: delete without create; drift: reads only
    provision = set(policies["provision_environment"].permissions["aws"])
    teardown = set(policies["teardown_environment"].permissions["aws"])
    drift = set(policies["detect_drift"].permissions["aws"])
    assert drift < provision and drift < teardown
    assert {"ec2:RunInstances", "s3:CreateBucket"} <= provision and "ec2:TerminateInstances" not in provision
    assert {"ec2:TerminateInstances", "rds:DeleteDBInstance"} <= teardown and "ec2:RunInstances" not in teardown


def test_access_denied_names_the_permission() -> None:
    from include.clouds.errors import denied_message, name_denied_permission

    assert denied_message("Access Denied", "s3", "ListObjectsV2").endswith(
        "(missing permission s3:ListBucket: ListObjectsV2 needs it)")
    already = "User: arn:aws:iam::1:user/x is not authorized to perform: ec2:DescribeVolumes"
    assert denied_message(already, "ec2", "DescribeVolumes") == already

    class Model:
        name = "GetBucketEncryption"

        class service_model:  # the attribute botocore's OperationModel has
            signing_name = "s3"

    parsed: dict[str, Any] = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
    name_denied_permission(parsed=parsed, model=Model())
    assert "s3:GetEncryptionConfiguration" in parsed["Error"]["Message"]
    other: dict[str, Any] = {"Error": {"Code": "NoSuchBucket", "Message": "gone"}}
    name_denied_permission(parsed=other, model=Model())
    assert other["Error"]["Message"] == "gone"


# ---- moto with IAM enforcement ---------------------------------------------------------------------------------
class IamMoto:
    """A private moto server that checks every request after the first three against the caller's policies."""

    def __init__(self, endpoint: str, admin: tuple[str, str]) -> None:
        self.endpoint = endpoint
        self.admin = admin

    def client(self, service: str, keys: tuple[str, str] | None = None) -> Any:
        import boto3

        key, secret = keys or self.admin
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id=key,
                            aws_secret_access_key=secret)

    def use(self, keys: tuple[str, str]) -> None:
        """Point the runbooks' Airflow connection at this server with these access keys."""
        os.environ[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"] = json.dumps({
            "conn_type": "aws", "login": keys[0], "password": keys[1],
            "extra": {"endpoint_url": self.endpoint, "region_name": REGION},
        })

    def user_with_policy(self, name: str, document: dict[str, Any]) -> tuple[str, str]:
        """An IAM user holding exactly ``document`` as a customer-managed policy; its access keys."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"]["Arn"]
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def set_policy(self, name: str, document: dict[str, Any]) -> None:
        """Replace the user's managed policy with a new default version (old versions deleted)."""
        iam = self.client("iam")
        arn = f"arn:aws:iam::123456789012:policy/{name}"
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True)
        for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    import boto3

    port = free_port()
    log = tmp_path_factory.mktemp("iam-moto") / "moto.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with log.open("wb") as out:
        proc = subprocess.Popen([_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    saved = os.environ.get(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start; see {log}") from None
                time.sleep(0.1)
        # The three unauthenticated calls: an administrator with a key; everything after is checked.
        iam = boto3.client("iam", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        server = IamMoto(endpoint, (key["AccessKeyId"], key["SecretAccessKey"]))
        with pytest.raises(Exception, match="InvalidClientTokenId|not authorized|AccessDenied"):
            boto3.client("iam", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="bootstrap",
                         aws_secret_access_key="bootstrap").list_users()
        seed(server)
        yield server
    finally:
        if saved is None:
            os.environ.pop(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}", None)
        else:
            os.environ[f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}"] = saved
        proc.terminate()
        proc.wait(timeout=10)


def seed(server: IamMoto) -> None:
    """One resource of every kind the AWS listers and fixers read per resource (as the administrator)."""
    s3 = server.client("s3")
    s3.create_bucket(Bucket="lp-bucket")
    s3.put_bucket_tagging(Bucket="lp-bucket", Tagging={"TagSet": [{"Key": "owner", "Value": "alice"}]})
    s3.create_bucket(Bucket="lp-trail-logs")
    ec2 = server.client("ec2")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro", TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "lp-vm"}]}])
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "Name", "Value": "lp-vol"}]}])["VolumeId"]
    ec2.create_snapshot(VolumeId=volume)
    server.client("rds").create_db_instance(
        DBInstanceIdentifier="lp-db", Engine="postgres", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
        MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1", BackupRetentionPeriod=1)
    server.client("dynamodb").create_table(
        TableName="lp-table", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    server.client("kms").create_key(Description="lp-key")
    iam = server.client("iam")
    iam.create_user(UserName="lp-person")
    iam.create_login_profile(UserName="lp-person", Password="not-a-real-secret-1!")
    iam.create_access_key(UserName="lp-person")
    server.client("cloudtrail").create_trail(Name="lp-trail", S3BucketName="lp-trail-logs")
    route53 = server.client("route53")
    route53.create_hosted_zone(Name="lp.example.com", CallerReference="lp")
    route53.create_health_check(CallerReference="lp-hc", HealthCheckConfig={
        "Type": "HTTP", "FullyQualifiedDomainName": "lp.example.com", "Port": 80, "ResourcePath": "/"})


def aws_target() -> Target:
    target = load_targets().get("aws-prod")
    return target.model_copy(update={"regions": [REGION]})


def document(dag_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((lp.OUT_DIR / lp.file_name(dag_id, "aws")).read_text())
    return doc


def actions_of(doc: dict[str, Any]) -> list[str]:
    return sorted(a for statement in doc["Statement"] for a in statement["Action"])


def without(doc: dict[str, Any], action: str) -> dict[str, Any]:
    statements = [{**s, "Action": [a for a in s["Action"] if a != action]} for s in doc["Statement"]]
    return {**doc, "Statement": [s for s in statements if s["Action"]]}


def with_moto_aliases(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` plus moto's own name of every S3 call moto checks under another name (see MOTO_S3_ALIASES)."""
    extra = sorted({MOTO_S3_ALIASES[a] for a in actions_of(doc) if a in MOTO_S3_ALIASES} - set(actions_of(doc)))
    if not extra:
        return doc
    return {**doc, "Statement": [*doc["Statement"], {"Sid": "MotoS3Names", "Effect": "Allow", "Action": extra,
                                                     "Resource": "*"}]}


Unit = tuple[str, frozenset[str], Callable[[], None]]


def removal_check(server: IamMoto, dag_id: str, units: list[Unit],
                  not_exercised: Mapping[str, str] | None = None) -> list[str]:
    """For every action of the runbook's policy: without it, a unit that declares it fails naming it.

    ``not_exercised``: the actions (with why) that the unit's run cannot make fail on the emulator (a call made
    only on a failure path, or one moto checks under another action name): without one of them the run must
    still succeed, so this list is exact, not a blanket exemption.
    Returns the actions the emulator could not check (moto checks that S3 call under another name).
    """
    doc = document(dag_id)
    user = f"lp-{dag_id}-minus"
    expected_ok = dict(not_exercised or {})
    unknown = sorted(set(expected_ok) - set(actions_of(doc)))
    assert unknown == [], f"{dag_id}: not_exercised names actions its policy does not hold: {unknown}"
    server.use(server.user_with_policy(user, with_moto_aliases(doc)))
    unchecked, problems = [], []
    for action in actions_of(doc):
        aliased = {MOTO_S3_ALIASES[a] for a in actions_of(doc) if a in MOTO_S3_ALIASES}
        # moto's own name of a call the policy grants under its AWS name cannot be taken away either
        if action in MOTO_S3_ALIASES or action in aliased or action.split(":")[0] in MOTO_UNCHECKABLE_SERVICES:
            unchecked.append(action)
            continue
        unit = next((u for u in units if action in u[1]), None)
        assert unit is not None, f"{dag_id}: no declaration unit declares {action}"
        server.set_policy(user, with_moto_aliases(without(doc, action)))
        try:
            unit[2]()
        except Exception as exc:  # the unit's failure is what is checked
            message = str(exc)
            if action not in message or not any(w in message for w in ("AccessDenied", "not authorized",
                                                                       "access_denied", "Access Denied")):
                problems.append(f"without {action}, {unit[0]} failed but not naming it: {message[:300]}")
            if action in expected_ok:
                problems.append(f"{action} is listed as not exercised, yet {unit[0]} failed without it")
        else:
            if action not in expected_ok:
                problems.append(f"without {action}, {unit[0]} still succeeded")
            unchecked.append(action)
    assert problems == [], "\n".join(problems)
    return unchecked


# ---- inventory_estate ------------------------------------------------------------------------------------------
def inventory_units() -> list[Unit]:
    from include.inventory.collect import collect_target
    from include.inventory.registry import listers_for

    def run(service: str) -> Callable[[], None]:
        def call() -> None:
            result = collect_target(aws_target(), services=[service])
            if result.errors:
                raise RuntimeError("; ".join(f"{e.kind}: {e.message}" for e in result.errors))
            if not result.records:
                raise AssertionError(f"{service}: nothing listed (the estate is not seeded)")
        return call

    return [(f"lister aws.{entry.service}", frozenset(entry.permissions), run(entry.service))
            for entry in listers_for("aws") if entry.service not in MOTO_UNCHECKABLE_SERVICES]


def test_inventory_estate_under_its_generated_policy(iam_moto: IamMoto) -> None:
    from include.inventory.collect import collect_target
    from include.inventory.registry import listers_for

    iam_moto.use(iam_moto.user_with_policy("lp-inventory_estate", with_moto_aliases(document("inventory_estate"))))
    services = [e.service for e in listers_for("aws") if e.service not in MOTO_UNCHECKABLE_SERVICES]
    result = collect_target(aws_target(), services=services)
    assert result.errors == []
    listed = {r.resource_type for r in result.records}
    assert {"aws.s3.bucket", "aws.ec2.instance", "aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table",
            "aws.kms.key", "aws.iam.user", "aws.cloudtrail.trail"} <= listed
    unchecked = removal_check(iam_moto, "inventory_estate", inventory_units())
    assert {a for a in unchecked if a.split(":")[0] not in MOTO_UNCHECKABLE_SERVICES} <= {*MOTO_S3_ALIASES, *MOTO_S3_ALIASES.values()}


# ---- remediate_findings ----------------------------------------------------------------------------------------
def records(server: IamMoto, services: list[str]) -> list[ResourceRecord]:
    """The estate's records as the inventory lists them (read as the administrator, like inventory_estate)."""
    from include.inventory.collect import collect_target

    server.use(server.admin)
    result = collect_target(aws_target(), services=services)
    assert result.errors == []
    return result.records


def fixer_units(found: list[ResourceRecord]) -> list[Unit]:
    """One unit per (fixer, seeded resource): the plan + apply the runbook's apply task makes for one item.

    A unit declares the fixer's permissions of that resource's service (``tags.required`` spans five).
    """
    from include.compliance.remediation.registry import all_fixers

    names = ("lp-bucket", "lp-vm", "lp-vol", "lp-db", "lp-table")
    options = {"aws.rds.backup_retention": {"retention_days": 9, "verify_wait": 0}, "tags.required": {
        "tag_values": REQUIRED_TAGS}}
    units: list[Unit] = []
    for entry in all_fixers():
        if entry.cloud != "aws":
            continue
        targets = [r for r in found if r.resource_type in entry.resource_types and r.name in names]
        assert targets, f"fixer {entry.id}: nothing seeded to run it on"
        for rec in targets:
            service = rec.resource_type.split(".")[1]

            def call(entry: Any = entry, rec: ResourceRecord = rec) -> None:
                fixer = entry.create(options.get(entry.id, {}))
                change = fixer.plan(rec)
                if change is not None:
                    fixer.apply(change)

            perms = frozenset(p for p in entry.permissions if p.split(":")[0] == service)
            units.append((f"fixer {entry.id} on {rec.name}", perms, call))
    return units


def test_remediate_findings_under_its_generated_policy(iam_moto: IamMoto) -> None:
    found = records(iam_moto, ["s3", "ec2", "rds", "dynamodb"])
    units = fixer_units(found)
    # Without any one action, the fixer that needs it fails naming it (and changes nothing)...
    unchecked = removal_check(iam_moto, "remediate_findings", units)
    assert {a for a in unchecked if a.split(":")[0] not in MOTO_UNCHECKABLE_SERVICES} <= {*MOTO_S3_ALIASES, *MOTO_S3_ALIASES.values()}
    # ...and with exactly the generated policy every fixer plans and applies its change.
    iam_moto.use(iam_moto.user_with_policy("lp-remediate_findings", with_moto_aliases(document("remediate_findings"))))
    for _, _, call in units:
        call()
    s3 = iam_moto.client("s3")
    assert s3.get_bucket_versioning(Bucket="lp-bucket")["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket="lp-bucket")["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="lp-bucket")["TagSet"]}
    assert tags["cost-center"] == "cc-42" and tags["owner"] == "alice"
    db = iam_moto.client("rds").describe_db_instances(DBInstanceIdentifier="lp-db")["DBInstances"][0]
    assert db["BackupRetentionPeriod"] == 9


# ---- backup_object_stores, restore_objects (S3 side) -----------------------------------------------------------
#: An S3 -> S3 (other region) policy with Object Lock, so that the runbooks' S3 object-store calls all run on moto
#: (the shipped policies copy to / from Cloud Storage and Azure, whose emulators enforce no permissions).
LP_POLICIES = """
policies:
  - name: lp-s3-to-s3
    source: {target: aws-prod, container: lp-src, prefix: data/}
    destination: {target: aws-prod, container: lp-backups, prefix: lp/, region: eu-west-1}
    retention: {hourly: 1}
    rpo: 2h
    immutability: {mode: governance, days: 1}
"""
STORE_BUCKETS = {"lp-src": REGION, "lp-backups": "eu-west-1", "lp-restore": REGION}


@pytest.fixture(scope="module")
def object_stores(iam_moto: IamMoto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The buckets of ``LP_POLICIES`` (the backup store with Object Lock) and a private data dir / ledger."""
    s3 = iam_moto.client("s3")
    for bucket, region in STORE_BUCKETS.items():
        extra: dict[str, Any] = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=bucket == "lp-backups", **extra)
    s3.put_bucket_versioning(Bucket="lp-src", VersioningConfiguration={"Status": "Enabled"})
    base = tmp_path_factory.mktemp("lp-object-stores")
    (base / "policies.yaml").write_text(LP_POLICIES)
    saved = {k: os.environ.get(k) for k in ("RUNBOOKS_BACKUP_POLICIES", "RUNBOOKS_DATA_DIR")}
    os.environ["RUNBOOKS_BACKUP_POLICIES"] = str(base / "policies.yaml")
    os.environ["RUNBOOKS_DATA_DIR"] = str(base / "data")
    try:
        yield base
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Counter:
    """Unique names for the runs of one module (the ledger keys on run ids)."""

    n = 0

    @classmethod
    def next(cls, prefix: str) -> str:
        cls.n += 1
        return f"{prefix}-{cls.n}"


def backup_run(server: IamMoto, base: Path) -> Callable[[], dict[str, Any]]:
    """One real run of the backup_object_stores task body's call (``back_up``): a new source object each time,
    so every run copies, writes a locked point and prunes the previous one (retention: one per hour)."""
    from include.backup.policies import load_policies
    from include.backup.runner import BackupFailed, back_up
    from include.changes.ledger import Ledger

    ledger = Ledger.from_url(f"sqlite:///{base / 'ledger.db'}")

    def call() -> dict[str, Any]:
        run_id = Counter.next("lp-backup")
        server.client("s3").put_object(Bucket="lp-src", Key=f"data/{run_id}.txt", Body=run_id.encode() * 100)
        try:
            return back_up(load_policies().get("lp-s3-to-s3"), run_id=run_id, dry_run=False, ledger=ledger,
                           validate=False)
        except BackupFailed as exc:  # what the task log prints: the errors and each object's failure
            failures = "; ".join(f"{f['key']}: {f['error']}" for f in exc.report.get("failures") or [])
            raise RuntimeError(f"{exc} | {failures}") from exc
    return call


def task_context(dag_id: str, run_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parts of an Airflow task context the runbooks' task bodies read (the DAG's own params declared)."""
    from types import SimpleNamespace

    class TI:
        def xcom_push(self, key: str, value: Any) -> None:
            pass

    return {"run_id": run_id, "ti": TI(), "params": dict(params),
            "dag": SimpleNamespace(dag_id=dag_id, params={k: None for k in params}),
            "dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id, conf=dict(params), run_type="manual",
                                       triggering_user_name="lp-test")}


def failed_items(change_set: Any) -> list[str]:
    return [f"{i.step} {i.resource_id}: {i.plan_error or i.apply_error or i.verify_error}"
            for i in change_set.items if i.plan_error or i.apply_error or i.verify_error or i.outcome == "failed"]


def restore_run() -> dict[str, Any]:
    """restore_objects' task bodies in the DAG's order (resolve -> plan -> apply -> verify) into a new prefix of a
    scratch bucket (only new objects: no approval needed)."""
    from include.backup.restore import RESTORE, plan_restore, resolve_request
    from include.changes.runbook import ChangeSet

    run_id = Counter.next("lp-restore")
    ctx = task_context("restore_objects", run_id, {
        "policy": "lp-s3-to-s3", "destination": f"aws-prod:lp-restore/{run_id}/", "dry_run": False,
        "point": None, "prefix": "", "reason": "least-privilege proof", "max_concurrency": None,
        "max_errors": None, "idempotency_key": None})
    planned = plan_restore(ctx, resolve_request(ctx))
    problems = failed_items(ChangeSet.from_dict(planned))
    if problems:
        raise RuntimeError("; ".join(problems))
    verified = ChangeSet.from_dict(RESTORE.verify(ctx, RESTORE.apply(ctx, planned, None)))
    problems = failed_items(verified)
    if problems:
        raise RuntimeError("; ".join(problems))
    return {"written": [i.resource_id for i in verified.items if i.outcome == "changed"]}


def test_backup_object_stores_under_its_generated_policy(iam_moto: IamMoto, object_stores: Path) -> None:
    run = backup_run(iam_moto, object_stores)
    iam_moto.use(iam_moto.user_with_policy("lp-backup_object_stores",
                                           with_moto_aliases(document("backup_object_stores"))))
    first, second = run(), run()
    assert first["status"] == second["status"] == "succeeded"
    assert second["totals"]["copied"] == 1 and second["totals"]["reused"] >= 1
    assert first["point_id"] in second["retention"]["points_deleted"]  # pruned: s3:DeleteObject was used
    s3 = iam_moto.client("s3")
    manifest = s3.head_object(Bucket="lp-backups", Key=second["manifest"])
    assert manifest["ObjectLockMode"] == "GOVERNANCE"
    unchecked = removal_check(iam_moto, "backup_object_stores", [("backup run", frozenset(
        actions_of(document("backup_object_stores"))), run)], not_exercised={
        "s3:AbortMultipartUpload": "called only to abort a multipart upload that failed",
        "s3:GetObjectRetention": "the retention is read from HeadObject's headers (checked by moto as s3:GetObject; "
                                 "AWS leaves the headers out without s3:GetObjectRetention)",
        "s3:PutObjectRetention": "moto checks PUT ?retention as s3:PutObject (and keeps PutObject's lock, so the "
                                 "run need not set it again)",
    })
    assert set(unchecked) <= {"s3:AbortMultipartUpload", "s3:GetObjectRetention", "s3:PutObjectRetention",
                              "s3:GetBucketObjectLockConfiguration", "s3:ListBucket"}


def test_restore_objects_under_its_generated_policy(iam_moto: IamMoto, object_stores: Path) -> None:
    iam_moto.use(iam_moto.admin)
    backup_run(iam_moto, object_stores)()  # a point to restore, made with the backup runbook's own rights
    iam_moto.use(iam_moto.user_with_policy("lp-restore_objects", with_moto_aliases(document("restore_objects"))))
    done = restore_run()
    assert done["written"] and all(r.startswith("s3://lp-restore/") or "lp-restore" in r for r in done["written"])
    unchecked = removal_check(iam_moto, "restore_objects", [("restore run", frozenset(
        actions_of(document("restore_objects"))), restore_run)], not_exercised={
        "s3:AbortMultipartUpload": "called only to abort a multipart upload that failed",
        "kms:Decrypt": "only for SSE-KMS buckets: moto's S3 does not call KMS on a read",
        "kms:GenerateDataKey": "only for SSE-KMS buckets: moto's S3 does not call KMS on a write",
    })
    assert set(unchecked) == {"s3:AbortMultipartUpload", "kms:Decrypt", "kms:GenerateDataKey"}


# ---- backup_snapshots ------------------------------------------------------------------------------------------
ADMIN_CONN = "aws_lp_admin"


def admin_target(server: IamMoto) -> Target:
    """aws-prod through a second connection holding the administrator's keys (seeding while a runbook's user is
    the ``aws`` connection)."""
    os.environ[f"AIRFLOW_CONN_{ADMIN_CONN.upper()}"] = json.dumps({
        "conn_type": "aws", "login": server.admin[0], "password": server.admin[1],
        "extra": {"endpoint_url": server.endpoint, "region_name": REGION}})
    return load_targets().get("aws-prod").model_copy(update={"conn_id": ADMIN_CONN})


@pytest.fixture(scope="module")
def snapshot_estate(iam_moto: IamMoto) -> dict[str, Any]:
    """One volume (encrypted), one RDS instance and one DynamoDB table tagged for the policy below."""
    from include.capabilities import snapshots_for

    tags = [{"Key": "backup", "Value": "lp-daily"}]
    ec2 = iam_moto.client("ec2")
    ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1, Encrypted=True,
                      TagSpecifications=[{"ResourceType": "volume", "Tags": [*tags, {"Key": "Name", "Value": "lp-snap"}]}])
    iam_moto.client("rds").create_db_instance(
        DBInstanceIdentifier="lp-snap-db", Engine="postgres", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
        MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1", Tags=tags)
    iam_moto.client("dynamodb").create_table(
        TableName="lp-snap-table", BillingMode="PAY_PER_REQUEST", Tags=tags,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    cap = snapshots_for(admin_target(iam_moto))
    resources = cap.tagged_resources("backup", "lp-daily", ["aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table"])
    assert len(resources) == 3
    return {"resources": resources}


def snapshot_run(server: IamMoto, resources: list[Any], base: Path) -> Callable[[], dict[str, Any]]:
    """backup_snapshots' task bodies' calls (select -> find -> plan -> apply -> verify), forced, after the
    administrator made an expired snapshot of ours per resource: every run creates, copies and deletes."""
    from datetime import UTC, datetime, timedelta

    from include.backup import snapshots as runbook
    from include.backup.policies import BackupConfig, Retention, SnapshotPolicy
    from include.backup.snapshots_steps import split_step
    from include.capabilities import snapshots_for
    from include.capabilities.snapshots import Marks, run_token
    from include.changes.ledger import Ledger

    policy = SnapshotPolicy(name="lp-snapshots", target="aws-prod", tag_key="backup", tag_value="lp-daily",
                            schedule="@daily", copy_to_region="eu-west-1", retention=Retention(daily=1))
    config = BackupConfig(snapshot_policies=(policy,))
    ledger = Ledger.from_url(f"sqlite:///{base / 'snapshots-ledger.db'}")

    def call() -> dict[str, Any]:
        key = Counter.next("backup_snapshots:lp")
        now = datetime.now(UTC)
        old = now - timedelta(days=30)
        admin = snapshots_for(admin_target(server))
        for resource in resources:
            admin.create(resource, Marks(policy=policy.name, source=resource.resource_id, created_at=old,
                                         run=run_token(f"seed:{key}")))
        request = runbook.select({"policies": [policy.name], "force": True}, dry_run=False, run_key=key, now=now,
                                 config=config, wait=3, interval=0.1)
        planned = runbook.plan(request, runbook.find_resources(request))
        problems = failed_items(planned)
        if problems:
            raise RuntimeError("; ".join(problems))
        verified = runbook.verify(runbook.apply(planned, ledger=ledger, ledger_key=key, holder="lp-test"))
        problems = failed_items(verified)
        if problems:
            raise RuntimeError("; ".join(problems))
        done: dict[str, int] = {}
        for item in verified.items:
            step = split_step(item.step)[0]
            done[step] = done.get(step, 0) + (item.outcome == "changed")
        return done
    return call


def test_backup_snapshots_under_its_generated_policy(iam_moto: IamMoto, snapshot_estate: dict[str, Any],
                                                     object_stores: Path) -> None:
    from include.backup.snapshots_steps import COPY, CREATE, DELETE

    run = snapshot_run(iam_moto, snapshot_estate["resources"], object_stores)
    iam_moto.use(iam_moto.user_with_policy("lp-backup_snapshots", with_moto_aliases(document("backup_snapshots"))))
    done = run()
    assert done == {CREATE: 3, COPY: 2, DELETE: 3}, done  # DynamoDB backups cannot be copied across regions
    removal_check(iam_moto, "backup_snapshots", [("snapshot run", frozenset(
        actions_of(document("backup_snapshots"))), run)], not_exercised={})
