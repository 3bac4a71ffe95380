"""
# Fail over a service to its standby

**Owner:** sre-team · **Trigger:** by hand (UI form), the API, or the incident-intake runbook, with the
service, the incident id and the alert's severity · **Changes the clouds** only after approval (a person,
or the service's policy for this severity); `dry_run` is **on** by default.

Moves a service from its primary side to its standby (`config/services.yaml`): the standby's read replica
becomes the writer and DNS sends the traffic there. Once per incident: the change ledger is keyed by the
incident id, so a second run for the same incident promotes and switches nothing, a rerun after a failure
resumes where it stopped, and two failovers of one service never run at once.

## Steps
1. **resolve_request**: validate the parameters and the service; an unknown parameter or service, a bad
   incident id or a missing `reason` (when applying) fails here, once, before anything is read.
2. **assess_primary** / **assess_standby** (in parallel): probe each side's endpoints for real over HTTP
   (several attempts; never the DNS provider's health-check status), read each database (replica status,
   replica lag), read the DNS record set.
3. **decide**: refuse a primary that answers (unless `force`), an unhealthy standby, a standby database
   that is not a replica, not available, or lags more than the catalog allows or by an unknown amount,
   each with the reason. Plans fence -> promote -> switch DNS. A dry run, a refusal, an incident done
   earlier or in progress elsewhere, or a service already on its standby -> **report_decision**.
4. **approve_failover** (Human in the loop, Browse -> Required Actions) lists the plan; *Reject* or no answer
   in 30 minutes changes nothing. Or **approve_by_policy** when the catalog auto-approves the severity
   (or a resumed run was approved earlier).
5. **fence_primary**: cut the old primary off (RDS: quarantine security group), as the policy says
   (`required` / `best_effort` / `none`).
6. **promote_standby**: promote the replica and wait, bounded, until it is an available writer.
7. **switch_dns**: one atomic change makes the name answer the standby; wait, bounded, until in sync.
8. **verify**: DNS answers the standby, the promoted database accepts writes (control plane), the
   standby's probes pass (bounded wait).
9. **record_and_notify**: timeline of every step, RTO (incident start, given or the trigger time, to
   verified), `data/failover/<run id>/result.json`, a line in `data/failover/history.jsonl`, the
   notification to the service's people, the audit record.

## If it fails
- A refusal names every reason; fix the standby or, for a healthy primary you still want to leave, set
  `force`. A failed step names the cloud's error; trigger again with the **same incident id**: done steps
  are skipped (`done_earlier`), the rest is applied, no second approval is asked for.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, param, reason_param

APPROVAL_TIMEOUT = timedelta(minutes=30)
_KEY = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$"
#: decide's outcome (or approval path) -> the task that follows
STEP_TASKS = ("fence_primary", "promote_standby", "switch_dns")
NEXT = {"human": "approve_failover", "policy": "approve_by_policy", "resumed": "approve_by_policy"}


def _pull(task_id: str, key: str = "return_value") -> Any:
    """This run's XCom of ``task_id`` (the DAG names its tasks; include/failover gets this function)."""
    return get_current_context()["ti"].xcom_pull(task_ids=task_id, key=key)


# ---- the tasks (each body is one call into include/failover) ----------------------------------------
@task(multiple_outputs=False)
def resolve_request() -> dict[str, Any]:
    """Validate the request and the service (nothing is called)."""
    from include.failover import tasks

    return tasks.resolve(get_current_context())


@task(multiple_outputs=False)
def assess_primary(resolved: dict[str, Any]) -> dict[str, Any]:
    """Probe the primary's endpoints, read its database and the DNS record set."""
    from include.failover import tasks

    return tasks.assess(resolved, "primary")


@task(multiple_outputs=False)
def assess_standby(resolved: dict[str, Any]) -> dict[str, Any]:
    """Probe the standby's endpoints, read its replica (status, lag)."""
    from include.failover import tasks

    return tasks.assess(resolved, "standby")


@task.branch
def decide(resolved: dict[str, Any], primary: dict[str, Any], standby: dict[str, Any]) -> str:
    """Refuse, or plan and choose how it is approved."""
    from include.failover import tasks

    decision = tasks.decide(get_current_context(), resolved, primary, standby)
    return NEXT.get(decision.get("approval") or "", "report_decision")


