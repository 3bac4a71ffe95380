"""Provisioning at scale: a spec of 500 resources on the emulators, against the physical limit.

    python -m bench provisioning            (or: python -m bench.provisioning)

For each repeat, on freshly reset emulators, two OS processes take turns (ours, minimal, ours, ...):

- **ours**: the product code as the runbook runs it: ``plan_items`` (8 reads at once), ``apply_items`` under
  ``RateControl(max_concurrency=8)`` with the SQL ledger and the audit trail, ``verify_items``, then the
  no-change re-plan;
- **minimal** (the physical limit): a plain SDK loop (boto3, google-cloud-storage, azure-storage-blob
  clients, built once) on the same emulators at the same concurrency (8 threads), issuing the minimal
  sequence of API calls for the same resources: one existence read per resource for the plan from empty; the
  creates (and the settings calls each API needs, e.g. S3 encryption, versioning, public access block,
  lifecycle, tags) for the apply, in the same two dependency waves; every read needed to compare every
  managed field for the no-change re-plan. Its end state is checked with our own planner: zero changes.

Each phase is timed inside its process (imports and interpreter start excluded on both sides); the
ratio is ours / minimal of the medians (goal: at most 1.3). API calls are counted on both sides (botocore
events; HTTP requests for GCS and Azure), so a ratio can be read as calls or as time.

Spec (``BENCH_PROVISIONING_RESOURCES``, default 500, in these shares): 30 % S3 buckets (AES256, versioning,
public access block, a lifecycle rule, tags), 10 % security groups, 20 % EC2 instances (each in one of the
groups: references), 20 % DynamoDB tables (PITR), 10 % Route 53 records in one zone (references), 6 % GCS
buckets, 4 % Azure containers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import (
    PROJECT_ROOT,
    BenchError,
    RatioRow,
    console_table,
    env_int,
    last_json_line,
    machine_info,
    ours_env,
    ratio_table,
    run_measured,
    write_results,
)

CONCURRENCY = 8
ENVIRONMENT = "bench"
IMAGE = "ami-04681a1dbd79675a5"
PHASES = ("plan", "apply", "replan")
OWNERSHIP = {"managed-by": "cloud-runbooks", "runbooks-environment": ENVIRONMENT, "owner": "platform-team",
             "cost-center": "cc-1000"}


# ---- the spec ----------------------------------------------------------------------------------------------
def shares(total: int) -> dict[str, int]:
    counts = {"s3": total * 30 // 100, "sg": total * 10 // 100, "ec2": total * 20 // 100,
              "dynamodb": total * 20 // 100, "record": total * 10 // 100, "gcs": total * 6 // 100,
              "container": total * 4 // 100}
    counts["zone"] = 1
    counts["s3"] += total - sum(counts.values())  # rounding goes to S3
    return counts


def spec_document(total: int) -> dict[str, Any]:
    counts = shares(total)
    resources: list[dict[str, Any]] = []
    for n in range(counts["s3"]):
        resources.append({"kind": "s3", "name": f"b{n}", "properties": {
            "name": f"rb-bench-b{n}", "lifecycle": [{"id": "expire", "noncurrent_expire_days": 30}]}})
    for n in range(counts["sg"]):
        resources.append({"kind": "sg", "name": f"g{n}", "properties": {
            "name": f"rb-bench-g{n}", "description": "bench", "ingress": [
                {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidrs": ["10.0.0.0/8"]}]}})
    for n in range(counts["ec2"]):
        resources.append({"kind": "ec2", "name": f"i{n}", "properties": {
            "name": f"rb-bench-i{n}", "image_id": IMAGE, "instance_type": "t3.micro",
            "security_groups": [f"${{sg.g{n % max(counts['sg'], 1)}.id}}"]}})
    for n in range(counts["dynamodb"]):
        resources.append({"kind": "dynamodb", "name": f"t{n}", "properties": {
            "name": f"rb-bench-t{n}", "hash_key": {"name": "id", "type": "S"}}})
    resources.append({"kind": "zone", "name": "z", "properties": {"name": "rb-bench.example.com", "comment": "bench"}})
    for n in range(counts["record"]):
        resources.append({"kind": "record", "name": f"r{n}", "properties": {
            "zone": "${zone.z.name}", "name": f"r{n}.rb-bench.example.com", "type": "A", "ttl": 60,
            "values": [f"10.0.{n // 250}.{n % 250 + 1}"]}})
    for n in range(counts["gcs"]):
        resources.append({"kind": "gcs", "name": f"c{n}", "properties": {"name": f"rb-bench-c{n}", "location": "US"}})
    for n in range(counts["container"]):
        resources.append({"kind": "container", "name": f"k{n}", "properties": {"name": f"rb-bench-k{n}"}})
    return {"environment": ENVIRONMENT, "production": False, "owner": "platform-team", "cost_center": "cc-1000",
            "targets": {"aws": "aws-prod", "gcp": "gcp-prod", "azure": "azure-prod"}, "regions": {"aws": "us-east-1"},
            "resources": resources}


# ---- call counting (both sides) ------------------------------------------------------------------------------
class Calls:
    """API calls: botocore's before-call events, and HTTP requests of the GCS / Azure SDKs."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.count += 1

    def install(self) -> None:
        import botocore.session
        import requests

        original_session = botocore.session.Session.__init__
        counter = self

        def counted_session(self: Any, *args: Any, **kwargs: Any) -> None:
            original_session(self, *args, **kwargs)
            self.register("before-call", counter.add)

        botocore.session.Session.__init__ = counted_session  # type: ignore[method-assign]
        original_send = requests.Session.send

        def counted_send(self: Any, request: Any, **kwargs: Any) -> Any:
            counter.add()
            return original_send(self, request, **kwargs)

        requests.Session.send = counted_send  # type: ignore[method-assign]


