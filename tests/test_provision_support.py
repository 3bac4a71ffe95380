"""Shared helpers of the provisioning, teardown, drift and cost tests (no tests here).

The runbooks' task bodies run in the DAG's order through the same functions the DAG files call, with the
task context Airflow would give them; cloud state is checked with independent reads through the hooks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = PROJECT_ROOT / "config" / "environments" / "demo.yaml"
AWS, GCP, AZURE = "aws_estate", "gcp_estate", "azure_estate"
APPROVE = {"chosen_options": ["Approve"], "approved": True, "responded_by": "carol", "timed_out": False}
REJECT = {"chosen_options": ["Reject"], "approved": False, "responded_by": "dave", "timed_out": False}
_DECLARED = {
    "provision_environment": ("environment", "dry_run", "reason", "max_concurrency", "max_errors", "idempotency_key"),
    "teardown_environment": ("environment", "dry_run", "reason", "max_concurrency", "max_errors", "idempotency_key"),
    "detect_drift": ("environments", "start_dry_runs"),
    "cost_hygiene": ("dry_run", "stopped_days", "snapshot_retention_days", "cost_tags", "cleanup", "resources",
                     "tag_values", "snapshot_before_delete", "reason", "max_concurrency", "max_errors",
                     "idempotency_key"),
}


# ---- hooks (the ones production uses) --------------------------------------------------------------------
def aws(service: str, region: str = "us-east-1") -> Any:
    """The provider's hook for ``service``, through include.clouds.aws.clients (a session per connection)."""
    from include.clouds.aws.clients import client_for

    return client_for(AWS, service, region)


def gcs() -> Any:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    return GCSHook(gcp_conn_id=GCP).get_conn()


def blobs() -> Any:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    return WasbHook(wasb_conn_id=AZURE).get_conn()


def s3_tags(bucket: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in aws("s3").get_bucket_tagging(Bucket=bucket)["TagSet"]}


def instances(name: str) -> list[dict[str, Any]]:
    """Live (not terminated) EC2 instances with this Name tag."""
    found = aws("ec2").describe_instances(Filters=[
        {"Name": "tag:Name", "Values": [name]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def bucket_exists(name: str) -> bool:
    try:
        aws("s3").head_bucket(Bucket=name)
        return True
    except Exception as exc:
        assert "404" in str(exc) or "Not Found" in str(exc), exc
        return False


def table_exists(name: str) -> bool:
    return name in aws("dynamodb").list_tables()["TableNames"]


def isolate_ledger(monkeypatch: Any, folder: Path) -> None:
    """A change ledger of this test's own: run ids repeat across tests, and one idempotency key would resume
    another test's change set (the engine's documented behaviour)."""
    monkeypatch.setenv("AIRFLOW_CONN_RUNBOOKS_STATE", json.dumps({"conn_type": "sqlite", "host": str(folder / "state.db")}))


# ---- specs -------------------------------------------------------------------------------------------------
def load_yaml(path: Path = DEMO_SPEC) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def write_spec(folder: Path, document: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{document['environment']}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def copy_demo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_SPEC, folder / "demo.yaml")
    return folder / "demo.yaml"


def resource(document: dict[str, Any], address: str) -> dict[str, Any]:
    kind, name = address.split(".", 1)
    found: dict[str, Any] = next(r for r in document["resources"] if r["kind"] == kind and r["name"] == name)
    return found


# ---- running the task bodies -------------------------------------------------------------------------------
class FakeTI:
    """The task instance's XCom push, as the plan task uses it (approval subject and body)."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def task_context(dag_id: str, run_id: str, params: dict[str, Any], user: str = "tester") -> dict[str, Any]:
    declared = {k: None for k in _DECLARED[dag_id]}
    return {
        "run_id": run_id, "ti": FakeTI(), "params": dict(params),
        "dag": SimpleNamespace(dag_id=dag_id, params=declared),
        "dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id, conf=dict(params), run_type="manual",
                                   triggering_user_name=user),
    }


def run_change_runbook(mode: str, run_id: str, *, decision: dict[str, Any] | None = APPROVE,
                       **params: Any) -> dict[str, Any]:
    """provision / teardown through their task bodies in the DAG's order; returns what happened.

    ``decision`` answers the approval when the run asks for one (None: nobody answers).
    Keys: path (the branch taken), planned, applied, verified, result (result.json), error (the failing task's
    message, when one failed), plan_md (the plan file's text).
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.changes.report import result_path
    from include.provisioning.runbook import PROVISION, TEARDOWN, WORDINGS, resolve_request

    runbook = PROVISION if mode == "provision" else TEARDOWN
    dag_id = "provision_environment" if mode == "provision" else "teardown_environment"
    ctx = task_context(dag_id, run_id, params)
    out: dict[str, Any] = {"error": None, "context": ctx}
    try:
        planned = runbook.plan(ctx, resolve_request(ctx, mode))  # type: ignore[arg-type]
        out["planned"] = planned
        out["plan_md"] = Path(planned["extra"]["plan_files"]["markdown"]).read_text()
        out["path"] = runbook.choose_path(planned)
        if out["path"] == "report_plan":
            runbook.report_plan(ctx, planned)
        else:
            answer = decision if out["path"] == "approve_changes" else None
            applied = runbook.apply(ctx, planned, answer)
            out["applied"] = applied
            verified = runbook.verify(ctx, applied)
            out["verified"] = verified
            runbook.report(ctx, planned=planned, decision=answer, applied=applied, verified=verified)
    except AirflowFailException as exc:
        out["error"] = str(exc)
    except AirflowSkipException:
        pass
    path = result_path(WORDINGS[mode], run_id)
    out["result"] = json.loads(path.read_text()) if path.exists() else None
    return out


def by_address(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(i["labels"]["address"]): i for i in items}
