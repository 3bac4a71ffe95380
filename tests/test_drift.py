"""detect_drift: every spec against live state, per resource and field; report, notification, dry runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include.provisioning import drift
from tests.test_provision_support import (
    APPROVE,
    aws,
    blobs,
    copy_demo,
    isolate_ledger,
    load_yaml,
    run_change_runbook,
    task_context,
    write_spec,
)


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "environments"
    copy_demo(folder)
    monkeypatch.setenv("RUNBOOKS_ENVIRONMENTS_DIR", str(folder))
    isolate_ledger(monkeypatch, tmp_path)
    return folder


def check(run_id: str, **params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    ctx = task_context("detect_drift", run_id, params)
    return drift.check_task(ctx), ctx


def findings(summary: dict[str, Any], environment: str = "demo") -> dict[str, dict[str, Any]]:
    report = json.loads(Path(summary["paths"]["json"]).read_text())
    env = next(e for e in report["environments"] if e["environment"] == environment)
    return {f["address"]: f for f in env["findings"]}


def test_drift_by_hand_is_detected_per_resource_and_field(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    assert run_change_runbook("provision", "setup", environment="demo", dry_run=False, reason="x")["error"] is None
    summary, ctx = check("clean")
    assert summary["drifted"] == [] and summary["errors"] == [] and findings(summary) == {}
    assert drift.notify_task(summary, ctx) == {} and drift.dry_run_requests(summary, ctx) == []

    # by hand: a setting changed, a rule added, a tag removed, a table deleted, a container replaced by a look-alike
    aws("s3").put_bucket_versioning(Bucket="rb-demo-logs", VersioningConfiguration={"Status": "Suspended"})
    group = aws("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["rb-demo-web"]}])
    group_id = group["SecurityGroups"][0]["GroupId"]
    aws("ec2").authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    aws("ec2").delete_tags(Resources=[group_id], Tags=[{"Key": "app"}])
    aws("dynamodb").delete_table(TableName="rb-demo-sessions")
    blobs().delete_container("rb-demo-uploads")
    blobs().create_container("rb-demo-uploads")

    summary, ctx = check("after-hand")
    assert summary["drifted"] == ["demo"] and summary["errors"] == []
    found = findings(summary)
    assert set(found) == {"s3.logs", "sg.web", "dynamodb.sessions", "container.uploads"}
    assert found["s3.logs"]["drift"] == "changed"
    assert found["s3.logs"]["fields"] == [{"field": "versioning", "before": False, "after": True}]
    web = found["sg.web"]
    assert web["drift"] == "changed" and {f["field"] for f in web["fields"]} == {"ingress", "tags.app"}
    tag = next(f for f in web["fields"] if f["field"] == "tags.app")
    assert tag == {"field": "tags.app", "before": None, "after": "rb-demo"}
    sessions = found["dynamodb.sessions"]
    assert sessions["drift"] == "missing"
    assert sessions["detail"].startswith("deleted outside the runbook (last applied by provision_environment run setup")
    uploads = found["container.uploads"]
    assert uploads["drift"] == "conflict" and uploads["detail"].startswith("an unmanaged look-alike has the spec's name")
    markdown = Path(summary["paths"]["markdown"]).read_text()
    assert "## demo: DRIFTED (2 changed, 1 missing, 1 conflict(s), 0 error(s))" in markdown
    assert "- `versioning`: live false, spec true" in markdown

    # the notification (file channel always) and one dry-run request per drifted environment
    channels = drift.notify_task(summary, ctx)
    assert channels["file"] == "sent"
    sent = [json.loads(line) for line in (data_dir / "notifications" / "notifications.jsonl").read_text().splitlines()]
    assert sent[-1]["title"] == "Drift in 1 environment: demo" and sent[-1]["severity"] == "warning"
    assert {i["resource"] for i in sent[-1]["items"]} == set(found)
    assert drift.dry_run_requests(summary, ctx) == [{
        "trigger_run_id": "drift__demo__after-hand",
        "conf": {"environment": "demo", "dry_run": True, "reason": "drift detected by detect_drift run after-hand"}}]
    assert drift.dry_run_requests(summary, task_context("detect_drift", "x", {"start_dry_runs": False})) == []
    drift.check_errors_task(summary)  # drift is a finding, not a failure

    # the dry run it starts plans exactly the way back
    back = run_change_runbook("provision", "back", environment="demo")
    planned = {i["labels"]["address"]: i for i in back["planned"]["items"]}
    assert planned["s3.logs"]["change"]["after"] == {"versioning": True}
    assert planned["dynamodb.sessions"]["change"]["operation"] == "create"
    assert planned["container.uploads"]["plan_error"].startswith("Conflict: ")


def test_never_applied_torn_down_and_broken_specs(clean_clouds: Any, data_dir: Path, specs: Path) -> None:
    small = load_yaml(specs / "demo.yaml")
    small.update(environment="small", resources=[r for r in small["resources"] if r["kind"] == "s3"])
    write_spec(specs, small)
    broken = {"environment": "broken", "owner": "x", "cost_center": "y",
              "resources": [{"kind": "s3", "name": "b", "properties": {"name": "rb-broken", "versioning": "on"}}]}
    write_spec(specs, broken)
    assert run_change_runbook("provision", "s", environment="small", dry_run=False, reason="x")["error"] is None
    assert run_change_runbook("teardown", "t", environment="small", dry_run=False, reason="x",
                              decision=APPROVE)["error"] is None
    summary, _ = check("mixed")
    demo, small_found = findings(summary, "demo"), findings(summary, "small")
    assert {f["drift"] for f in demo.values()} == {"missing"}
    assert all(f["detail"] == "not created yet (never applied)" for f in demo.values())
    assert {f["drift"] for f in small_found.values()} == {"torn_down"}
    assert all(f["detail"].startswith("torn down by teardown_environment run t at ") for f in small_found.values())
    assert summary["drifted"] == ["demo"], "a torn-down environment has not drifted"
    (error,) = summary["errors"]
    assert error["environment"] == "broken" and "properties.versioning: 'on' is not of type 'boolean'" in error["detail"]
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="1 resource\\(s\\) / spec\\(s\\) could not be checked"):
        drift.check_errors_task(summary)
    only, _ = check("only-small", environments=["small"])
    assert [e for e in json.loads(Path(only["paths"]["json"]).read_text())["environments"]][0]["environment"] == "small"
    with pytest.raises(AirflowFailException, match="unknown environment\\(s\\) nope"):
        check("unknown", environments=["nope"])