def _timed(calls: Calls, phase: Callable[[], Any]) -> dict[str, Any]:
    before = calls.count
    started = time.perf_counter()
    value = phase()
    return {"seconds": time.perf_counter() - started, "calls": calls.count - before, "value": value}


# ---- ours ----------------------------------------------------------------------------------------------------
def run_ours() -> dict[str, Any]:
    calls = Calls()
    calls.install()
    from include.audit import AuditContext
    from include.changes import engine
    from include.changes.ledger import Ledger
    from include.changes.rate import RateControl
    from include.provisioning.base import Session
    from include.provisioning.registry import all_steps
    from include.provisioning.runbook import READ_CONCURRENCY, build_items
    from include.provisioning.spec import load_spec
    from include.targets import load_targets

    all_steps()  # every kind's module (and its SDK) imported before the clock starts
    for module in ("airflow.providers.amazon.aws.hooks.base_aws", "airflow.providers.google.cloud.hooks.gcs",
                   "airflow.providers.microsoft.azure.hooks.wasb"):
        importlib.import_module(module)

    targets = load_targets()
    spec = load_spec(ENVIRONMENT, targets=targets)
    audit = AuditContext(runbook="provision_environment", run_id="bench", actor="bench", dry_run=False)
    items, skipped, _ = build_items(spec, "provision", targets)
    assert not skipped, skipped

    def plan() -> list[Any]:
        return engine.plan_items(items, Session(spec, "provision", targets, cache_absent=True).resolver(),
                                 audit=audit, max_workers=READ_CONCURRENCY)

    planned_phase = _timed(calls, plan)
    planned = planned_phase["value"]
    errors = [i.plan_error for i in planned if i.plan_error]
    if errors:
        raise BenchError(f"our plan failed: {errors[:3]}")
    ledger = Ledger.from_connection("runbooks_state")

    def apply() -> list[Any]:
        return engine.apply_items(planned, Session(spec, "provision", targets).resolver(),
                                  rate=RateControl(str(CONCURRENCY), "0"), ledger=ledger,
                                  ledger_key=f"provision_environment:bench-{time.time()}", holder="bench", audit=audit)

    applied_phase = _timed(calls, apply)
    failed = [(i.resource_id, i.apply_error) for i in applied_phase["value"] if i.outcome != "changed"]
    if failed:
        raise BenchError(f"our apply did not change everything: {failed[:3]}")
    verify_phase = _timed(calls, lambda: engine.verify_items(applied_phase["value"], Session(
        spec, "provision", targets).resolver(), audit=audit, max_workers=READ_CONCURRENCY))
    assert all(i.verified for i in verify_phase["value"])
    replan_phase = _timed(calls, plan)
    left = [i.resource_id for i in replan_phase["value"] if i.change or i.plan_error]
    if left:
        raise BenchError(f"the re-plan after apply is not empty: {left[:5]}")
    return {"resources": len(items), **{name: {k: v for k, v in p.items() if k != "value"} for name, p in
                                        (("plan", planned_phase), ("apply", applied_phase), ("verify", verify_phase),
                                         ("replan", replan_phase))}}


