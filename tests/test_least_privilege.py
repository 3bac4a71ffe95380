"""Least privilege, proven: the generated per-runbook policies are current, complete, sufficient and minimal.

- ``deploy/iam/`` equals what ``include.least_privilege`` generates from the code's declarations now, and every
  runbook in ``dags/`` has an entry there (a runbook added later without a policy fails here);
- against this module's own moto server with IAM enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``), an IAM user
  holding exactly a runbook's generated policy, its access keys in the Airflow ``aws`` connection
  (``AIRFLOW_CONN_AWS_ESTATE``, as production configures it), runs the runbook's cloud work through the same
  ``include/`` functions its tasks call: it succeeds. With any single action removed from that policy, the run
  (or the declaration unit that needs it: a lister, a fixer, a provisioning kind) fails with an access-denied
  message naming the action. Every AWS runbook is covered; what the emulator cannot check (Route 53, a few S3
  calls moto checks under other names, calls AWS authorizes against a second action) is listed per runbook with
  the reason, and deploy/iam/README.md has the table.

One moto server and one seed serve the whole module; runs make their own fresh resources where a run consumes
them (a promotion, a deletion). Where the code under test takes its targets as an argument (inventory,
snapshots, drift), the removal loop runs in ``WORKERS`` threads, each its own IAM user and connection.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from include import least_privilege as lp
from include.records import ResourceRecord
from include.targets import Target, TargetsConfig, load_targets
from localdev.emulators import AWS_CONN_ID, start_moto

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
#: AWS action -> the name moto 5.2.5 checks it under, where moto uses the signing name as the prefix (CloudWatch is
#: signed as ``monitoring``). Only that action maps to the moto name, so its removal is still checked.
MOTO_PREFIX_ALIASES = {"cloudwatch:GetMetricData": "monitoring:GetMetricData"}
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
    # a denied HEAD of one version (no body: code "403") names the version permission
    head: dict[str, Any] = {"Error": {"Code": "403", "Message": "Forbidden"}}
    Model.name = "HeadObject"
    name_denied_permission(parsed=head, model=Model(), context={"runbooks_names_version": True})
    assert head["Error"]["Message"] == ("Access Denied (HTTP 403) (missing permission s3:GetObjectVersion: HeadObject "
                                        "needs it)")
    # CloudWatch is signed as "monitoring"; its IAM actions are cloudwatch:*
    assert denied_message("Access Denied", "monitoring", "GetMetricData").endswith(
        "(missing permission cloudwatch:GetMetricData: GetMetricData needs it)")
    other: dict[str, Any] = {"Error": {"Code": "NoSuchBucket", "Message": "gone"}}
    name_denied_permission(parsed=other, model=Model())
    assert other["Error"]["Message"] == "gone"


# ---- moto with IAM enforcement ---------------------------------------------------------------------------------
class IamMoto:
    """A private moto server that checks every request after the first three against the caller's policies."""

    def __init__(self, endpoint: str, admin: tuple[str, str]) -> None:
        self.endpoint = endpoint
        self.admin = admin
        self.lock = threading.Lock()
        self.keys: dict[str, tuple[str, str]] = {}

    def client(self, service: str, keys: tuple[str, str] | None = None) -> Any:
        import boto3

        key, secret = keys or self.admin
        with self.lock:  # boto3's default session is not thread-safe
            return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint, aws_access_key_id=key,
                                aws_secret_access_key=secret)

    @contextlib.contextmanager
    def as_admin(self) -> Iterator[None]:
        """The runbooks' ``aws`` connection holds the administrator's keys meanwhile (seeding; one worker only)."""
        saved = self.keys.get(AWS_CONN_ID)
        self.use(self.admin)
        try:
            yield
        finally:
            if saved is not None:
                self.use(saved)

    def use(self, keys: tuple[str, str], conn_id: str = AWS_CONN_ID) -> None:
        """Point the runbooks' Airflow connection (or ``conn_id``) at this server with these access keys."""
        self.keys[conn_id] = keys
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({
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

    log = tmp_path_factory.mktemp("iam-moto") / "moto.log"
    proc, endpoint = start_moto(log, {"INITIAL_NO_AUTH_ACTION_COUNT": "3"})
    saved = os.environ.get(f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}")
    try:
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
        for name in [k for k in os.environ if k.startswith("AIRFLOW_CONN_AWS_LP_")]:
            os.environ.pop(name)  # the workers' and the administrator's connections
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


def aws_target(conn_id: str = AWS_CONN_ID) -> Target:
    target = load_targets().get("aws-prod")
    return target.model_copy(update={"regions": [REGION], "conn_id": conn_id})


def targets_via(conn_id: str) -> TargetsConfig:
    """The targets, the AWS ones through ``conn_id`` (a worker's own IAM user)."""
    config = load_targets()
    return config.model_copy(update={"targets": tuple(
        t.model_copy(update={"conn_id": conn_id}) if t.cloud == "aws" else t for t in config.targets)})


def document(dag_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((lp.OUT_DIR / lp.file_name(dag_id, "aws")).read_text())
    return doc


def actions_of(doc: dict[str, Any]) -> list[str]:
    return sorted(a for statement in doc["Statement"] for a in statement["Action"])


def without(doc: dict[str, Any], action: str) -> dict[str, Any]:
    statements = [{**s, "Action": [a for a in s["Action"] if a != action]} for s in doc["Statement"]]
    return {**doc, "Statement": [s for s in statements if s["Action"]]}


def with_moto_aliases(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` plus moto's own name of every call moto checks under another name (MOTO_S3_ALIASES,
    MOTO_PREFIX_ALIASES)."""
    aliases = {**MOTO_S3_ALIASES, **MOTO_PREFIX_ALIASES}
    extra = sorted({aliases[a] for a in actions_of(doc) if a in aliases} - set(actions_of(doc)))
    if not extra:
        return doc
    return {**doc, "Statement": [*doc["Statement"], {"Sid": "MotoNames", "Effect": "Allow", "Action": extra,
                                                     "Resource": "*"}]}


#: (what runs, the actions it declares, the run: it takes the Airflow connection id to use).
Unit = tuple[str, frozenset[str], Callable[[str], object]]
DENIED_WORDS = ("AccessDenied", "not authorized", "access_denied", "Access Denied")


def _check_one(server: IamMoto, user: str, conn_id: str, doc: dict[str, Any], removed: list[str],
               expect_failure: bool, units: list[Unit], misnamed: str | None = None) -> str | None:
    """Run ``units`` as ``user`` holding ``doc`` without ``removed``; a problem, or None when it went as it should.

    One action removed (``expect_failure``): the first unit that fails must fail with an access-denied error
    naming it (or, for a ``misnamed`` action, with that known text), and one of them must fail. Several removed
    (the not-exercised ones): every unit still succeeds.
    """
    server.set_policy(user, with_moto_aliases(functools.reduce(without, removed, doc)))
    for unit in units:
        try:
            unit[2](conn_id)
        except Exception as exc:  # the unit's failure is what is checked
            message = str(exc)
            if not expect_failure:
                return f"{unit[0]} failed without {', '.join(removed)} (listed as not exercised): {message[:300]}"
            if misnamed is not None:
                return None if misnamed in message else (
                    f"without {removed[0]}, {unit[0]} failed but not as known ({misnamed!r}): {message[:300]}")
            if removed[0] not in message or not any(w in message for w in DENIED_WORDS):
                return f"without {removed[0]}, {unit[0]} failed but not naming it: {message[:300]}"
            return None
    if expect_failure:
        return f"without {removed[0]}, {' / '.join(u[0] for u in units)} still succeeded"
    return None


def removal_check(server: IamMoto, dag_id: str, units: list[Unit], not_exercised: Mapping[str, str] | None = None,
                  workers: int = 1, misnamed: Mapping[str, str] | None = None) -> list[str]:
    """For every action of the runbook's policy: without it, a unit that declares it fails naming it.

    Every unit declaring the action runs in turn until one fails (a create unit and an update unit may both
    declare a tagging action that only the update calls on its own).
    ``not_exercised``: the actions (with why) that the runs cannot make fail on the emulator (a call made only on a
    failure path, or one moto checks under another action name or not at all). One run of each unit declaring
    them, without all of them at once, must still succeed: the list is exact, not a blanket exemption.
    ``misnamed``: action -> the text the run fails with instead of naming it (a product gap, see the README).
    ``workers`` > 1: the removals run in that many threads, each as its own IAM user through its own Airflow
    connection (the units must use the connection id they are given, and not share mutable resources).
    Returns the actions the emulator could not check (moto checks that S3 call under another name, or
    ``not_exercised``).
    """
    doc = document(dag_id)
    expected_ok = dict(not_exercised or {})
    known_text = dict(misnamed or {})
    unknown = sorted((set(expected_ok) | set(known_text)) - set(actions_of(doc)))
    assert unknown == [], f"{dag_id}: not_exercised / misnamed name actions its policy does not hold: {unknown}"
    aliased = {MOTO_S3_ALIASES[a] for a in actions_of(doc) if a in MOTO_S3_ALIASES}
    unchecked: list[str] = []
    jobs: list[tuple[list[str], bool, list[Unit]]] = []
    for action in actions_of(doc):
        # moto's own name of a call the policy grants under its AWS name cannot be taken away either
        if action in MOTO_S3_ALIASES or action in aliased or action.split(":")[0] in MOTO_UNCHECKABLE_SERVICES:
            unchecked.append(action)
            continue
        declaring = [u for u in units if action in u[1]]
        assert declaring, f"{dag_id}: no declaration unit declares {action}"
        if action in expected_ok:
            unchecked.append(action)
        else:
            jobs.append(([action], True, declaring))
    if expected_ok:
        jobs.append((sorted(expected_ok), False, [u for u in units if u[1] & set(expected_ok)]))
    conns = [AWS_CONN_ID] if workers == 1 else [f"aws_lp_w{i}" for i in range(workers)]
    users = []
    for i, conn in enumerate(conns):
        user = f"lp-{dag_id}-minus{i}"
        server.use(server.user_with_policy(user, with_moto_aliases(doc)), conn)
        users.append(user)

    def work(i: int) -> list[str]:
        found = []
        for removed, expect_failure, declaring in jobs[i::len(conns)]:
            problem = _check_one(server, users[i], conns[i], doc, removed, expect_failure, declaring,
                                 known_text.get(removed[0]) if expect_failure else None)
            if problem:
                found.append(problem)
        return found

    with ThreadPoolExecutor(max_workers=len(conns)) as pool:
        problems = [p for found in pool.map(work, range(len(conns))) for p in found]
    assert problems == [], "\n".join(problems)
    return unchecked


# ---- inventory_estate ------------------------------------------------------------------------------------------
def inventory_units() -> list[Unit]:
    from include.inventory.collect import collect_target
    from include.inventory.registry import listers_for

    def run(service: str) -> Callable[[str], None]:
        def call(conn_id: str) -> None:
            result = collect_target(aws_target(conn_id), services=[service])
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
    unchecked = removal_check(iam_moto, "inventory_estate", inventory_units(), workers=2)
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

            def call(conn_id: str, entry: Any = entry, rec: ResourceRecord = rec) -> None:
                # the fixer reaches the cloud through its record's target: the ``aws`` connection (one worker)
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
        call(AWS_CONN_ID)
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
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNBOOKS_BACKUP_POLICIES", str(base / "policies.yaml"))
        mp.setenv("RUNBOOKS_DATA_DIR", str(base / "data"))
        yield base


class Counter:
    """Unique names for the runs of one module (the ledger keys on run ids); safe across worker threads."""

    _count = itertools.count(1)

    @classmethod
    def next(cls, prefix: str) -> str:
        return f"{prefix}-{next(cls._count)}"


def backup_run(server: IamMoto, base: Path) -> Callable[[str], dict[str, Any]]:
    """One real run of the backup_object_stores task body's call (``back_up``): a new source object each time,
    so every run copies, writes a locked point and prunes the previous one (retention: one per hour)."""
    from include.backup.policies import load_policies
    from include.backup.runner import BackupFailed, back_up
    from include.changes.ledger import Ledger

    ledger = Ledger.from_url(f"sqlite:///{base / 'ledger.db'}")

    def call(conn_id: str) -> dict[str, Any]:
        run_id = Counter.next("lp-backup")
        server.client("s3").put_object(Bucket="lp-src", Key=f"data/{run_id}.txt", Body=run_id.encode() * 100)
        try:
            return back_up(load_policies().get("lp-s3-to-s3"), run_id=run_id, dry_run=False, ledger=ledger,
                           validate=False, targets=targets_via(conn_id))
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


def restore_run(conn_id: str) -> dict[str, Any]:
    """restore_objects' task bodies in the DAG's order (resolve -> plan -> apply -> verify) into a new prefix of a
    scratch bucket (only new objects: no approval needed). Through the ``aws`` connection (its steps load the
    targets themselves): ``conn_id`` must be that one."""
    from include.backup.restore import RESTORE, plan_restore, resolve_request
    from include.changes.runbook import ChangeSet

    assert conn_id == AWS_CONN_ID
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
    first, second = run(AWS_CONN_ID), run(AWS_CONN_ID)
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
        "s3:GetObjectVersion": "single-part objects are read pinned by If-Match on the listed ETag, without a HEAD; "
                               "a read pinned to a VersionId (multipart / SSE-KMS objects, a retry after a change) "
                               "needs it, which these runs' objects do not",
    })
    assert set(unchecked) <= {"s3:AbortMultipartUpload", "s3:GetObjectRetention", "s3:PutObjectRetention",
                              "s3:GetBucketObjectLockConfiguration", "s3:ListBucket", "s3:GetObjectVersion"}


#: What a restore (restore_objects, restore_drill) declares but cannot be made to fail on the emulator.
RESTORE_NOT_EXERCISED = {
    "s3:AbortMultipartUpload": "called only to abort a multipart upload that failed",
    "kms:Decrypt": "only for SSE-KMS buckets: moto's S3 does not call KMS on a read",
    "kms:GenerateDataKey": "only for SSE-KMS buckets: moto's S3 does not call KMS on a write",
}


def test_restore_objects_under_its_generated_policy(iam_moto: IamMoto, object_stores: Path) -> None:
    iam_moto.use(iam_moto.admin)
    backup_run(iam_moto, object_stores)(AWS_CONN_ID)  # a point to restore, made with the backup runbook's own rights
    iam_moto.use(iam_moto.user_with_policy("lp-restore_objects", with_moto_aliases(document("restore_objects"))))
    done = restore_run(AWS_CONN_ID)
    assert done["written"] and all(r.startswith("s3://lp-restore/") or "lp-restore" in r for r in done["written"])
    unchecked = removal_check(iam_moto, "restore_objects", [("restore run", frozenset(
        actions_of(document("restore_objects"))), restore_run)], not_exercised=RESTORE_NOT_EXERCISED)
    assert set(unchecked) == set(RESTORE_NOT_EXERCISED)


# ---- backup_snapshots ------------------------------------------------------------------------------------------
ADMIN_CONN = "aws_lp_admin"
#: Removal-loop threads (each its own IAM user, connection and resources): the machine has two cores.
WORKERS = 2


def admin_target(server: IamMoto) -> Target:
    """aws-prod through a second connection holding the administrator's keys (seeding while a runbook's user is
    the ``aws`` connection)."""
    server.use(server.admin, ADMIN_CONN)
    return load_targets().get("aws-prod").model_copy(update={"conn_id": ADMIN_CONN})


def worker_of(conn_id: str) -> int:
    """Which worker's resources a connection's runs use: the ``aws`` connection (the run under the whole policy)
    uses worker 0's, sequentially, before the removal loop starts."""
    return int(conn_id.rsplit("_w", 1)[1]) if "_w" in conn_id else 0


@pytest.fixture(scope="module")
def snapshot_estate(iam_moto: IamMoto) -> list[list[Any]]:
    """Per worker: one volume (encrypted), one RDS instance and one DynamoDB table tagged ``backup=lp-daily-<n>``."""
    from include.capabilities import snapshots_for

    cap = snapshots_for(admin_target(iam_moto))
    sets = []
    for n in range(WORKERS):
        tags = [{"Key": "backup", "Value": f"lp-daily-{n}"}]
        iam_moto.client("ec2").create_volume(AvailabilityZone=f"{REGION}a", Size=1, Encrypted=True, TagSpecifications=[
            {"ResourceType": "volume", "Tags": [*tags, {"Key": "Name", "Value": f"lp-snap-{n}"}]}])
        iam_moto.client("rds").create_db_instance(
            DBInstanceIdentifier=f"lp-snap-db-{n}", Engine="postgres", DBInstanceClass="db.t3.micro",
            AllocatedStorage=20, MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1", Tags=tags)
        iam_moto.client("dynamodb").create_table(
            TableName=f"lp-snap-table-{n}", BillingMode="PAY_PER_REQUEST", Tags=tags,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
        found = cap.tagged_resources("backup", f"lp-daily-{n}", ["aws.ec2.volume", "aws.rds.instance",
                                                                 "aws.dynamodb.table"])
        assert len(found) == 3
        sets.append(found)
    return sets


def snapshot_run(server: IamMoto, estate: list[list[Any]], base: Path) -> Callable[[str], dict[str, int]]:
    """backup_snapshots' task bodies' calls (select -> find -> plan -> apply -> verify), forced, after the
    administrator made two old snapshots of ours per resource: every run creates, copies and deletes (both expire:
    the policy keeps only the newest day). Each worker has its own policy and resources (retention deletes what it finds)."""
    from datetime import UTC, datetime, timedelta

    from include.backup import snapshots as runbook
    from include.backup.policies import BackupConfig, Retention, SnapshotPolicy
    from include.backup.snapshots_steps import split_step
    from include.capabilities import snapshots_for
    from include.capabilities.snapshots import Marks, run_token
    from include.changes.ledger import Ledger

    # Only the newest day is kept, whatever today's date: with the default weekly / monthly counts, the two old
    # snapshots (30 and 31 days ago) fall into two months on the 1st of a month and both stay, so nothing expires.
    policies = [SnapshotPolicy(name=f"lp-snapshots-{n}", target="aws-prod", tag_key="backup", tag_value=f"lp-daily-{n}",
                               schedule="@daily", copy_to_region="eu-west-1",
                               retention=Retention(daily=1, weekly=0, monthly=0))
                for n in range(len(estate))]
    config = BackupConfig(snapshot_policies=tuple(policies))
    ledger = Ledger.from_url(f"sqlite:///{base / 'snapshots-ledger.db'}")
    admin = snapshots_for(admin_target(server))

    def call(conn_id: str) -> dict[str, int]:
        n = worker_of(conn_id)
        policy, targets = policies[n], targets_via(conn_id)
        key = Counter.next("backup_snapshots:lp")
        now = datetime.now(UTC)
        old = now - timedelta(days=30, minutes=int(key.rsplit("-", 1)[1]))  # snapshot names carry the time
        for resource in estate[n]:
            for days in (0, 1):
                admin.create(resource, Marks(policy=policy.name, source=resource.resource_id,
                                             created_at=old - timedelta(days=days), run=run_token(f"seed:{key}:{days}")))
        request = runbook.select({"policies": [policy.name], "force": True}, dry_run=False, run_key=key, now=now,
                                 config=config, wait=3, interval=0.1)
        planned = runbook.plan(request, runbook.find_resources(request, targets=targets), targets=targets)
        problems = failed_items(planned)
        if problems:
            raise RuntimeError("; ".join(problems))
        applied = runbook.apply(planned, ledger=ledger, ledger_key=key, holder="lp-test", targets=targets)
        problems = failed_items(applied)  # (the verify task's bounded waits would only repeat the failure)
        if problems:
            raise RuntimeError("; ".join(problems))
        verified = runbook.verify(applied, targets=targets)
        problems = failed_items(verified)
        if problems:
            raise RuntimeError("; ".join(problems))
        done: dict[str, int] = {}
        for item in verified.items:
            step = split_step(item.step)[0]
            done[step] = done.get(step, 0) + (item.outcome == "changed")
        return done
    return call


def test_backup_snapshots_under_its_generated_policy(iam_moto: IamMoto, snapshot_estate: list[list[Any]],
                                                     object_stores: Path) -> None:
    from include.backup.snapshots_steps import COPY, CREATE, DELETE

    run = snapshot_run(iam_moto, snapshot_estate, object_stores)
    iam_moto.use(iam_moto.user_with_policy("lp-backup_snapshots", with_moto_aliases(document("backup_snapshots"))))
    done = run(AWS_CONN_ID)
    # DynamoDB backups cannot be copied across regions; each resource's expired snapshot of ours is deleted
    assert done[CREATE] == 3 and done[COPY] == 2 and done[DELETE] >= 3, done
    removal_check(iam_moto, "backup_snapshots", [("snapshot run", frozenset(
        actions_of(document("backup_snapshots"))), run)], workers=WORKERS, not_exercised={
        "ec2:CreateTags": "tags go with CreateSnapshot / CopySnapshot (TagSpecifications): AWS authorizes them as "
                          "ec2:CreateTags, moto does not",
        "rds:AddTagsToResource": "tags go with CreateDBSnapshot / CopyDBSnapshot: AWS authorizes them as "
                                 "rds:AddTagsToResource, moto does not",
        **{action: "copies of encrypted snapshots re-encrypt with KMS on AWS; moto's EC2 / RDS call no KMS"
           for action in ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext",
                          "kms:ReEncryptFrom", "kms:ReEncryptTo")},
    })


# ---- cost_hygiene ----------------------------------------------------------------------------------------------
def record_of(kind: str, resource_id: str, name: str, region: str = REGION) -> ResourceRecord:
    cloud, service, _ = kind.split(".")
    return ResourceRecord(cloud=cloud, target="aws-prod", account="123456789012", region=region, service=service,
                          resource_type=kind, resource_id=resource_id, name=name)


def cleanup_units(server: IamMoto) -> list[Unit]:
    """One unit per AWS cleanup step: the administrator makes a fresh piece of waste, then the step (as the
    cost_hygiene apply task's engine runs it, through the runbook's own connection) plans and applies its change."""
    from include.clouds.aws import ids
    from include.cost.cleanup import all_steps

    account = "123456789012"

    def volume() -> ResourceRecord:
        vid = server.client("ec2").create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
        return record_of("aws.ec2.volume", ids.ec2_arn(REGION, account, "volume", vid), vid)

    def snapshot() -> ResourceRecord:
        ec2 = server.client("ec2")
        vid = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=1)["VolumeId"]
        sid = ec2.create_snapshot(VolumeId=vid)["SnapshotId"]
        return record_of("aws.ec2.snapshot", ids.ec2_snapshot_arn(REGION, sid), sid)

    def instance() -> ResourceRecord:
        ec2 = server.client("ec2")
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        iid = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0][
            "InstanceId"]
        ec2.stop_instances(InstanceIds=[iid])
        return record_of("aws.ec2.instance", ids.ec2_arn(REGION, account, "instance", iid), iid)

    def bucket() -> ResourceRecord:
        name = Counter.next("lp-cost-bucket")
        server.client("s3").create_bucket(Bucket=name)
        return record_of("aws.s3.bucket", ids.s3_bucket_arn(name), name)

    waste = {"aws.ec2.volume": volume, "aws.ec2.snapshot": snapshot, "aws.ec2.instance": instance,
             "aws.s3.bucket": bucket}
    units: list[Unit] = []
    for cls in all_steps().values():
        if cls.cloud != "aws":
            continue
        make = waste[cls.resource_types[0]]

        def call(conn_id: str, cls: Any = cls, make: Callable[[], ResourceRecord] = make) -> None:
            step = cls({}, targets_via(conn_id))
            change = step.plan(make())
            assert change is not None, f"{cls.id}: nothing to change on fresh waste"
            step.apply(change)

        units.append((f"cleanup {cls.id}", frozenset(cls.permissions), call))
    return units


def untagged_first(server: IamMoto, rec: ResourceRecord, call: Callable[[str], object], conn_id: str) -> None:
    """Remove the required cost tags from ``rec`` (as the administrator), then run ``call``."""
    keys = [k for k in REQUIRED_TAGS if k != "owner"]
    service = rec.resource_type.split(".")[1]
    if service == "s3":
        server.client("s3").put_bucket_tagging(Bucket=rec.name, Tagging={"TagSet": [{"Key": "owner", "Value": "alice"}]})
    elif service == "ec2":
        server.client("ec2").delete_tags(Resources=[rec.resource_id.rsplit("/", 1)[1]], Tags=[{"Key": k} for k in keys])
    elif service == "rds":
        server.client("rds").remove_tags_from_resource(ResourceName=rec.resource_id, TagKeys=keys)
    else:
        server.client("dynamodb").untag_resource(ResourceArn=rec.resource_id, TagKeys=keys)
    call(conn_id)


def test_cost_hygiene_under_its_generated_policy(iam_moto: IamMoto) -> None:
    from include.cost.hygiene import TAGS_STEP

    units: list[Unit] = []
    # the tag fixer (tags.required) the cleanup also runs, as remediate_findings runs it: on a resource whose
    # cost tags the administrator removed first (so that each run has tags to write)
    found = {r.name: r for r in records(iam_moto, ["s3", "ec2", "rds", "dynamodb"])}
    for name, perms, call in fixer_units(list(found.values())):
        if name.startswith(f"fixer {TAGS_STEP} "):
            rec = found[name.rsplit(" ", 1)[1]]
            units.append((name, perms, functools.partial(untagged_first, iam_moto, rec, call)))
    # after the fixers: ec2:CreateTags is checked on the fixer's CreateTags call (DeleteVolume's snapshot carries
    # its tags in CreateSnapshot's TagSpecifications, which AWS authorizes as ec2:CreateTags and moto does not)
    units += cleanup_units(iam_moto)
    iam_moto.use(iam_moto.user_with_policy("lp-cost_hygiene", with_moto_aliases(document("cost_hygiene"))))
    for _, _, call in units:
        call(AWS_CONN_ID)
    # the tag fixers reach the cloud through the ``aws`` connection: one worker
    unchecked = removal_check(iam_moto, "cost_hygiene", units)
    assert unchecked == []


# ---- provision_environment / teardown_environment / detect_drift -------------------------------------------------
#: One small environment per kind (Route 53 zones and records left out: moto cannot check Route 53 under IAM
#: enforcement). ``{n}`` makes every run's names new.
KIND_SPECS: dict[str, list[dict[str, Any]]] = {
    "s3": [{"kind": "s3", "name": "logs", "properties": {
        "name": "lp-prov-{n}", "encryption": "aes256", "versioning": True, "force_destroy": True,
        "lifecycle": [{"id": "expire", "expire_days": 90, "noncurrent_expire_days": 30, "abort_multipart_days": 7}]}}],
    "sg": [{"kind": "sg", "name": "web", "properties": {
        "name": "lp-sg-{n}", "description": "lp web tier",
        "ingress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}]}}],
    "ec2": [{"kind": "sg", "name": "web", "properties": {"name": "lp-vm-sg-{n}", "description": "lp"}},
            {"kind": "ec2", "name": "web-1", "properties": {
                "name": "lp-vm-{n}", "image_id": "ami-04681a1dbd79675a5", "instance_type": "t3.micro",
                "security_groups": ["${sg.web.id}"]}}],
    "rds": [{"kind": "rds", "name": "main", "properties": {
        "name": "lp-db-{n}", "engine": "postgres", "engine_version": "16.3", "instance_class": "db.t3.micro",
        "storage_gb": 20, "backup_retention_days": 7}},
            {"kind": "rds", "name": "replica", "properties": {
                "name": "lp-db-{n}-replica", "replica_of": "${rds.main.arn}", "instance_class": "db.t3.micro"}}],
    "dynamodb": [{"kind": "dynamodb", "name": "sessions", "properties": {
        "name": "lp-table-{n}", "hash_key": {"name": "id", "type": "S"}, "pitr": True}}],
}


@pytest.fixture(scope="module")
def environments(tmp_path_factory: pytest.TempPathFactory, object_stores: Path) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("lp-environments")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNBOOKS_ENVIRONMENTS_DIR", str(folder))
        yield folder


#: Per kind, the spec changes that make a provisioning run update what an earlier run created (every update call).
KIND_UPDATES: dict[str, dict[str, dict[str, Any]]] = {
    "s3": {"logs": {"versioning": False, "lifecycle": [{"id": "expire", "expire_days": 60}]}},
    "sg": {"web": {"ingress": [{"protocol": "tcp", "from_port": 8443, "to_port": 8443, "cidrs": ["0.0.0.0/0"]}],
                   "egress": [{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["0.0.0.0/0"]}]}},
    "ec2": {"web-1": {"instance_type": "t3.small", "imdsv2_required": False, "termination_protection": True}},
    "rds": {"main": {"backup_retention_days": 3}},
    "dynamodb": {"sessions": {"pitr": False, "billing_mode": "PROVISIONED", "read_capacity": 1,
                              "write_capacity": 1}},
}


def write_environment(folder: Path, kind: str, name: str | None = None, updated: bool = False) -> str:
    """A new environment of ``kind``'s resources (new names), or ``name``'s spec changed by ``KIND_UPDATES`` (its
    tags too: one removed, one added); the environment's name."""
    import yaml

    name = name or Counter.next(f"lp-{kind}")
    n = name.rsplit("-", 1)[1]
    resources = json.loads(json.dumps(KIND_SPECS[kind]).replace("{n}", n))
    if updated:
        for res in resources:
            res["properties"].update(KIND_UPDATES[kind].get(res["name"], {}))
    (folder / f"{name}.yaml").write_text(yaml.safe_dump({
        "environment": name, "production": False, "owner": "platform-team", "cost_center": "cc-1000",
        "targets": {"aws": "aws-prod"}, "regions": {"aws": REGION},
        "tags": {"team": "lp"} if updated else {"app": "lp"}, "resources": resources}))
    return name


def change_run(mode: str, environment: str) -> dict[str, Any]:
    """provision_environment / teardown_environment task bodies in the DAG's order (approved when asked)."""
    from include.changes.runbook import ChangeSet
    from include.provisioning.runbook import PROVISION, TEARDOWN, resolve_request

    runbook = PROVISION if mode == "provision" else TEARDOWN
    dag_id = "provision_environment" if mode == "provision" else "teardown_environment"
    ctx = task_context(dag_id, Counter.next(f"lp-{mode}"), {
        "environment": environment, "dry_run": False, "reason": "least-privilege proof", "max_concurrency": None,
        "max_errors": None, "idempotency_key": None})
    planned = runbook.plan(ctx, resolve_request(ctx, mode))  # type: ignore[arg-type]
    problems = failed_items(ChangeSet.from_dict(planned))
    if problems:
        raise RuntimeError("; ".join(problems))
    path = runbook.choose_path(planned)
    if path == "report_plan":  # nothing to change, or refused: the report task says which (and fails when refused)
        runbook.report_plan(ctx, planned)
        raise RuntimeError(f"{mode} of {environment}: nothing to change")
    decision = {"chosen_options": ["Approve"], "approved": True, "responded_by": "lp", "timed_out": False}
    applied = runbook.apply(ctx, planned, decision if path == "approve_changes" else None)
    problems = failed_items(ChangeSet.from_dict(applied))
    if problems:
        raise RuntimeError("; ".join(problems))
    verified = ChangeSet.from_dict(runbook.verify(ctx, applied))
    problems = failed_items(verified)
    if problems:
        raise RuntimeError("; ".join(problems))
    return {str(i.labels["address"]): i.outcome for i in verified.items}


def kind_permissions(kind: str, calls: tuple[str, ...]) -> frozenset[str]:
    from include.provisioning.registry import step_class

    aliases = {r["kind"] for r in KIND_SPECS[kind]}
    return frozenset(p for alias in aliases for call in calls for p in step_class(alias).calls[call])


def provision_units(server: IamMoto, folder: Path) -> list[Unit]:
    """Per kind: a create (a new environment) and an update (an environment the administrator provisioned,
    then its spec changed). The steps reach the cloud through the ``aws`` connection: one worker."""
    def create(conn_id: str, kind: str) -> None:
        assert conn_id == AWS_CONN_ID
        outcomes = change_run("provision", write_environment(folder, kind))
        assert set(outcomes.values()) == {"changed"}, outcomes

    def update(conn_id: str, kind: str) -> None:
        assert conn_id == AWS_CONN_ID
        name = write_environment(folder, kind)
        with server.as_admin():
            change_run("provision", name)
        outcomes = change_run("provision", write_environment(folder, kind, name, updated=True))
        assert set(outcomes.values()) == {"changed"}, outcomes

    return [*[(f"provision {kind} (create)", kind_permissions(kind, ("read", "create")),
               functools.partial(create, kind=kind)) for kind in KIND_SPECS],
            *[(f"provision {kind} (update)", kind_permissions(kind, ("read", "update")),
               functools.partial(update, kind=kind)) for kind in KIND_SPECS]]


#: Provisioning actions the runs cannot make fail on moto, and why.
PROVISION_NOT_EXERCISED = {
    "s3:DeleteBucket": "create's compensation only: deletes the new, empty bucket when configuring it failed",
    "secretsmanager:CreateSecret": "RDS creates the master password's secret (ManageMasterUserPassword): AWS "
                                   "authorizes it against the caller, moto does not",
    "kms:DescribeKey": "only for an RDS spec naming kms_key (the proof's specs name none)",
}


def test_provision_environment_under_its_generated_policy(iam_moto: IamMoto, environments: Path) -> None:
    units = provision_units(iam_moto, environments)
    iam_moto.use(iam_moto.user_with_policy("lp-provision_environment",
                                           with_moto_aliases(document("provision_environment"))))
    for _, _, call in units:
        call(AWS_CONN_ID)
    unchecked = removal_check(iam_moto, "provision_environment", units, not_exercised=PROVISION_NOT_EXERCISED)
    assert {a for a in unchecked if not a.startswith("route53:")} == {
        *PROVISION_NOT_EXERCISED, "s3:CreateBucket", "s3:ListBucket", "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketPublicAccessBlock", "s3:GetEncryptionConfiguration", "s3:PutBucketPublicAccessBlock",
        "s3:PutEncryptionConfiguration"}




def teardown_units(server: IamMoto, folder: Path) -> list[Unit]:
    """Per kind: the administrator provisions a new environment (a bucket holding an object, force_destroy on),
    then teardown_environment's task bodies delete it (approved). The ``aws`` connection: one worker."""
    def call(conn_id: str, kind: str) -> None:
        assert conn_id == AWS_CONN_ID
        name = write_environment(folder, kind)
        with server.as_admin():
            change_run("provision", name)
            if kind == "s3":
                bucket = f"lp-prov-{name.rsplit('-', 1)[1]}"
                server.client("s3").put_object(Bucket=bucket, Key="left/behind.txt", Body=b"x")
        outcomes = change_run("teardown", name)
        assert set(outcomes.values()) == {"changed"}, outcomes

    return [(f"teardown {kind}", kind_permissions(kind, ("read", "delete")), functools.partial(call, kind=kind))
            for kind in KIND_SPECS]


def test_teardown_environment_under_its_generated_policy(iam_moto: IamMoto, environments: Path) -> None:
    units = teardown_units(iam_moto, environments)
    iam_moto.use(iam_moto.user_with_policy("lp-teardown_environment",
                                           with_moto_aliases(document("teardown_environment"))))
    for _, _, call in units:
        call(AWS_CONN_ID)
    unchecked = removal_check(iam_moto, "teardown_environment", units, not_exercised={
        "rds:CreateDBSnapshot": "the final snapshot goes with DeleteDBInstance (FinalDBSnapshotIdentifier): AWS "
                                "authorizes it as rds:CreateDBSnapshot, moto does not",
        "s3:DeleteObjectVersion": "emptying deletes versions with DeleteObjects: AWS authorizes each as "
                                  "s3:DeleteObjectVersion, moto checks s3:DeleteObject",
    })
    assert {a for a in unchecked if not a.startswith("route53:")} == {
        "rds:CreateDBSnapshot", "s3:DeleteObjectVersion", "s3:GetBucketObjectLockConfiguration", "s3:ListBucket",
        "s3:GetBucketPublicAccessBlock", "s3:GetEncryptionConfiguration"}


@pytest.fixture(scope="module")
def drift_environment(iam_moto: IamMoto, environments: Path) -> str:
    """One environment of every kind but Route 53's, provisioned (as the administrator)."""
    import yaml

    resources = [r for kind in ("s3", "ec2", "rds", "dynamodb") for r in KIND_SPECS[kind]]
    name = "lp-drift"
    (environments / f"{name}.yaml").write_text(yaml.safe_dump({
        "environment": name, "production": False, "owner": "platform-team", "cost_center": "cc-1000",
        "targets": {"aws": "aws-prod"}, "regions": {"aws": REGION}, "tags": {"app": "lp"},
        "resources": json.loads(json.dumps(resources).replace("{n}", "drift"))}))
    with iam_moto.as_admin():
        change_run("provision", name)
    return name


def drift_run(environment: str) -> Callable[[str], dict[str, Any]]:
    """detect_drift's check: plan the environment (reads only) and report drift; an error is a failure."""
    from include.provisioning.drift import detect

    def call(conn_id: str) -> dict[str, Any]:
        report = detect([environment], targets=targets_via(conn_id))
        if report["errors"]:
            raise RuntimeError("; ".join(f"{e['address']}: {e.get('detail')}" for e in report["errors"]))
        findings = report["environments"][0]["findings"]
        if findings:  # the environment is as provisioned: any finding is a misreading
            raise RuntimeError("; ".join(f"{f['address']}: {f['drift']}: {f.get('detail')}" for f in findings))
        return report
    return call


def test_detect_drift_under_its_generated_policy(iam_moto: IamMoto, drift_environment: str) -> None:
    run = drift_run(drift_environment)
    iam_moto.use(iam_moto.user_with_policy("lp-detect_drift", with_moto_aliases(document("detect_drift"))))
    report = run(AWS_CONN_ID)
    assert report["drifted"] == [] and report["environments"][0]["resources"] == 6
    unchecked = removal_check(iam_moto, "detect_drift", [("drift check", frozenset(actions_of(document(
        "detect_drift"))), run)], workers=WORKERS)
    assert {a for a in unchecked if not a.startswith("route53:")} == {
        "s3:GetBucketObjectLockConfiguration", "s3:GetBucketPublicAccessBlock", "s3:GetEncryptionConfiguration",
        "s3:ListBucket"}


# ---- restore_drill -----------------------------------------------------------------------------------------------
def drill_run(conn_id: str) -> dict[str, Any]:
    """restore_drill's task bodies for the S3 policy (its store has Object Lock: the scratch is lp-restore):
    resolve -> create the scratch -> restore the newest point -> verify every object -> remove the scratch."""
    from include.backup import drill

    assert conn_id == AWS_CONN_ID  # the drill's functions load the targets themselves
    ctx = task_context("restore_drill", Counter.next("lp-drill"), {
        "policies": ["lp-s3-to-s3"], "scratch": {"lp-s3-to-s3": "aws-prod:lp-restore/drills/"}, "dry_run": False,
        "hash_sample_percent": 100})
    spec = drill.resolve_task(ctx)[0]
    scratch = drill.setup_task(ctx, spec)
    try:
        restored = drill.restore_task(ctx, spec, scratch)
        if restored.get("error"):
            raise RuntimeError(str(restored["error"]) + "; " + "; ".join(
                str(f) for f in restored.get("failures") or []))
        verified = drill.verify_task(ctx, spec, scratch, restored)
    finally:
        removed = drill.teardown_task(ctx, scratch)
    assert removed["left"] == 0, removed
    return verified


def test_restore_drill_under_its_generated_policy(iam_moto: IamMoto, object_stores: Path) -> None:
    with iam_moto.as_admin():
        backup_run(iam_moto, object_stores)(AWS_CONN_ID)  # a newest point to drill
    iam_moto.use(iam_moto.user_with_policy("lp-restore_drill", with_moto_aliases(document("restore_drill"))))
    verified = drill_run(AWS_CONN_ID)
    assert verified["success"] and verified["verified"] >= 1
    unchecked = removal_check(iam_moto, "restore_drill", [("drill run", frozenset(
        actions_of(document("restore_drill"))), drill_run)], not_exercised=RESTORE_NOT_EXERCISED)
    assert set(unchecked) == set(RESTORE_NOT_EXERCISED)


# ---- failover_service (its RDS part) -----------------------------------------------------------------------------
def failover_service_spec(n: str) -> dict[str, Any]:
    """A catalog entry for a fresh primary / replica pair (its DNS part is never called: Route 53 is left out)."""
    def side(name: str, identifier: str, value: str) -> dict[str, Any]:
        return {"database": {"target": "aws-prod", "region": REGION, "identifier": identifier,
                             "instance_class": "db.t3.micro"},
                "probes": [{"url": f"http://127.0.0.9:1/{name}"}],
                "dns": {"set_identifier": f"lp-{name}", "values": [value]},
                "fence": {"security_group": "lp-quarantine"}}

    return {"name": f"lp-svc-{n}", "owner": "sre-team", "environment": "local",
            "dns": {"target": "aws-prod", "zone": "lp.example.com", "name": f"svc-{n}.lp.example.com"},
            "primary": side("primary", f"lp-fo-{n}", "127.0.0.2"),
            "standby": side("standby", f"lp-fo-{n}-replica", "127.0.0.3"),
            "replication": {"promote_timeout_seconds": 10, "poll_interval_seconds": 0.1}}


def failover_pair(server: IamMoto, folder: Path) -> tuple[Any, Any, Any]:
    """A fresh primary / replica pair (made by the administrator) and its catalog entry: (service, primary ref,
    standby ref). The catalog file is the runbooks' (``RUNBOOKS_SERVICES_FILE``): one worker."""
    import yaml

    from include.failover.catalog import database_ref, load_catalog

    n = Counter.next("fo").rsplit("-", 1)[1]
    spec = failover_service_spec(n)
    spec["primary"]["database"]["kms_key"] = "alias/lp-replicas"  # what a rebuilt replica is encrypted with
    rds = server.client("rds")
    rds.create_db_instance(DBInstanceIdentifier=f"lp-fo-{n}", Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1",
                           BackupRetentionPeriod=1)
    rds.create_db_instance_read_replica(DBInstanceIdentifier=f"lp-fo-{n}-replica",
                                        SourceDBInstanceIdentifier=f"lp-fo-{n}", DBInstanceClass="db.t3.micro")
    path = folder / f"services-{n}.yaml"
    path.write_text(yaml.safe_dump({"services": [spec]}))
    os.environ["RUNBOOKS_SERVICES_FILE"] = str(path)
    service = load_catalog().get(spec["name"])
    return service, database_ref(service.primary.database), database_ref(service.standby.database)


def run_steps(service: Any, key: str, dns_to: str, steps: list[tuple[Any, Any]]) -> dict[str, bool]:
    """Plan and apply each (step class, database ref) as ``core.apply_step`` runs them (the engine's contract)."""
    from include.failover import core
    from include.failover.steps import db_record

    options = {**core.step_options(service, key, dns_to), "replica_timeout_seconds": 10}
    done = {}
    for step_cls, ref in steps:
        step = step_cls(dict(options))
        change = step.plan(db_record(ref))
        assert change is not None, f"{step_cls.id}: nothing to change"
        done[step_cls.id] = step.apply(change).changed
    return done


def failover_db_run(server: IamMoto, folder: Path, *, failover: bool = True,
                    failback: bool = False) -> Callable[[str], dict[str, Any]]:
    """The RDS work of failover_service (``failover``: the assessment's database reads of both sides, fence the
    primary, promote the standby), of failback_service (``failback``: after a failover the administrator made,
    rebuild the primary as a replica of the standby, fence the standby, promote the primary), or both in turn
    (failover_drill), on a fresh pair. The switch_dns steps and the DNS reads are left out (Route 53)."""
    from include.capabilities.database_failover import database_failover
    from include.failover.steps import FenceDatabase, PromoteReplica, RebuildReplica

    def call(conn_id: str) -> dict[str, Any]:
        assert conn_id == AWS_CONN_ID  # the steps load the catalog and targets themselves
        service, primary, standby = failover_pair(server, folder)
        key = f"lp:{service.name}"
        done: dict[str, Any] = {}
        if failover:
            cap = database_failover(aws_target())
            assert cap.status(standby).is_replica and cap.status(primary).exists
            done["failover"] = run_steps(service, key, "standby", [(FenceDatabase, primary), (PromoteReplica, standby)])
        else:
            with server.as_admin():
                run_steps(service, key, "standby", [(FenceDatabase, primary), (PromoteReplica, standby)])
        if failback:
            done["failback"] = run_steps(service, f"{key}:back", "primary", [
                (RebuildReplica, primary), (FenceDatabase, standby), (PromoteReplica, primary)])
        return done
    return call


@pytest.fixture(scope="module")
def services_folder(iam_moto: IamMoto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    iam_moto.client("ec2").create_security_group(GroupName="lp-quarantine", Description="no ingress")
    key = iam_moto.client("kms").create_key(Description="lp replicas")["KeyMetadata"]["KeyId"]
    iam_moto.client("kms").create_alias(AliasName="alias/lp-replicas", TargetKeyId=key)
    saved = os.environ.get("RUNBOOKS_SERVICES_FILE")
    try:
        yield tmp_path_factory.mktemp("lp-services")
    finally:
        if saved is None:
            os.environ.pop("RUNBOOKS_SERVICES_FILE", None)
        else:
            os.environ["RUNBOOKS_SERVICES_FILE"] = saved


def test_failover_service_rds_part_under_its_generated_policy(iam_moto: IamMoto, services_folder: Path) -> None:
    run = failover_db_run(iam_moto, services_folder)
    iam_moto.use(iam_moto.user_with_policy("lp-failover_service", with_moto_aliases(document("failover_service"))))
    assert run(AWS_CONN_ID) == {"failover": {"failover.fence": True, "failover.promote": True}}
    unchecked = removal_check(iam_moto, "failover_service", [("failover (RDS part)", frozenset(
        actions_of(document("failover_service"))), run)])
    assert {a for a in unchecked if not a.startswith("route53:")} == set()


#: The rebuilt replica is encrypted with the catalog's key: AWS authorizes the key's use against the caller, moto's
#: RDS calls no KMS.
REPLICA_KMS = {action: "an encrypted replica's key is used by RDS on the caller's behalf on AWS; moto's RDS calls "
                       "no KMS" for action in ("kms:CreateGrant", "kms:DescribeKey")}


def test_failback_service_rds_part_under_its_generated_policy(iam_moto: IamMoto, services_folder: Path) -> None:
    run = failover_db_run(iam_moto, services_folder, failover=False, failback=True)
    iam_moto.use(iam_moto.user_with_policy("lp-failback_service", with_moto_aliases(document("failback_service"))))
    assert run(AWS_CONN_ID) == {"failback": {"failover.rebuild_replica": True, "failover.fence": True,
                                             "failover.promote": True}}
    unchecked = removal_check(iam_moto, "failback_service", [("failback (RDS part)", frozenset(
        actions_of(document("failback_service"))), run)], not_exercised=REPLICA_KMS)
    assert {a for a in unchecked if not a.startswith("route53:")} == set(REPLICA_KMS)


def test_failover_drill_rds_part_under_its_generated_policy(iam_moto: IamMoto, services_folder: Path) -> None:
    run = failover_db_run(iam_moto, services_folder, failover=True, failback=True)
    iam_moto.use(iam_moto.user_with_policy("lp-failover_drill", with_moto_aliases(document("failover_drill"))))
    assert run(AWS_CONN_ID) == {"failover": {"failover.fence": True, "failover.promote": True},
                                "failback": {"failover.rebuild_replica": True, "failover.fence": True,
                                             "failover.promote": True}}
    unchecked = removal_check(iam_moto, "failover_drill", [("drill: failover then failback (RDS part)", frozenset(
        actions_of(document("failover_drill"))), run)], not_exercised=REPLICA_KMS)
    assert {a for a in unchecked if not a.startswith("route53:")} == set(REPLICA_KMS)
