"""cost_hygiene: waste found in the real inventory of an emulated estate, priced from the shipped tables,
totalled per target and owner, and cleaned up through the change engine (dry run, approval, audit)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from include.cost import hygiene
from include.cost.pricing import PricingError, load_tables, parse_table
from include.cost.runbook import COST, CostError, Request, find_waste_task
from include.records import ResourceRecord
from tests.test_provision_support import APPROVE, aws, gcs, isolate_ledger, task_context

IMAGE = "ami-04681a1dbd79675a5"
OWNED = {"owner": "data-team", "cost-center": "cc-2000"}


# ---- price tables ------------------------------------------------------------------------------------------
def test_shipped_price_tables_record_source_and_date() -> None:
    tables = load_tables()
    assert set(tables) == {"aws", "gcp", "azure"}
    for table in tables.values():
        assert table.sources and all(s["url"].startswith("https://") for s in table.sources)
        assert datetime.fromisoformat(table.recorded) and table.currency == "USD"
        assert table.default_region in table.regions
    aws_table = tables["aws"]
    gp3 = aws_table.price("volume_gb_month", "us-east-1", "gp3")
    assert gp3 is not None and gp3.unit == "GB-month" and gp3.region == "us-east-1"
    fallback = aws_table.price("volume_gb_month", "ap-south-1", "gp3")
    assert fallback is not None and fallback.region == "us-east-1", "an unlisted region uses the default's price"
    assert aws_table.price("instance_hour", "us-east-1", "x9.huge") is None


def test_a_table_without_source_or_date_is_refused() -> None:
    with pytest.raises(PricingError, match="recorded is required.*sources is required"):
        parse_table("cloud: aws\ncurrency: USD\ndefault_region: r\nregions: {r: {snapshot_gb_month: 0.05}}\n", "t.yaml")
    with pytest.raises(PricingError, match="regions.r.snapshot_gb_month: prices are numbers"):
        parse_table("cloud: aws\ncurrency: USD\nrecorded: '2026-01-01'\nsources: [{url: https://x}]\n"
                    "default_region: r\nregions: {r: {snapshot_gb_month: cheap}}\n", "t.yaml")
    with pytest.raises(PricingError, match="unknown price"):
        parse_table("cloud: aws\ncurrency: USD\nrecorded: '2026-01-01'\nsources: [{url: https://x}]\n"
                    "default_region: r\nregions: {r: {gold_bars: 1}}\n", "t.yaml")


# ---- the estate -------------------------------------------------------------------------------------------
def _tagged(kind: str, tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": kind, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def build_estate() -> dict[str, Any]:
    """Waste of every AWS / GCS category, plus clean look-alikes that must not be reported."""
    ec2, s3 = aws("ec2"), aws("s3")
    ids: dict[str, Any] = {}
    ids["loose"] = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10, VolumeType="gp3",
                                     TagSpecifications=_tagged("volume", {"Name": "loose", **OWNED}))["VolumeId"]
    ids["managed"] = ec2.create_volume(AvailabilityZone="us-east-1a", Size=5, VolumeType="gp2", TagSpecifications=_tagged(
        "volume", {"Name": "env-disk", **OWNED, "managed-by": "cloud-runbooks", "runbooks-environment": "demo"}))[
        "VolumeId"]
    stopped = ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                TagSpecifications=_tagged("instance", {"Name": "idle", **OWNED}))["Instances"][0]
    ec2.stop_instances(InstanceIds=[stopped["InstanceId"]])
    ids["idle"] = stopped["InstanceId"]
    ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.small",
                      TagSpecifications=_tagged("instance", {"Name": "busy"}))  # running, untagged
    ids["old"] = ec2.create_snapshot(VolumeId=ids["loose"], TagSpecifications=_tagged("snapshot", {"Name": "old"}))[
        "SnapshotId"]
    ids["kept"] = ec2.create_snapshot(VolumeId=ids["loose"], TagSpecifications=_tagged(
        "snapshot", {"Name": "kept", "retention-days": "3650"}))["SnapshotId"]
    s3.create_bucket(Bucket="rb-cost-nolife")
    s3.put_bucket_tagging(Bucket="rb-cost-nolife", Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in OWNED.items()]})
    for n in range(3):
        s3.put_object(Bucket="rb-cost-nolife", Key=f"k{n}", Body=b"x" * 1024 * 1024)
    s3.create_bucket(Bucket="rb-cost-withlife")
    s3.put_bucket_lifecycle_configuration(Bucket="rb-cost-withlife", LifecycleConfiguration={"Rules": [
        {"ID": "x", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 30}}]})
    bucket = gcs().create_bucket("rb-cost-gcs-nolife")
    bucket.labels = {"owner": "web-team", "cost-center": "cc-3000"}
    bucket.patch()
    with_rules = gcs().create_bucket("rb-cost-gcs-life")
    with_rules.add_lifecycle_delete_rule(age=30)
    with_rules.patch()
    return ids


def publish_inventory() -> list[ResourceRecord]:
    from include.inventory.collect import collect_target
    from include.inventory.store import publish, staging_path, write_jsonl
    from include.targets import load_targets

    config = load_targets()
    staged, records = [], []
    for name, services in (("aws-prod", ["ec2", "s3"]), ("gcp-prod", ["storage"])):
        result = collect_target(config.get(name), services=services)
        assert not result.errors, result.errors
        path = staging_path("inv-cost", name)
        write_jsonl(path, result.records)
        staged.append(path)
        records += result.records
    publish("inv-cost", staged, [{"target": "aws-prod", "errors": []}, {"target": "gcp-prod", "errors": []}])
    return records


def by_category(findings: list[hygiene.Finding]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in findings:
        found.setdefault(f.category, set()).add(f.name)
    return found


def test_waste_in_the_inventory_priced_and_totalled(clean_clouds: Any, data_dir: Path) -> None:
    ids = build_estate()
    records = publish_inventory()
    idle = next(r for r in records if r.name == "idle")
    assert idle.attributes["stopped_at"].endswith("Z"), "the EC2 lister records when an instance was stopped"
    assert next(r for r in records if r.name == "rb-cost-gcs-life").attributes["lifecycle_rules"] == 1
    # the check runs 100 days later (the emulator cannot backdate a snapshot or a stop)
    later = datetime.now(UTC) + timedelta(days=100)
    findings = hygiene.find_waste(records, load_tables(), now=later)
    found = by_category(findings)
    assert found["unattached_volume"] == {"loose", "env-disk"}
    assert found["stopped_instance"] == {"idle"}
    assert found["old_snapshot"] == {"old"}, "a retention-days tag of 3650 keeps 'kept'"
    assert found["bucket_without_lifecycle"] == {"rb-cost-nolife", "rb-cost-gcs-nolife"}
    assert {"busy"} <= found["missing_cost_tags"] and "idle" not in found["missing_cost_tags"]
    assert "rb-cost-nolife" not in found["missing_cost_tags"] and "rb-cost-withlife" in found["missing_cost_tags"]

    # estimates from the table, checked against independent reads of the sizes
    volume = aws("ec2").describe_volumes(VolumeIds=[ids["loose"]])["Volumes"][0]
    loose = next(f for f in findings if f.category == "unattached_volume" and f.name == "loose")
    assert loose.monthly_cost == round(volume["Size"] * 0.08, 2) and "recorded 2026-11-30" in loose.basis
    root_id = next(v["Ebs"]["VolumeId"] for v in aws("ec2").describe_instances(InstanceIds=[ids["idle"]])[
        "Reservations"][0]["Instances"][0]["BlockDeviceMappings"])
    root = aws("ec2").describe_volumes(VolumeIds=[root_id])["Volumes"][0]
    price = load_tables()["aws"].price("volume_gb_month", "us-east-1", root["VolumeType"])
    assert price is not None
    idle_finding = next(f for f in findings if f.category == "stopped_instance")
    assert idle_finding.monthly_cost == round(root["Size"] * price.value, 2)
    assert idle_finding.facts["stopped_days"] > 99 and "its EBS volumes still bill" in idle_finding.basis
    old = next(f for f in findings if f.category == "old_snapshot")
    assert old.monthly_cost == round(volume["Size"] * 0.05, 2) and old.facts["retention_days"] == 90
    busy = next(f for f in findings if f.name == "busy")
    assert busy.monthly_cost == round(0.0208 * 730, 2) and busy.owner == hygiene.NO_OWNER
    nolife = next(f for f in findings if f.name == "rb-cost-nolife" and f.category == "bucket_without_lifecycle")
    assert nolife.monthly_cost == round(3 / 1024 * 0.023, 2) and nolife.cleanup == "cost.aws.s3.lifecycle"
    gcs_nolife = next(f for f in findings if f.name == "rb-cost-gcs-nolife")
    assert gcs_nolife.monthly_cost is None and "does not record this bucket's size" in gcs_nolife.basis
    assert gcs_nolife.owner == "web-team" and gcs_nolife.cleanup == "cost.gcp.gcs.lifecycle"

    totals = hygiene.totals(findings)
    unique = {f.resource_id: f for f in findings}
    assert totals["all"]["resources"] == len(unique), "a resource in two categories counts once"
    assert set(totals["by_target"]) == {"aws-prod", "gcp-prod"}
    assert totals["by_owner"]["data-team"]["resources"] == len({f.resource_id for f in findings if f.owner == "data-team"})
    data_team = sum(max(g.monthly_cost or 0 for g in findings if g.resource_id == rid)
                    for rid in {f.resource_id for f in findings if f.owner == "data-team"})
    assert totals["by_owner"]["data-team"]["monthly_cost"] == round(data_team, 2)
    assert totals["by_owner"]["web-team"]["unpriced"] == 1
    # today, nothing has been stopped or kept for long
    today = by_category(hygiene.find_waste(records, load_tables(), now=datetime.now(UTC)))
    assert "stopped_instance" not in today and "old_snapshot" not in today


def test_stopped_vms_on_azure_and_compute_engine() -> None:
    def record(cloud: str, kind: str, **attributes: Any) -> ResourceRecord:
        return ResourceRecord(cloud=cloud, target=f"{cloud}-x", account="a", region=attributes.pop("region"),
                              service="compute", resource_type=kind, resource_id=f"{cloud}-{attributes['state']}",
                              name=f"{cloud}-{attributes['state']}", tags=OWNED, attributes=attributes)

    now = datetime(2026, 12, 1, tzinfo=UTC)
    records = [
        record("azure", "azure.compute.vm", state="stopped", vm_size="Standard_D2s_v5", region="westeurope"),
        record("azure", "azure.compute.vm", state="deallocated", vm_size="Standard_D2s_v5", region="westeurope"),
        record("gcp", "gcp.compute.instance", state="TERMINATED", machine_type="e2-small", region="europe-west1",
               stopped_at="2026-10-01T00:00:00Z"),
        record("gcp", "gcp.compute.instance", state="RUNNING", machine_type="e2-small", region="europe-west1"),
    ]
    findings = hygiene.find_waste(records, load_tables(), now=now, options=hygiene.Options(stopped_days=30))
    stopped = {f.name: f for f in findings if f.category == "stopped_instance"}
    assert set(stopped) == {"azure-stopped", "gcp-TERMINATED"}
    assert stopped["azure-stopped"].monthly_cost == round(0.115 * 730, 2)
    assert "still billed" in stopped["azure-stopped"].basis and stopped["azure-stopped"].facts["stopped_days"] is None
    assert stopped["gcp-TERMINATED"].facts["stopped_days"] == 61.0 and stopped["gcp-TERMINATED"].monthly_cost is None
    assert stopped["gcp-TERMINATED"].cleanup is None, "only EC2 instances have a terminate cleanup"


def test_gce_lister_records_when_an_instance_stopped() -> None:
    from include.clouds.gcp.inventory.compute import instance_attributes

    attrs = instance_attributes({"status": "TERMINATED", "zone": "zones/europe-west1-b",
                                 "lastStopTimestamp": "2026-11-01T10:00:00.000-07:00"})
    assert attrs["stopped_at"] == "2026-11-01T17:00:00Z"
    assert instance_attributes({"status": "RUNNING", "zone": "zones/europe-west1-b"})["stopped_at"] is None


# ---- the runbook: report, then cleanup through the change engine ------------------------------------------
def cost_run(run_id: str, now: datetime, **params: Any) -> dict[str, Any]:
    """cost_hygiene's task bodies in the DAG's order (approved by carol when it asks)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.changes.runbook import ChangeSet

    ctx = task_context("cost_hygiene", run_id, params)
    out: dict[str, Any] = {"context": ctx, "error": None}
    try:
        found = find_waste_task(ctx, now=now)
        out["found"] = found
        planned = COST.plan(ctx, found["change_set"])
        out["planned"] = planned
        if ChangeSet.from_dict(planned).needs_approval:
            applied = COST.apply(ctx, planned, APPROVE)
            verified = COST.verify(ctx, applied)
            out["applied"] = applied
            COST.report(ctx, planned=planned, decision=APPROVE, applied=applied, verified=verified)
        else:
            COST.report_plan(ctx, planned)
    except (AirflowFailException, AirflowSkipException) as exc:
        out["error"] = str(exc)
    return out


