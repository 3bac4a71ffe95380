"""provision_environment, teardown_environment, detect_drift and cost_hygiene end to end through Airflow
(``dag.test`` in a child process under a hard timeout), against the emulators.

The approval of a teardown is answered through the REST API's own handler while the child waits in
``awaiting_input``, as a signed-in approver would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dagrun import run_dag, start_dag
from tests.test_provision_support import aws, bucket_exists, copy_demo, isolate_ledger, table_exists

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "environments"
    copy_demo(folder)
    monkeypatch.setenv("RUNBOOKS_ENVIRONMENTS_DIR", str(folder))
    isolate_ledger(monkeypatch, tmp_path)
    return folder


def test_provision_environment_dry_run_then_apply(clean_clouds: Any, airflow_db: Path, data_dir: Path,
                                                  specs: Path) -> None:
    dry = run_dag("provision_environment", {"environment": "demo"}, timeout=420)
    assert dry["state"] == "success", dry["output"][-4000:]
    tasks = dry["tasks"]
    assert tasks["validate_spec"] == tasks["plan_changes"] == tasks["report_plan"] == "success"
    assert tasks["approve_changes"] == tasks["no_approval_needed"] == tasks["apply_changes"] == "skipped"
    assert tasks["verify_changes"] == tasks["report"] == "skipped"
    assert "Plan: 14 to create, 0 to update, 0 to delete, 0 unchanged (2 skipped)." in dry["output"]
    assert not bucket_exists("rb-demo-logs")

    applied = run_dag("provision_environment", {"environment": "demo", "dry_run": False, "reason": "CHG-20"},
                      timeout=420)
    assert applied["state"] == "success", applied["output"][-4000:]
    tasks = applied["tasks"]
    assert tasks["no_approval_needed"] == tasks["apply_changes"] == tasks["verify_changes"] == "success"
    assert tasks["approve_changes"] == tasks["report_plan"] == "skipped" and tasks["report"] == "success"
    assert bucket_exists("rb-demo-logs") and table_exists("rb-demo-sessions")
    assert "14 changed, 0 done earlier, 14/14 verified" in applied["output"]

    bad = run_dag("provision_environment", {"environment": "demo", "enviroment": "x"}, timeout=300)
    assert bad["state"] == "failed" and bad["tasks"]["validate_spec"] == "failed"
    assert "unknown parameter(s) 'enviroment'" in bad["output"]


# ---- an approval answered while the DAG run waits -----------------------------------------------------------
def _answer(dag_id: str, task_id: str, option: str, deadline: float) -> str:
    """Wait until ``task_id`` awaits input, then answer it through the REST API's handler; return the run id."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    run_id = None
    while time.monotonic() < deadline and run_id is None:
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT))
            run_id = str(ti.run_id) if ti is not None else None
        if run_id is None:
            time.sleep(0.5)
    assert run_id is not None, f"{task_id} never reached awaiting_input"
    time.sleep(2.5)  # Airflow 3.3.2: an answer within ~1 s of waiting can fail the task
    with create_session() as session:
        update_hitl_detail(dag_id=dag_id, dag_run_id=run_id, task_id=task_id,
                           update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
                           user=SimpleAuthManagerUser(username="approver", role="user"), session=session, map_index=-1)
    return run_id


def test_teardown_environment_asks_then_deletes(clean_clouds: Any, airflow_db: Path, data_dir: Path,
                                                specs: Path) -> None:
    from tests.test_provision_support import run_change_runbook

    assert run_change_runbook("provision", "setup", environment="demo", dry_run=False, reason="x")["error"] is None
    dry = run_dag("teardown_environment", {"environment": "demo"}, timeout=420)
    assert dry["state"] == "success" and dry["tasks"]["report_plan"] == "success", dry["output"][-3000:]
    assert dry["tasks"]["approve_changes"] == "skipped" and bucket_exists("rb-demo-logs")

    proc = start_dag("teardown_environment", {"environment": "demo", "dry_run": False, "reason": "CHG-21"})
    try:
        run_id = _answer("teardown_environment", "approve_changes", "Approve", time.monotonic() + 300)
    except BaseException:
        proc.kill()
        raise
    result = proc.finish(timeout=300)
    assert result["run_id"] == run_id and result["state"] == "success", result["output"][-4000:]
    tasks = result["tasks"]
    assert tasks["approve_changes"] == tasks["apply_changes"] == tasks["verify_changes"] == tasks["report"] == "success"
    assert not bucket_exists("rb-demo-logs") and not table_exists("rb-demo-sessions")
    documents = [json.loads(p.read_text()) for p in (data_dir / "teardown").glob("*/result.json")]
    final = next(d for d in documents if d["run_id"] == run_id)
    assert final["status"] == "torn_down" and final["approver"] == "approver" and final["totals"]["changed"] == 14


def test_detect_drift_reports_and_starts_a_dry_run(clean_clouds: Any, airflow_db: Path, data_dir: Path,
                                                   specs: Path) -> None:
    from tests.test_provision_support import run_change_runbook

    assert run_change_runbook("provision", "setup", environment="demo", dry_run=False, reason="x")["error"] is None
    aws("s3").put_bucket_versioning(Bucket="rb-demo-logs", VersioningConfiguration={"Status": "Suspended"})
    result = run_dag("detect_drift", {}, timeout=420)
    assert result["state"] == "success", result["output"][-4000:]
    tasks = result["tasks"]
    assert tasks["compare_with_specs"] == tasks["notify_drift"] == tasks["check_complete"] == "success"
    assert tasks["start_dry_runs[0]"] == "success"
    assert "changed: s3.logs: changed outside the runbook: versioning" in result["output"]
    report = json.loads(next((data_dir / "drift").glob("*/report.json")).read_text())
    assert report["drifted"] == ["demo"]

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        started = session.scalars(select(DagRun).where(DagRun.dag_id == "provision_environment")).all()
        triggered = [r for r in started if r.run_id.startswith("drift__demo__")]
        assert len(triggered) == 1, [r.run_id for r in started]
        assert triggered[0].conf == {"environment": "demo", "dry_run": True,
                                     "reason": f"drift detected by detect_drift run {result['run_id']}"}


def test_cost_hygiene_reports_from_the_inventory(clean_clouds: Any, airflow_db: Path, data_dir: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_cost_hygiene import build_estate, publish_inventory

    isolate_ledger(monkeypatch, tmp_path)
    build_estate()
    publish_inventory()
    result = run_dag("cost_hygiene", {"snapshot_retention_days": 0, "cleanup": ["old_snapshot"]}, timeout=420)
    assert result["state"] == "success", result["output"][-4000:]
    tasks = result["tasks"]
    assert tasks["find_waste"] == tasks["notify_waste"] == tasks["plan_cleanup"] == tasks["report_plan"] == "success"
    assert tasks["approve_cleanup"] == tasks["apply_cleanup"] == "skipped"
    assert "wasteful resource(s)" in result["output"] and "owner data-team" in result["output"]
    (plan,) = [json.loads(p.read_text()) for p in (data_dir / "cost").glob("*/result.json")]
    # past a retention of 0 days: the untagged snapshot; the one tagged retention-days 3650 is kept
    assert plan["status"] == "dry_run" and plan["totals"]["planned_changes"] == 1
