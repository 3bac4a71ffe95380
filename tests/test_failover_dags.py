"""The three runbooks as DAGs: wiring, parameters, and each one end to end under ``dag.test`` (slow), against
moto and the local endpoints running in this process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from include.failover import history
from tests.dagrun import run_dag, start_dag
from tests.test_failover_support import Estate, primary_answers, run_failover, start_estate

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bags = {name: DagBag(dag_folder=str(PROJECT_ROOT / "dags" / f"{name}.py"))
            for name in ("failover_service", "failback_service", "failover_drill")}
    assert all(not b.import_errors for b in bags.values())
    return {name: bag.dags[name] for name, bag in bags.items()}


def _errors(run: dict[str, Any]) -> str:
    """The error lines of a dag.test run's output (what a failed assertion should show)."""
    return "\n".join(x for x in run["output"].splitlines() if "rror" in x or "xception" in x)[:3000]


def _down(dag: Any) -> dict[str, set[str]]:
    return {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}


def test_failover_dag_reads_like_the_runbook(dagbag: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    dag = dagbag["failover_service"]
    down = _down(dag)
    assert down["decide"] == {"report_decision", "approve_failover", "approve_by_policy"}
    assert down["approve_failover"] == down["approve_by_policy"] == {"fence_primary"}
    assert down["fence_primary"] == {"promote_standby"} and down["promote_standby"] == {"switch_dns"}
    assert down["switch_dns"] == {"verify"} and down["verify"] == {"record_and_notify"}
    approve = dag.get_task("approve_failover")
    assert isinstance(approve, ApprovalOperator) and approve.defaults == ["Reject"] and approve.retries >= 1
    assert dag.get_task("record_and_notify").trigger_rule == "all_done"
    assert dag.get_task("fence_primary").trigger_rule == "none_failed_min_one_success"
    params = dag.params
    assert params["dry_run"] is True and params["force"] is False
    schema = {k: params.get_param(k).schema for k in params}
    assert schema["severity"]["type"] == ["null", "string"] and "critical" in schema["severity"]["enum"]
    assert schema["incident_started_at"]["type"] == ["null", "string"]
    assert {"service", "incident_id", "reason", "severity", "dry_run", "force", "incident_started_at"} == set(params)


def test_failback_and_drill_dag_wiring(dagbag: Any) -> None:
    back = _down(dagbag["failback_service"])
    assert back["decide"] == {"report_decision", "rebuild_replication"}
    assert back["wait_for_replica"] == {"approve_failback", "approve_by_policy"}
    assert back["verify"] == {"restore_standby"} and back["restore_standby"] == {"record_and_notify"}
    drill = dagbag["failover_drill"]
    down = _down(drill)
    assert down["check_ready"] == {"approve_drill", "approve_by_policy", "report_not_ready"}
    assert down["fail_over"] == {"end_outage", "fail_back"} and down["end_outage"] == {"fail_back"}
    assert drill.get_task("end_outage").trigger_rule == "all_done"
    assert type(drill.timetable).__name__ != "NullTimetable" and drill.params["dry_run"] is None


# ---- end to end under dag.test -----------------------------------------------------------------------------
@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    for running in start_estate(tmp_path, policy={"auto_approve": ["critical"], "fence": "best_effort",
                                                  "failback_auto_approve": True}):
        monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(running.catalog_file))
        yield running