def test_report_and_cleanup_through_the_change_engine(clean_clouds: Any, data_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_ledger(monkeypatch, tmp_path)
    ids = build_estate()
    publish_inventory()
    later = datetime.now(UTC) + timedelta(days=100)

    report = cost_run("report", later)
    assert report["error"] is None and report["planned"]["items"] == [], "no cleanup asked: a report only"
    document = json.loads(Path(report["found"]["paths"]["json"]).read_text())
    assert document["inventory"]["run_id"] == "inv-cost" and document["prices"]["aws"]["recorded"] == "2026-11-30"
    markdown = Path(report["found"]["paths"]["markdown"]).read_text()
    assert "## By owner" in markdown and "| data-team |" in markdown and "## By target" in markdown
    csv_text = Path(report["found"]["paths"]["csv"]).read_text()
    assert csv_text.splitlines()[0].startswith("category,cloud,target") and "rb-cost-nolife" in csv_text
    sent = (data_dir / "notifications" / "notifications.jsonl")
    from include.cost.runbook import notify_task

    assert notify_task(report["found"], report["context"])["file"] == "sent"
    assert "Cost hygiene:" in json.loads(sent.read_text().splitlines()[-1])["title"]

    cleanup = ["unattached_volume", "old_snapshot", "bucket_without_lifecycle", "stopped_instance"]
    dry = cost_run("dry", later, cleanup=cleanup)
    assert dry["error"] is not None and "could not be planned" in dry["error"], "the managed volume is refused"
    assert "env-disk" in dry["error"] or ids["managed"] in dry["error"]
    assert "is managed by environment demo (managed-by tag): change its spec" in dry["error"]
    planned = {i["record"]["name"]: i for i in dry["planned"]["items"]}
    assert planned["loose"]["change"]["operation"] == "delete" and planned["loose"]["change"]["destructive"]
    assert planned["rb-cost-nolife"]["change"]["summary"].startswith("rb-cost-nolife: add lifecycle rule rb-cost-hygiene")
    assert aws("ec2").describe_volumes(VolumeIds=[ids["loose"]])["Volumes"], "a dry run deletes nothing"

    # narrowed to the resources that may go, applied after approval
    done = cost_run("apply", later, cleanup=cleanup, dry_run=False, reason="FIN-1",
                    resources=["loose", "old", "rb-cost-nolife", "rb-cost-gcs-nolife", "idle"])
    assert done["error"] is None, done["error"]
    assert done["context"]["ti"].pushed["approval_subject"].startswith("Apply 5 cleanups")
    outcomes = {i["record"]["name"]: i["outcome"] for i in done["applied"]["items"]}
    assert outcomes == {"loose": "changed", "old": "changed", "rb-cost-nolife": "changed",
                        "rb-cost-gcs-nolife": "changed", "idle": "changed"}
    ec2 = aws("ec2")
    with pytest.raises(Exception, match="InvalidVolume.NotFound"):
        ec2.describe_volumes(VolumeIds=[ids["loose"]])
    kept = ec2.describe_snapshots(Filters=[{"Name": "tag:source-volume", "Values": [ids["loose"]]}])["Snapshots"]
    assert len(kept) == 1 and {t["Key"]: t["Value"] for t in kept[0]["Tags"]}["created-by"] == "cost_hygiene"
    with pytest.raises(Exception, match="InvalidSnapshot.NotFound"):
        ec2.describe_snapshots(SnapshotIds=[ids["old"]])
    assert ec2.describe_snapshots(SnapshotIds=[ids["kept"]])["Snapshots"]
    rules = aws("s3").get_bucket_lifecycle_configuration(Bucket="rb-cost-nolife")["Rules"]
    assert rules[0]["ID"] == "rb-cost-hygiene" and rules[0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7
    assert [r["action"]["type"] for r in gcs().get_bucket("rb-cost-gcs-nolife").lifecycle_rules] == [
        "AbortIncompleteMultipartUpload", "Delete"]
    state = ec2.describe_instances(InstanceIds=[ids["idle"]])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    assert ec2.describe_volumes(VolumeIds=[ids["managed"]])["Volumes"], "the environment's volume is untouched"
    trail = read_audit(run_id="apply")
    assert {(r.step, r.outcome) for r in trail} >= {("apply", "changed"), ("verify", "unchanged")}
    assert all(r.approver == "carol" for r in trail if r.step == "apply")


def test_bad_requests_and_no_inventory(clean_clouds: Any, data_dir: Path) -> None:
    with pytest.raises(CostError, match="unknown cleanup categories everything"):
        Request.from_params({"cleanup": ["everything"]})
    with pytest.raises(CostError, match="needs tag_values"):
        Request.from_params({"cleanup": ["missing_cost_tags"], "dry_run": False, "reason": "x"})
    with pytest.raises(CostError, match="resources narrows a cleanup"):
        Request.from_params({"resources": ["a"]})
    with pytest.raises(CostError, match="stopped_days must be a whole number"):
        Request.from_params({"stopped_days": "soon"})
    assert "no inventory has been published yet" in (cost_run("none", datetime.now(UTC))["error"] or "")
