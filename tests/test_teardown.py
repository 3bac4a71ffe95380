"""The teardown_environment runbook on the demo spec, against the emulators, through its task bodies.

Deletes exactly what the environment manages (by its tags), in reverse dependency order, after an
approval every time; leaves unmanaged look-alikes alone; refuses while a resource is protected, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from tests.test_provision_support import (
    APPROVE,
    REJECT,
    aws,
    blobs,
    bucket_exists,
    copy_demo,
    gcs,
    instances,
    isolate_ledger,
    run_change_runbook,
    table_exists,
)


@pytest.fixture
def provisioned(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "environments"
    copy_demo(folder)
    monkeypatch.setenv("RUNBOOKS_ENVIRONMENTS_DIR", str(folder))
    isolate_ledger(monkeypatch, tmp_path)
    done = run_change_runbook("provision", "setup", environment="demo", dry_run=False, reason="setup")
    assert done["error"] is None, done["error"]
    return folder


def teardown(run_id: str, **params: Any) -> dict[str, Any]:
    return run_change_runbook("teardown", run_id, **{"environment": "demo", **params})


def _deleted_in_order(run: dict[str, Any]) -> list[str]:
    trail = [r for r in read_audit(run_id=run["context"]["run_id"], step="apply") if r.outcome == "changed"]
    return [str(r.resource).split("/", 1)[1] for r in sorted(trail, key=lambda r: r.time)]


def test_teardown_deletes_only_managed_resources_in_reverse_order(provisioned: Path, data_dir: Path) -> None:
    # look-alikes: an instance with a spec instance's name, a bucket and a container the spec does not declare
    stranger = aws("ec2").run_instances(ImageId="ami-04681a1dbd79675a5", MinCount=1, MaxCount=1,
                                        InstanceType="t3.nano", TagSpecifications=[{
                                            "ResourceType": "instance",
                                            "Tags": [{"Key": "Name", "Value": "rb-demo-web-1"}]}])
    stranger_id = stranger["Instances"][0]["InstanceId"]
    aws("s3").create_bucket(Bucket="rb-demo-scratch")
    blobs().create_container("rb-demo-uploads-old")

    dry = teardown("td-dry")
    assert dry["error"] is None and dry["path"] == "report_plan" and dry["result"]["status"] == "dry_run"
    assert "Plan: 0 to create, 0 to update, 14 to delete, 0 unchanged (2 skipped)." in dry["plan_md"]
    assert bucket_exists("rb-demo-logs"), "a dry run deletes nothing"

    rejected = teardown("td-reject", dry_run=False, reason="CHG-9", decision=REJECT)
    assert rejected["path"] == "approve_changes", "a teardown always asks, production or not"
    assert rejected["context"]["ti"].pushed["approval_subject"].endswith("(14 destructive)")
    assert rejected["error"] is not None and "not approved" in rejected["error"]
    assert bucket_exists("rb-demo-logs") and table_exists("rb-demo-sessions")

    done = teardown("td-approve", dry_run=False, reason="CHG-9", decision=APPROVE)
    assert done["error"] is None, done["error"]
    result = done["result"]
    assert result["status"] == "torn_down" and result["approver"] == "carol"
    assert result["totals"] == {**result["totals"], "changed": 14, "verified": 14, "failed": 0}
    order = _deleted_in_order(done)
    assert order.index("record.www") < order.index("zone.demo") and order.index("record.db") < order.index("zone.demo")
    assert order.index("ec2.web-1") < order.index("sg.web") and order.index("ec2.web-2") < order.index("ec2.web-1")
    assert order.index("rds.replica") < order.index("rds.main") < order.index("sg.db")
    # gone: everything the environment managed
    assert not bucket_exists("rb-demo-logs") and not table_exists("rb-demo-sessions")
    assert gcs().lookup_bucket("rb-demo-exports") is None
    assert aws("rds").describe_db_instances()["DBInstances"] == []
    assert not [z for z in aws("route53").list_hosted_zones()["HostedZones"] if z["Name"] == "rb-demo.example.com."]
    # survived: the look-alikes
    assert [i["InstanceId"] for i in instances("rb-demo-web-1")] == [stranger_id]
    assert bucket_exists("rb-demo-scratch")
    assert [c.name for c in blobs().list_containers()] == ["rb-demo-uploads-old"]
    again = teardown("td-again", dry_run=False, reason="CHG-9")
    assert again["path"] == "report_plan" and again["result"]["status"] == "nothing_to_delete"


def test_a_managed_name_taken_over_by_hand_is_left_alone(provisioned: Path, data_dir: Path) -> None:
    # someone deletes the environment's container and creates their own with the same name
    blobs().delete_container("rb-demo-uploads")
    blobs().create_container("rb-demo-uploads", metadata={"team": "someone-else"})
    dry = teardown("td-takeover")
    uploads = next(i for i in dry["planned"]["items"] if i["labels"]["address"] == "container.uploads")
    assert uploads["change"] is None and uploads["labels"]["observed"]["status"] == "unmanaged"
    assert "= container.uploads (container rb-demo-uploads)" in dry["plan_md"]
    done = teardown("td-takeover-go", dry_run=False, reason="CHG-10")
    assert done["error"] is None and done["result"]["totals"]["changed"] == 13
    properties = blobs().get_container_client("rb-demo-uploads").get_container_properties()
    assert dict(properties.metadata) == {"team": "someone-else"}


def test_teardown_refuses_while_a_resource_is_protected(provisioned: Path, data_dir: Path) -> None:
    aws("rds").modify_db_instance(DBInstanceIdentifier="rb-demo-db", DeletionProtection=True, ApplyImmediately=True)
    aws("s3").put_object(Bucket="rb-demo-assets", Key="archive/report.csv", Body=b"a,b\n")
    run = teardown("td-protected", dry_run=False, reason="CHG-11", decision=APPROVE)
    assert run["path"] == "report_plan", "a protected resource never reaches the approval"
    assert run["error"] is not None and run["error"].startswith("teardown refused, nothing was changed: 2 resource(s)")
    assert "demo/rds.main (provision.aws.rds.instance): Protected: RDS instance rb-demo-db: deletion protection is on" \
        in run["error"]
    assert "demo/s3.assets (provision.aws.s3.bucket): Protected: S3 bucket rb-demo-assets: it holds objects and " \
           "force_destroy is false" in run["error"]
    assert "! rds.main (rds rb-demo-db) [aws-prod us-east-1]: protected" in run["plan_md"]
    assert run["result"]["status"] == "plan_failed"
    # nothing was deleted, not even what was not protected
    assert bucket_exists("rb-demo-logs") and table_exists("rb-demo-sessions") and instances("rb-demo-web-1")
    assert {r.step for r in read_audit(run_id="td-protected")} == {"plan"}