@task(multiple_outputs=False)
def report_decision(resolved: dict[str, Any], primary: dict[str, Any], standby: dict[str, Any]) -> dict[str, Any]:
    """Dry run, refusal, or nothing to do: write the result; fail on a refusal."""
    from include.failover import tasks

    decision = get_current_context()["ti"].xcom_pull(task_ids="decide", key=tasks.DECISION_KEY)
    return tasks.report_decision(get_current_context(), resolved, primary, standby, decision)


@task(multiple_outputs=False)
def approve_by_policy() -> dict[str, Any]:
    """The catalog auto-approves this severity (or a resumed run was approved earlier): recorded."""
    from include.failover import tasks

    ti = get_current_context()["ti"]
    return tasks.approve_by_policy(get_current_context(), ti.xcom_pull(task_ids="decide", key=tasks.DECISION_KEY))


def _step(step_id: str, task_id: str) -> dict[str, Any]:
    from include.failover import tasks

    context = get_current_context()
    decision = tasks.pulled(_pull, "decide", key=tasks.DECISION_KEY)
    approval = tasks.run_approval(context, _pull, decision, policy_task="approve_by_policy", human_task="approve_failover",
                                  record=True)
    return tasks.apply(context, decision, step_id, approval, task=task_id)


@task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
def fence_primary() -> dict[str, Any]:
    """Cut the old primary off, as the fencing policy says."""
    return _step("failover.fence", "fence_primary")


@task(multiple_outputs=False)
def promote_standby() -> dict[str, Any]:
    """Promote the standby's replica; wait until it is an available writer (bounded)."""
    return _step("failover.promote", "promote_standby")


@task(multiple_outputs=False)
def switch_dns() -> dict[str, Any]:
    """Make the name answer the standby; wait until the change is in sync (bounded)."""
    return _step("failover.switch_dns", "switch_dns")


@task(multiple_outputs=False)
def verify() -> dict[str, Any]:
    """DNS answers the standby, the promoted database accepts writes, probes pass."""
    from include.failover import tasks

    decision = get_current_context()["ti"].xcom_pull(task_ids="decide", key=tasks.DECISION_KEY)
    return tasks.verify(get_current_context(), decision, "standby")


@task(trigger_rule="all_done", multiple_outputs=False)
def record_and_notify(resolved: dict[str, Any] | None) -> dict[str, Any]:
    """Timeline, RTO, result, history, notification; fail unless verified, rejected or a duplicate."""
    from include.failover import tasks

    context = get_current_context()
    return tasks.record_and_notify(
        context, resolved, tasks.pulled(_pull, "assess_primary"), tasks.pulled(_pull, "assess_standby"),
        tasks.pulled(_pull, "decide", key=tasks.DECISION_KEY),
        tasks.pulled_approval(_pull, "approve_by_policy", "approve_failover"),
        tasks.pulled_steps(_pull, STEP_TASKS), tasks.pulled(_pull, "verify", key=tasks.CHECKS_KEY))


@dag(
    dag_id="failover_service",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "failover", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={"owner": "sre-team", "retries": 1, "retry_delay": timedelta(seconds=5),
                  "execution_timeout": timedelta(minutes=45)},
    params={
        "service": param(type="string", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", title="Service",
                         description="A service of config/services.yaml."),
        "incident_id": param(type="string", pattern=_KEY, maxLength=200, title="Incident id",
                             description="The ledger key: one failover per incident, a rerun resumes."),
        "reason": reason_param(),
        "severity": param(None, type=["null", "string"], enum=[None, "critical", "high", "medium", "low"],
                          title="Alert severity", description="The service's policy may auto-approve it."),
        "dry_run": dry_run_param(),
        "force": param(False, type="boolean", title="Force",
                       description="Fail over even though the primary's endpoints still answer."),
        "incident_started_at": param(None, type=["null", "string"], format="date-time", title="Incident start",
                                     description="ISO-8601; the RTO is measured from it (default: the trigger)."),
    },
)
def failover_service() -> None:
    approve_failover = approval_gate(
        "approve_failover",
        subject="{{ ti.xcom_pull(task_ids='decide', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='decide', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to fence, promote and switch exactly as planned; Reject changes nothing.",
    )

    resolved = resolve_request()
    primary, standby = assess_primary(resolved), assess_standby(resolved)  # type: ignore[arg-type]
    policy = approve_by_policy()
    decide(resolved, primary, standby) >> [report_decision(resolved, primary, standby),  # type: ignore[arg-type]
                                           approve_failover, policy]
    fence = fence_primary()
    [approve_failover, policy] >> fence
    done = fence >> promote_standby() >> switch_dns() >> verify()
    done >> record_and_notify(resolved)  # type: ignore[arg-type]


failover_service()