# ---- the minimal SDK loop -------------------------------------------------------------------------------------
def _tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


class Minimal:
    """The minimal API calls for the spec's resources, on plain SDK clients, ``CONCURRENCY`` at a time."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.resources = document["resources"]
        self.tags = {**OWNERSHIP}
        self.group_ids: dict[str, str] = {}
        self.done: dict[str, threading.Event] = {}
        self.zone_id = ""
        self.vpc = ""

    def connect(self) -> None:
        """Plain SDK clients, built once per phase (each phase of a runbook is its own task process)."""
        import boto3
        from azure.storage.blob import BlobServiceClient
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        endpoint = os.environ["AWS_ENDPOINT_URL"]
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                        region_name="us-east-1")
        self.aws = {name: session.client(name, endpoint_url=endpoint) for name in ("s3", "ec2", "dynamodb", "route53")}
        self.gcs = storage.Client(project="runbooks-local", credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": os.environ["STORAGE_EMULATOR_HOST"]})
        conn = json.loads(os.environ["AIRFLOW_CONN_AZURE_ESTATE"])["extra"]
        self.blobs = BlobServiceClient.from_connection_string(conn["connection_string"], api_version=conn["api_version"])

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["kind"] == kind]

    @staticmethod
    def each(work: Callable[[dict[str, Any]], Any], items: Iterable[dict[str, Any]]) -> list[Any]:
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            return list(pool.map(work, list(items)))

    # plan from empty: one existence read per resource ---------------------------------------------------
    def exists(self, res: dict[str, Any]) -> bool:
        name, kind = res["properties"]["name"], res["kind"]
        if kind == "s3":
            try:
                self.aws["s3"].head_bucket(Bucket=name)
                return True
            except Exception:
                return False
        if kind == "sg":
            return bool(self.aws["ec2"].describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
                "SecurityGroups"])
        if kind == "ec2":
            return bool(self.aws["ec2"].describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])[
                "Reservations"])
        if kind == "dynamodb":
            try:
                self.aws["dynamodb"].describe_table(TableName=name)
                return True
            except Exception:
                return False
        if kind == "zone":
            zones = self.aws["route53"].list_hosted_zones_by_name(DNSName=name + ".", MaxItems="1")["HostedZones"]
            return bool(zones) and zones[0]["Name"] == name + "."
        if kind == "record":
            return False  # its zone does not exist yet: nothing to ask
        if kind == "gcs":
            return self.gcs.lookup_bucket(name) is not None
        try:
            self.blobs.get_container_client(name).get_container_properties()
            return True
        except Exception:
            return False

    def plan(self) -> int:
        self.connect()
        return sum(1 for found in self.each(self.exists, self.resources) if found)

    # apply: the creates, in two waves (what the second needs comes from the first) --------------------------
    def create(self, res: dict[str, Any]) -> None:
        props, kind = res["properties"], res["kind"]
        name = props["name"]
        if kind == "s3":
            s3 = self.aws["s3"]
            s3.create_bucket(Bucket=name)
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(self.tags)})
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [
                {"ID": "expire", "Status": "Enabled", "Filter": {"Prefix": ""},
                 "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})
        elif kind == "sg":
            ec2 = self.aws["ec2"]
            group_id = ec2.create_security_group(GroupName=name, Description="bench", VpcId=self.vpc,
                                                 TagSpecifications=[{"ResourceType": "security-group",
                                                                     "Tags": _tags(self.tags)}])["GroupId"]
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
            self.group_ids[res["name"]] = group_id
        elif kind == "ec2":
            group = props["security_groups"][0].split(".")[1]
            tags = _tags({**self.tags, "Name": name})
            self.aws["ec2"].run_instances(
                ImageId=IMAGE, InstanceType="t3.micro", MinCount=1, MaxCount=1,
                SecurityGroupIds=[self.group_ids[group]], DisableApiTermination=False,
                MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}])
        elif kind == "dynamodb":
            ddb = self.aws["dynamodb"]
            ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", Tags=_tags(self.tags),
                             AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                             KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], DeletionProtectionEnabled=False)
            while ddb.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":  # the API requires it
                time.sleep(0.5)
            ddb.update_continuous_backups(TableName=name,
                                          PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        elif kind == "zone":
            r53 = self.aws["route53"]
            self.zone_id = r53.create_hosted_zone(Name=name + ".", CallerReference=f"bench-{time.time()}",
                                                  HostedZoneConfig={"Comment": "bench", "PrivateZone": False})[
                "HostedZone"]["Id"].split("/")[-1]
            r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=self.zone_id, AddTags=_tags(self.tags))
        elif kind == "record":
            from include.provisioning.aws.route53 import companion_name, tags_to_txt

            fqdn = name + "."
            self.aws["route53"].change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch={"Changes": [
                {"Action": "CREATE", "ResourceRecordSet": {"Name": fqdn, "Type": "A", "TTL": 60,
                                                           "ResourceRecords": [{"Value": v} for v in props["values"]]}},
                {"Action": "CREATE", "ResourceRecordSet": {"Name": companion_name(fqdn, "A", None), "Type": "TXT",
                                                           "TTL": 300, "ResourceRecords": tags_to_txt(self.tags)}}]})
        elif kind == "gcs":
            bucket = self.gcs.create_bucket(name, location="US")
            # The emulator ignores metadata on create: one patch sets it (on Cloud Storage, create alone would).
            bucket.labels = dict(self.tags)
            bucket.versioning_enabled = True
            bucket.iam_configuration.uniform_bucket_level_access_enabled = True
            bucket.iam_configuration.public_access_prevention = "enforced"
            bucket._patch_property("lifecycle", {"rule": []})
            bucket._patch_property("storageClass", "STANDARD")
            bucket.patch()
        else:
            from include.clouds.azure.inventory.storage import tags_to_metadata

            self.blobs.create_container(name, metadata=tags_to_metadata(self.tags))

    def apply(self) -> None:
        """One pool, dependencies first in the queue; an instance / record waits for its group / zone only."""
        self.connect()
        self.vpc = self.aws["ec2"].describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        first = ("zone", "sg")
        ordered = ([r for r in self.resources if r["kind"] in first]
                   + [r for r in self.resources if r["kind"] not in (*first, "ec2", "record")]
                   + [r for r in self.resources if r["kind"] in ("ec2", "record")])
        self.done = {f"{r['kind']}.{r['name']}": threading.Event() for r in ordered if r["kind"] in first}

        def work(res: dict[str, Any]) -> None:
            if res["kind"] == "ec2":
                self.done[res["properties"]["security_groups"][0][2:-4]].wait()
            elif res["kind"] == "record":
                self.done["zone.z"].wait()
            self.create(res)
            if res["kind"] in first:
                self.done[f"{res['kind']}.{res['name']}"].set()

        self.each(work, ordered)

    # the no-change re-plan: every read that compares every managed field -----------------------------------
    def read(self, res: dict[str, Any]) -> None:
        name, kind = res["properties"]["name"], res["kind"]
        if kind == "s3":
            s3 = self.aws["s3"]
            s3.get_bucket_location(Bucket=name)
            s3.get_bucket_tagging(Bucket=name)
            s3.get_bucket_encryption(Bucket=name)
            s3.get_public_access_block(Bucket=name)
            s3.get_bucket_lifecycle_configuration(Bucket=name)
            s3.get_bucket_versioning(Bucket=name)
        elif kind == "sg":
            self.aws["ec2"].describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
        elif kind == "ec2":
            found = self.aws["ec2"].describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
            instance = found["Reservations"][0]["Instances"][0]["InstanceId"]
            self.aws["ec2"].describe_instance_attribute(InstanceId=instance, Attribute="disableApiTermination")
        elif kind == "dynamodb":
            ddb = self.aws["dynamodb"]
            arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
            ddb.list_tags_of_resource(ResourceArn=arn)
            ddb.describe_continuous_backups(TableName=name)
        elif kind == "zone":
            r53 = self.aws["route53"]
            zone = r53.list_hosted_zones_by_name(DNSName=name + ".", MaxItems="1")["HostedZones"][0]
            r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone["Id"].split("/")[-1])
        elif kind == "record":
            from include.provisioning.aws.route53 import companion_name

            r53 = self.aws["route53"]
            r53.list_resource_record_sets(HostedZoneId=self.zone_id, StartRecordName=name + ".", StartRecordType="A",
                                          MaxItems="100")
            r53.list_resource_record_sets(HostedZoneId=self.zone_id, StartRecordName=companion_name(name, "A", None),
                                          StartRecordType="TXT", MaxItems="100")
        elif kind == "gcs":
            self.gcs.lookup_bucket(name)
        else:
            self.blobs.get_container_client(name).get_container_properties()

    def replan(self) -> None:
        self.connect()
        self.zone_id = self.aws["route53"].list_hosted_zones_by_name(DNSName="rb-bench.example.com.", MaxItems="1")[
            "HostedZones"][0]["Id"].split("/")[-1]
        self.each(self.read, self.resources)


def run_minimal() -> dict[str, Any]:
    calls = Calls()
    calls.install()
    from include.provisioning.spec import load_spec

    # What the loop imports is imported before the clock starts, as on our side (imports are not API work).
    for module in ("boto3", "google.cloud.storage", "google.auth.credentials", "azure.storage.blob",
                   "include.provisioning.aws.route53", "include.clouds.azure.inventory.storage"):
        importlib.import_module(module)
    document = spec_document_from_disk()
    minimal = Minimal(document)
    plan = _timed(calls, minimal.plan)
    if plan["value"]:
        raise BenchError(f"the minimal loop found {plan['value']} resources before creating any")
    apply = _timed(calls, minimal.apply)
    replan = _timed(calls, minimal.replan)
    # same resources: our planner finds nothing to change in what the minimal loop built
    from include.changes import engine
    from include.provisioning.base import Session
    from include.provisioning.runbook import READ_CONCURRENCY, build_items
    from include.targets import load_targets

    targets = load_targets()
    spec = load_spec(ENVIRONMENT, targets=targets)
    items, _, _ = build_items(spec, "provision", targets)
    check = engine.plan_items(items, Session(spec, "provision", targets, cache_absent=True).resolver(),
                              max_workers=READ_CONCURRENCY)
    differs = [(i.resource_id, i.change.summary if i.change else i.plan_error) for i in check if i.change or i.plan_error]
    if differs:
        raise BenchError(f"the minimal loop's end state differs from the spec: {differs[:5]}")
    return {"resources": len(document["resources"]),
            **{name: {k: v for k, v in p.items() if k != "value"} for name, p in
               (("plan", plan), ("apply", apply), ("replan", replan))}}


def spec_document_from_disk() -> dict[str, Any]:
    import yaml

    path = Path(os.environ["RUNBOOKS_ENVIRONMENTS_DIR"]) / f"{ENVIRONMENT}.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


# ---- the parent ----------------------------------------------------------------------------------------------
def _child(side: str, env: dict[str, str]) -> dict[str, Any]:
    measured = run_measured([sys.executable, "-m", "bench.provisioning", "--child", side], env=env, cwd=PROJECT_ROOT,
                            timeout=3600)
    if not measured.ok:
        raise BenchError(f"{side} failed:\n{measured.tail(40)}")
    result = last_json_line(measured.stdout)
    result["process_seconds"] = measured.wall_s
    return result


def _warm(aws_endpoint: str) -> None:
    """After a reset, moto builds each service's backend (EC2: the default VPC, AMIs...) on its first call.

    The parent pays that once before each child, so neither side's first phase carries it.
    """
    import boto3

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                    region_name="us-east-1")
    session.client("ec2", endpoint_url=aws_endpoint).describe_vpcs()
    session.client("s3", endpoint_url=aws_endpoint).list_buckets()
    session.client("dynamodb", endpoint_url=aws_endpoint).list_tables()
    session.client("route53", endpoint_url=aws_endpoint).list_hosted_zones()


def run() -> dict[str, Any]:
    import yaml

    from localdev import emulators as emulators_mod

    total = env_int("BENCH_PROVISIONING_RESOURCES", 500)
    repeats = env_int("BENCH_PROVISIONING_REPEATS", 3)
    machine = machine_info()  # the load average before the run starts
    work = Path(tempfile.mkdtemp(prefix="bench-provisioning-"))
    folder = work / "environments"
    folder.mkdir()
    (folder / f"{ENVIRONMENT}.yaml").write_text(yaml.safe_dump(spec_document(total), sort_keys=False))
    running = emulators_mod.start(log_dir=work / "emulator-logs", timeout=60)
    try:
        env = ours_env(running.environment(), work, {
            "RUNBOOKS_ENVIRONMENTS_DIR": str(folder),
            "AIRFLOW_CONN_RUNBOOKS_STATE": json.dumps({"conn_type": "sqlite", "host": str(work / "state.db")})})
        env.pop("RUNBOOKS_TARGETS_FILE", None)
        results: dict[str, list[dict[str, Any]]] = {"ours": [], "minimal": []}
        print(f"[bench] provisioning: {total} resources, {repeats} repeat(s) per side, concurrency {CONCURRENCY}",
              flush=True)
        for repeat in range(repeats + 1):  # the first round warms the bytecode cache and the emulators: not kept
            for side in ("ours", "minimal"):
                running.reset()
                _warm(running.aws_endpoint)
                result = _child(side, env)
                if repeat:
                    results[side].append(result)
                print(f"[bench]   {'warm-up' if not repeat else f'run {repeat}'} {side}: " + ", ".join(
                    f"{p} {result[p]['seconds']:.2f} s / {result[p]['calls']} calls" for p in PHASES), flush=True)
    finally:
        emulators_mod.stop(running)
    return report(results, total, machine)


def report(results: dict[str, list[dict[str, Any]]], total: int, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    rows, summary = [], {}
    for phase in PHASES:
        ours = [r[phase]["seconds"] for r in results["ours"]]
        peer = [r[phase]["seconds"] for r in results["minimal"]]
        ours_calls = statistics.median(r[phase]["calls"] for r in results["ours"])
        peer_calls = statistics.median(r[phase]["calls"] for r in results["minimal"])
        row = RatioRow(label=f"{phase} ({total} resources)", ours=statistics.median(ours),
                       peer=statistics.median(peer), unit="s", ours_spread=(min(ours), max(ours)),
                       peer_spread=(min(peer), max(peer)),
                       note=f"API calls {ours_calls:.0f} vs {peer_calls:.0f} (ratio {ours_calls / peer_calls:.2f})")
        rows.append(row)
        summary[phase] = {"ours_s": row.ours, "minimal_s": row.peer, "ratio": row.ratio, "ours_calls": ours_calls,
                          "minimal_calls": peer_calls, "goal": 1.3}
    verify = [r["verify"] for r in results["ours"]]
    machine = machine or machine_info()
    data = {"machine": machine, "resources": total, "concurrency": CONCURRENCY, "shares": shares(total),
            "summary": summary, "runs": results,
            "verify": {"seconds": statistics.median(v["seconds"] for v in verify),
                       "calls": statistics.median(v["calls"] for v in verify)}}
    markdown = "\n".join([
        "# Provisioning benchmark", "",
        f"{total} resources ({', '.join(f'{k} {v}' for k, v in shares(total).items())}) on moto / the GCS emulator / "
        f"Azurite, concurrency {CONCURRENCY}; median [min-max] of {len(results['ours'])} run(s) per side; ours = "
        "plan_items / apply_items (ledger, audit) of the product, minimal = a plain SDK loop issuing the minimal "
        "calls for the same resources (its end state re-planned by ours: zero changes).", "",
        f"Command: `BENCH_PROVISIONING_RESOURCES={total} BENCH_PROVISIONING_REPEATS={len(results['ours'])} "
        f"python -m bench provisioning`; measured {machine.get('date')} on {machine.get('cores')} cores "
        f"({machine.get('cpu', '?')}), load average at start {machine.get('load_average_at_start')} (a shared "
        "machine: other work ran at the same time, on both sides alike).", "",
        ratio_table(rows, ours="ours", peer="minimal"), "",
        "Goal (ratio <= 1.3): " + ", ".join(
            f"{p} {'met' if summary[p]['ratio'] <= 1.3 else 'MISSED'} ({summary[p]['ratio']:.2f})" for p in PHASES)
        + ".", "",
        f"Verify after apply (ours only): {data['verify']['seconds']:.2f} s, {data['verify']['calls']:.0f} calls.",
    ])
    path, md = write_results("provisioning", data, markdown)
    print(console_table(["phase", "ours s", "minimal s", "ratio", "calls ours/minimal"],
                        [[p, f"{summary[p]['ours_s']:.2f}", f"{summary[p]['minimal_s']:.2f}",
                          f"{summary[p]['ratio']:.2f}", f"{summary[p]['ours_calls']:.0f}/{summary[p]['minimal_calls']:.0f}"]
                         for p in PHASES]))
    print(f"[bench] results: {path} {md}", flush=True)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.provisioning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=["ours", "minimal"])
    args = parser.parse_args(argv)
    if args.child:
        result = run_ours() if args.child == "ours" else run_minimal()
        print(json.dumps(result, default=str))
        return 0
    from bench.common import enable_bytecode_cache

    enable_bytecode_cache()
    run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
