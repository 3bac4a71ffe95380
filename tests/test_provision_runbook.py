"""The provision_environment runbook on the demo spec, against the emulators, through its task bodies.

Plan from empty, apply, re-plan = zero changes, one field changed -> one update, a production
environment waits for approval, a conflict stops everything, a failure midway reports what was done and
what was not and a rerun converges, secrets never reach the plan, the result or the audit trail.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from tests.test_provision_support import (
    APPROVE,
    REJECT,
    aws,
    bucket_exists,
    by_address,
    copy_demo,
    isolate_ledger,
    load_yaml,
    resource,
    run_change_runbook,
    s3_tags,
    table_exists,
    write_spec,
)

DEMO_RESOURCES = 14  # the demo spec's 16, less the two compute resources the local targets do not serve


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "environments"
    copy_demo(folder)
    monkeypatch.setenv("RUNBOOKS_ENVIRONMENTS_DIR", str(folder))
    isolate_ledger(monkeypatch, tmp_path)
    return folder


def provision(run_id: str, **params: Any) -> dict[str, Any]:
    return run_change_runbook("provision", run_id, **{"environment": "demo", **params})


def test_demo_plan_apply_replan_is_empty(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    dry = provision("dry")
    assert dry["error"] is None and dry["path"] == "report_plan"
    assert dry["result"]["status"] == "dry_run" and dry["result"]["totals"]["planned_changes"] == DEMO_RESOURCES
    assert "Plan: 14 to create, 0 to update, 0 to delete, 0 unchanged (2 skipped)." in dry["plan_md"]
    assert "security_groups: [\"(known after apply: sg.web.id)\"]" in dry["plan_md"]
    assert ". gce.batch (gce rb-demo-batch)" in dry["plan_md"] and "does not serve compute" in dry["plan_md"]
    assert not bucket_exists("rb-demo-logs"), "a dry run changes nothing"
    assert {r.outcome for r in read_audit(run_id="dry")} == {"skipped"}

    applied = provision("apply", dry_run=False, reason="CHG-1")
    assert applied["error"] is None, applied["error"]
    assert applied["path"] == "no_approval_needed", "a non-production environment applies without approval"
    result = applied["result"]
    assert result["status"] == "applied" and result["approver"] is None
    assert result["totals"] == {**result["totals"], "changed": DEMO_RESOURCES, "verified": DEMO_RESOURCES,
                                "failed": 0, "not_attempted": 0}
    assert len(result["done"]) == DEMO_RESOURCES and result["not_done"] == []
    # in the clouds, tagged as managed, references resolved
    assert s3_tags("rb-demo-logs")["managed-by"] == "cloud-runbooks"
    groups = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["rb-demo-web"]}])
    group_id = groups["SecurityGroups"][0]["GroupId"]
    web = aws("ec2").describe_instances(Filters=[{"Name": "tag:Name", "Values": ["rb-demo-web-1"]}])
    instance = web["Reservations"][0]["Instances"][0]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group_id]
    zone = [z for z in aws("route53").list_hosted_zones()["HostedZones"] if z["Name"] == "rb-demo.example.com."][0]
    records = aws("route53").list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    www = next(r for r in records if r["Name"] == "www.rb-demo.example.com." and r["Type"] == "A")
    assert instance["PrivateIpAddress"] in {v["Value"] for v in www["ResourceRecords"]}
    db = aws("rds").describe_db_instances(DBInstanceIdentifier="rb-demo-db")["DBInstances"][0]
    cname = next(r for r in records if r["Name"] == "db.rb-demo.example.com.")
    assert cname["ResourceRecords"] == [{"Value": db["Endpoint"]["Address"]}]
    replica = aws("rds").describe_db_instances(DBInstanceIdentifier="rb-demo-db-replica")["DBInstances"][0]
    assert replica["ReadReplicaSourceDBInstanceIdentifier"] in ("rb-demo-db", db["DBInstanceArn"])
    # the audit trail: plan, apply and verify per resource; approver none (not required)
    trail = read_audit(run_id="apply")
    assert {(r.step, r.outcome) for r in trail} == {("plan", "skipped"), ("apply", "changed"), ("verify", "unchanged")}

    again = provision("again", dry_run=False, reason="CHG-1")
    assert again["error"] is None and again["path"] == "report_plan"
    assert again["result"]["status"] == "no_changes" and again["result"]["totals"]["planned_changes"] == 0
    assert "Plan: 0 to create, 0 to update, 0 to delete, 14 unchanged (2 skipped)." in again["plan_md"]


def test_one_changed_field_is_one_update(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    assert provision("base", dry_run=False, reason="CHG-1")["error"] is None
    document = load_yaml(specs / "demo.yaml")
    resource(document, "s3.assets")["properties"]["versioning"] = False
    write_spec(specs, document)
    plan = provision("one-field")
    changed = [i for i in plan["planned"]["items"] if i["change"]]
    assert [(i["labels"]["address"], i["change"]["operation"], i["change"]["before"], i["change"]["after"])
            for i in changed] == [("s3.assets", "update", {"versioning": True}, {"versioning": False})]
    assert "~ s3.assets (s3 rb-demo-assets) [aws-prod us-east-1]: update\n      versioning: true -> false" in plan["plan_md"]
    done = provision("one-field-apply", dry_run=False, reason="CHG-2")
    assert done["error"] is None and done["result"]["totals"]["changed"] == 1
    assert aws("s3").get_bucket_versioning(Bucket="rb-demo-assets")["Status"] == "Suspended"
    assert provision("after")["result"]["totals"]["planned_changes"] == 0


def test_production_waits_for_approval_and_reject_changes_nothing(clean_clouds: Any, data_dir: Path,
                                                                   specs: Path) -> None:
    document = load_yaml(specs / "demo.yaml")
    document["production"] = True
    document["resources"] = [resource(document, "s3.logs"), resource(document, "container.uploads")]
    write_spec(specs, document)
    rejected = provision("prod-reject", dry_run=False, reason="CHG-3", decision=REJECT)
    assert rejected["path"] == "approve_changes"
    assert rejected["context"]["ti"].pushed["approval_subject"].startswith("demo: Apply 2 resource changes on ")
    body = rejected["context"]["ti"].pushed["approval_body"]
    assert "Plan: 2 to create" in body and "s3:CreateBucket" in body and "Permissions the connections need" in body
    # the DAG's approval task skips apply on Reject; apply itself refuses without Approve
    assert rejected["error"] == "the plan was not approved (answer: ['Reject']): refusing to apply"
    assert not bucket_exists("rb-demo-logs")
    approved = provision("prod-approve", dry_run=False, reason="CHG-3", decision=APPROVE)
    assert approved["error"] is None and approved["result"]["approver"] == "carol"
    assert approved["result"]["status"] == "applied" and bucket_exists("rb-demo-logs")


def test_a_conflict_refuses_the_whole_plan(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    aws("s3").create_bucket(Bucket="rb-demo-assets")  # an unmanaged bucket with the spec's name
    run = provision("conflict", dry_run=False, reason="CHG-4")
    assert run["path"] == "report_plan"
    assert run["error"] is not None and run["error"].startswith("provisioning refused, nothing was changed: ")
    assert "demo/s3.assets (provision.aws.s3.bucket): Conflict: S3 bucket rb-demo-assets exists and is not managed" \
        in run["error"]
    assert "! s3.assets (s3 rb-demo-assets) [aws-prod us-east-1]: conflict" in run["plan_md"]
    assert run["result"]["status"] == "plan_failed"
    assert not bucket_exists("rb-demo-logs"), "nothing is applied from a plan with a conflict"
    with pytest.raises(Exception, match="NoSuchTagSet"):
        aws("s3").get_bucket_tagging(Bucket="rb-demo-assets")


def test_failure_midway_reports_done_and_not_done_then_a_rerun_converges(clean_clouds: Any, data_dir: Path,
                                                                          specs: Path) -> None:
    """The table's create fails (someone takes its name between plan and apply): what came before it is done,
    what comes after is not attempted; once the stray table is gone, the same key resumes and converges."""
    from include.changes.runbook import ChangeSet
    from include.provisioning.runbook import PROVISION, resolve_request
    from tests.test_provision_support import task_context

    params = {"environment": "demo", "dry_run": False, "reason": "CHG-5", "max_concurrency": "1",
              "idempotency_key": "CHG-5"}
    ctx = task_context("provision_environment", "midway-1", params)
    planned = PROVISION.plan(ctx, resolve_request(ctx, "provision"))
    aws("dynamodb").create_table(TableName="rb-demo-sessions", BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                                 KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
    applied = PROVISION.apply(ctx, planned, None)
    outcomes = {a: i["outcome"] for a, i in by_address(applied["items"]).items()}
    order = planned["extra"]["order"]
    table = order.index("dynamodb.sessions")
    assert outcomes["dynamodb.sessions"] == "failed"
    assert "Conflict: DynamoDB table rb-demo-sessions exists" in by_address(applied["items"])["dynamodb.sessions"][
        "apply_error"]
    done = [a for a in order[:table] if a in outcomes]
    assert all(outcomes[a] == "changed" for a in done) and len(done) == table - 0
    after = [a for a in order[table + 1:] if a in outcomes]
    assert after and all(outcomes[a] == "not_attempted" for a in after)
    verified = PROVISION.verify(ctx, applied)
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="resource\\(s\\) failed, not attempted or not as wanted"):
        PROVISION.report(ctx, planned=planned, decision=None, applied=applied, verified=verified)
    result = json.loads((data_dir / "provisioning" / "midway-1" / "result.json").read_text())
    assert result["status"] == "failed" and result["done"] == done and set(result["not_done"]) == {
        "dynamodb.sessions", *after}
    assert [f["resource_id"] for f in result["failed"]] == ["demo/dynamodb.sessions"]

    # the stray table goes; a rerun with the same idempotency key resumes: done changes are not repeated
    aws("dynamodb").delete_table(TableName="rb-demo-sessions")
    rerun = task_context("provision_environment", "midway-2", params)
    replanned = PROVISION.plan(rerun, resolve_request(rerun, "provision"))
    still = [i["labels"]["address"] for i in replanned["items"] if i["change"]]
    assert set(still) == {"dynamodb.sessions", *after}, "the new plan only holds what is not done"
    again = PROVISION.apply(rerun, replanned, None)
    assert {i["outcome"] for i in again["items"] if i["change"]} == {"changed"}
    PROVISION.report(rerun, planned=replanned, decision=None, applied=again, verified=PROVISION.verify(rerun, again))
    assert table_exists("rb-demo-sessions")
    converged = provision("converged")
    assert converged["result"]["totals"]["planned_changes"] == 0
    # replaying the first (approved) change set under the same key: the ledger says everything is done
    replay = PROVISION.apply(task_context("provision_environment", "midway-3", params), planned, None)
    assert {i["outcome"] for i in replay["items"] if i["change"]} <= {"done_earlier", "unchanged"}
    assert ChangeSet.from_dict(replay).items


def test_bad_spec_and_bad_request_fail_before_any_cloud_call(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    document = load_yaml(specs / "demo.yaml")
    resource(document, "ec2.web-1")["properties"]["security_groups"] = ["${sg.missing.id}"]
    write_spec(specs, document)
    run = provision("bad-spec")
    assert run["error"] is not None and str(specs / "demo.yaml") in run["error"]
    assert "resource ec2.web-1 (resources[6]): properties: ${sg.missing.id} refers to sg.missing" in run["error"]
    assert run["result"] is None and read_audit(run_id="bad-spec") == []
    assert "reason is required" in (provision("no-reason", dry_run=False)["error"] or "")
    unknown = run_change_runbook("provision", "unknown", environment="nope")
    assert "no spec for environment 'nope'" in (unknown["error"] or "")


def test_secrets_never_reach_plan_result_or_audit(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    document = load_yaml(specs / "demo.yaml")
    document["resources"] = [resource(document, "rds.main"), resource(document, "sg.db")]
    write_spec(specs, document)
    assert provision("db", dry_run=False, reason="CHG-6")["error"] is None
    db = aws("rds").describe_db_instances(DBInstanceIdentifier="rb-demo-db")["DBInstances"][0]
    secret_arn = db["MasterUserSecret"]["SecretArn"]  # RDS keeps the password in Secrets Manager
    password = aws("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    written = "".join(p.read_text() for p in data_dir.rglob("*") if p.is_file())
    assert password and json.loads(password)["password"] not in written
    assert '"MasterUserPassword"' not in written, "no password is ever sent: RDS manages it (ManageMasterUserPassword)"
    assert "ManageMasterUserPassword" in written