def _answer_when_waiting(dag_id: str, task_id: str, option: str, user: str, deadline: float) -> str:
    """Wait until the HITL task waits, then answer through the REST API's own handler; return the run id."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id,
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT))
            run_id = str(ti.run_id) if ti is not None else None
        if run_id:
            time.sleep(2.5)  # Airflow 3.3.2: an answer within ~1 s of waiting can fail the task
            with create_session() as session:
                update_hitl_detail(dag_id=dag_id, dag_run_id=run_id, task_id=task_id,
                                   update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option],
                                                                                      params_input={}),
                                   user=SimpleAuthManagerUser(username=user, role="user"), session=session,
                                   map_index=-1)
            return run_id
        time.sleep(0.5)
    raise AssertionError(f"{task_id} never reached awaiting_input")


@pytest.mark.slow
def test_failover_dag_with_a_person_approving(estate: Estate, data_dir: Path, airflow_db: Path) -> None:
    estate.services.down("primary")
    conf = {"service": "orders", "incident_id": "INC-DAG-1", "reason": "INC-DAG-1: primary down", "dry_run": False}
    proc = start_dag("failover_service", conf)
    try:
        run_id = _answer_when_waiting("failover_service", "approve_failover", "Approve", "erin",
                                      time.monotonic() + 240)
    except BaseException:
        proc.kill()
        raise
    run = proc.finish(timeout=240)
    output = run["output"]
    assert run["state"] == "success", output[-4000:]
    tasks = run["tasks"]
    assert tasks["approve_failover"] == "success" and tasks["approve_by_policy"] == "skipped"
    assert tasks["report_decision"] == "skipped" and tasks["verify"] == "success"
    result = json.loads(history.result_path(run_id).read_text())
    assert result["status"] == "failed_over" and result["approver"] == "erin"
    assert result["rto"]["approval_wait_seconds"] > 2 and result["rto"]["rto_seconds"] > result["rto"]["our_steps_seconds"]
    assert primary_answers() == "orders-standby"
    applies = [r for r in read_audit(run_id=run_id) if r.step == "apply"]
    assert {(r.action, r.outcome, r.approver) for r in applies} == {
        ("fence", "changed", "erin"), ("promote", "changed", "erin"), ("switch_dns", "changed", "erin")}


@pytest.mark.slow
def test_failover_dag_refuses_a_healthy_primary(estate: Estate, data_dir: Path, airflow_db: Path) -> None:
    run = run_dag("failover_service", {"service": "orders", "incident_id": "INC-DAG-2", "reason": "false alarm",
                                       "dry_run": False, "severity": "critical"}, timeout=300)
    assert run["state"] == "failed" and run["tasks"]["report_decision"] == "failed", _errors(run)
    assert run["tasks"]["fence_primary"] == "skipped" and "primary is healthy" in run["output"]
    assert primary_answers() == "orders-primary"


@pytest.mark.slow
def test_failback_and_drill_dags(estate: Estate, data_dir: Path, airflow_db: Path) -> None:
    estate.services.down("primary")
    over = run_failover("fo-dag-3", incident_id="INC-DAG-3", service="orders", reason="x", dry_run=False,
                        severity="critical")
    assert over["result"]["status"] == "failed_over", over["error"]
    estate.services.up("primary")
    back = run_dag("failback_service", {"service": "orders", "incident_id": "INC-DAG-3", "reason": "back",
                                        "dry_run": False}, timeout=300)
    assert back["state"] == "success", _errors(back)
    assert back["tasks"]["approve_by_policy"] == "success" and back["tasks"]["restore_standby"] == "success"
    assert json.loads(history.result_path(back["run_id"]).read_text())["status"] == "failed_back"
    assert primary_answers() == "orders-primary"
    # a dry run through the real DAG graph: nothing is stopped, promoted or switched
    dry = run_dag("failover_drill", {"service": "orders", "dry_run": True}, timeout=300)
    assert dry["state"] == "success", dry["output"][-4000:]
    assert {dry["tasks"][t] for t in ("start_outage", "fail_over", "end_outage", "fail_back")} == {"skipped"}, dry["tasks"]
    assert primary_answers() == "orders-primary" and estate.services.status()["primary"]
    drill = run_dag("failover_drill", {"service": "orders", "dry_run": False}, timeout=300)
    assert drill["state"] == "success", drill["output"][-4000:]
    assert drill["tasks"]["fail_over"] == drill["tasks"]["fail_back"] == drill["tasks"]["end_outage"] == "success"
    result = json.loads(history.result_path(drill["run_id"]).read_text())
    assert result["status"] == "passed" and result["rto"]["rto_seconds"] > 0
    assert primary_answers() == "orders-primary" and estate.services.status()["primary"]
