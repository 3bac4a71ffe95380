"""
# Failover drill

**Owner:** sre-team · **Trigger:** by hand (UI form) or the API, or on its weekly schedule (Sundays
04:00 UTC) against services whose catalog entry allows drills (`drill.allowed`: staging, the local
estate) · **Changes the clouds**: a real failover and failback; `dry_run` is on when triggered by hand
without saying otherwise, off on the schedule.

Proves the failover works and measures the RTO: stops the primary's application endpoint for real (the
catalog's `drill.outage` call), fails the service over with the same steps as `failover_service`, brings
the endpoint back, fails back with the same steps as `failback_service`, and reports the RTO (outage ->
standby verified) with the time of every step.

## Steps
1. **resolve_request**: the service must exist and allow drills.
2. **check_ready**: both sides healthy, the topology as the catalog describes it (DNS on the primary, the
   standby a replica with a known, small lag). Not ready, or a dry run -> **report**.
3. **approve_drill** (Human in the loop) or **approve_by_policy** (`drill.auto_approve`).
4. **start_outage**: the catalog's outage call; wait (bounded) until the primary's probes fail.
5. **fail_over**: assess -> decide -> fence -> promote -> switch DNS -> verify (one task: no scheduling
   between the steps).
6. **end_outage** (runs whatever happened before): the catalog's restore call; wait until the primary
   answers again.
7. **fail_back**: rebuild replication -> wait until caught up -> fence -> promote -> switch DNS back ->
   verify -> restore the standby.
8. **report**: RTO, failback time, timeline, `data/failover/<run id>/result.json`, a line in
   `data/failover/history.jsonl`, the notification; fails when a stage failed.

## If it fails
- The report names the stage and the cloud's error. `end_outage` always runs, so the primary's endpoint
  is back; finish by hand with `failback_service` (same service) if the failover part succeeded.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import auto_dry_run_param, param, reason_param


def _pull(task_id: str, key: str = "return_value") -> Any:
    """This run's XCom of ``task_id`` (the DAG names its tasks; include/failover gets this function)."""
    return get_current_context()["ti"].xcom_pull(task_ids=task_id, key=key)


# ---- the tasks (each body is one call into include/failover) ----------------------------------------
@task(multiple_outputs=False)
def resolve_request() -> dict[str, Any]:
    """The service exists and allows drills."""
    from include.failover import tasks

    return tasks.drill_resolve(get_current_context())


@task.branch
def check_ready(resolved: dict[str, Any]) -> str:
    """Both sides healthy, the catalog's topology, the standby promotable."""
    from include.failover import tasks

    ready = tasks.drill_check_ready(get_current_context(), resolved)
    return tasks.drill_branch(ready, not_ready="report_not_ready", policy="approve_by_policy", human="approve_drill")


@task(multiple_outputs=False)
def approve_by_policy() -> dict[str, Any]:
    """The catalog approves drills of this service without a person."""
    return {"approved": True, "responded_by": "policy: drill.auto_approve", "chosen_options": ["Approve"]}


def _approval() -> Any:
    from include.failover import tasks

    return tasks.pulled_approval(_pull, "approve_by_policy", "approve_drill")


@task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
def start_outage(resolved: dict[str, Any]) -> dict[str, Any]:
    """Stop the primary's endpoint for real; wait until its probes fail."""
    from include.failover import tasks

    # `resolved` is an upstream too and succeeded, so the trigger rule alone would also start the outage of a
    # dry run or of a drill that is not ready (both approval paths skipped): only a started drill goes on.
    tasks.skip_unless(tasks.drill_started(tasks.pulled(_pull, "check_ready", key="ready")),
                      "the drill did not start (dry run or not ready): no outage")
    return tasks.drill_stage(resolved, "start_outage")


@task(multiple_outputs=False)  # a retry resumes: the ledger skips the steps already done
def fail_over(resolved: dict[str, Any], outage: dict[str, Any]) -> dict[str, Any]:
    """Assess, decide, fence, promote, switch DNS, verify."""
    from include.failover import tasks

    return tasks.drill_stage(resolved, "fail_over", outage=outage, approval=_approval())


@task(trigger_rule="all_done", multiple_outputs=False)
def end_outage(resolved: dict[str, Any]) -> dict[str, Any]:
    """Bring the primary's endpoint back (whatever happened before); wait until it answers."""
    from include.failover import tasks

    tasks.skip_unless(tasks.pulled(_pull, "start_outage") is not None, "no outage was started")
    return tasks.drill_stage(resolved, "end_outage")


@task(multiple_outputs=False)
def fail_back(resolved: dict[str, Any]) -> dict[str, Any]:
    """Rebuild replication, wait, fence, promote, switch DNS back, verify, restore the standby."""
    from include.failover import tasks

    return tasks.drill_stage(resolved, "fail_back", approval=_approval())


@task(multiple_outputs=False)
def report_not_ready(resolved: dict[str, Any]) -> dict[str, Any]:
    """Not ready, or a dry run: write the result (fail when not ready)."""
    from include.failover import tasks

    return tasks.drill_report(get_current_context(), resolved,
                              ready=tasks.pulled(_pull, "check_ready", key="ready"),
                              approval=None, outage=None, failover=None, restored=None, failback_part=None,
                              errors={})


@task(trigger_rule="all_done", multiple_outputs=False)
def report(resolved: dict[str, Any] | None) -> dict[str, Any]:
    """RTO, failback time, timeline, result, history, notification; fail when a stage failed."""
    from include.failover import tasks

    context = get_current_context()
    ready = tasks.pulled(_pull, "check_ready", key="ready")
    tasks.skip_unless(tasks.drill_started(ready), "the drill did not start: report_not_ready wrote the result")
    return tasks.drill_report(
        context, resolved, ready=ready, approval=_approval(), outage=tasks.pulled(_pull, "start_outage"),
        failover=tasks.pulled(_pull, "fail_over"), restored=tasks.pulled(_pull, "end_outage"),
        failback_part=tasks.pulled(_pull, "fail_back"),
        errors=tasks.drill_errors(_pull, ("start_outage", "fail_over", "end_outage", "fail_back")))


@dag(
    dag_id="failover_drill",
    schedule="0 4 * * 0",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "failover", "drill", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={"owner": "sre-team", "retries": 1, "retry_delay": timedelta(seconds=5),
                  "execution_timeout": timedelta(hours=3)},
    params={
        "service": param("orders", type="string", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", title="Service",
                         description="A service of config/services.yaml whose entry allows drills."),
        "reason": reason_param(),
        "dry_run": auto_dry_run_param(),
    },
)
def failover_drill() -> None:
    approve_drill = approval_gate(
        "approve_drill",
        subject="{{ ti.xcom_pull(task_ids='check_ready', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='check_ready', key='approval_body') }}",
        response_timeout=timedelta(hours=1),
        doc_md="Approve to stop the primary's endpoint and run the failover and the failback.",
    )

    resolved = resolve_request()
    policy = approve_by_policy()
    check_ready(resolved) >> [approve_drill, policy, report_not_ready(resolved)]  # type: ignore[arg-type]
    outage = start_outage(resolved)  # type: ignore[arg-type]
    [approve_drill, policy] >> outage
    over = fail_over(resolved, outage)  # type: ignore[arg-type]
    ended = end_outage(resolved)  # type: ignore[arg-type]
    back = fail_back(resolved)  # type: ignore[arg-type]
    over >> ended
    [over, ended] >> back >> report(resolved)  # type: ignore[arg-type]


failover_drill()
