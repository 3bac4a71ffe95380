"""
# Fail a service back to its primary

**Owner:** sre-team · **Trigger:** by hand (UI form) or the API, once the primary side is healthy again
after a `failover_service` run · **Changes the clouds**: rebuilds replication first (nothing is
deleted), switches back only after approval; `dry_run` is **on** by default.

Reverses a failover and leaves the topology as `config/services.yaml` describes it: the primary's database
is the writer again, the standby's is its read replica, DNS answers the primary. Once per `incident_id`
(the failover it reverts), with the same ledger, leases and audit trail as `failover_service`.

## Steps
1. **resolve_request**: validate the parameters and the service (nothing is read yet).
2. **assess_primary** / **assess_standby**: probe both sides' endpoints, read both databases and DNS.
3. **decide**: refuse when the service is not failed over, or the primary side's endpoints are not healthy
   (each reason named). Dry run, refusal, nothing to do, done earlier -> **report_decision**.
4. **rebuild_replication**: the database holding the primary's name (the fenced old primary) is renamed
   `<name>-retired-<hash>`, and a new read replica of the standby is created under the primary's name in
   the original region; wait (bounded) until it is available.
5. **wait_for_replica**: wait (bounded) until it has caught up (replica lag known and within the limit),
   then plan the rest and ask for approval.
6. **approve_failback** (Human in the loop; *Reject* or no answer in 2 hours changes nothing more) or
   **approve_by_policy** (`policy.failback_auto_approve`).
7. **fence_standby** -> **promote_primary** -> **switch_dns**: stop writes on the standby, promote the new
   primary (bounded wait), make the name answer the primary (bounded wait until in sync).
8. **verify**: DNS answers the primary, its database accepts writes, its probes pass.
9. **restore_standby**: the old standby is renamed out of the way and a new read replica of the primary
   is created under the standby's name; wait (bounded) until it is available and caught up.
10. **record_and_notify**: timeline, time to verified, result, history, notification, audit; the renamed
    databases are listed for review.

## If it fails
- Trigger again with the same `incident_id`: done steps are skipped, the rest is applied.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, param, reason_param

APPROVAL_TIMEOUT = timedelta(hours=2)
_KEY = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$"
STEP_TASKS = ("rebuild_replication", "fence_standby", "promote_primary", "switch_dns", "restore_standby")


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
    """Probe the primary side's endpoints, read its database and the DNS record set."""
    from include.failover import tasks

    return tasks.assess(resolved, "primary")


@task(multiple_outputs=False)
def assess_standby(resolved: dict[str, Any]) -> dict[str, Any]:
    """Probe the standby's endpoints, read its database (the current writer)."""
    from include.failover import tasks

    return tasks.assess(resolved, "standby")


@task.branch
def decide(resolved: dict[str, Any], primary: dict[str, Any], standby: dict[str, Any]) -> str:
    """Refuse or plan the failback."""
    from include.failover import tasks

    decision = tasks.decide_failback(get_current_context(), resolved, primary, standby)
    return {"fail_back": "rebuild_replication"}.get(decision["outcome"], "report_decision")


@task(multiple_outputs=False)
def report_decision(resolved: dict[str, Any], primary: dict[str, Any], standby: dict[str, Any]) -> dict[str, Any]:
    """Dry run, refusal or nothing to do: write the result; fail on a refusal."""
    from include.failover import tasks

    decision = get_current_context()["ti"].xcom_pull(task_ids="decide", key=tasks.DECISION_KEY)
    return tasks.report_failback_decision(get_current_context(), resolved, primary, standby, decision)


def _decision() -> Any:
    from include.failover import tasks

    return get_current_context()["ti"].xcom_pull(task_ids="decide", key=tasks.DECISION_KEY)


@task(multiple_outputs=False)
def rebuild_replication() -> dict[str, Any]:
    """A new replica of the standby under the primary's name (the old primary renamed); bounded wait."""
    from include.failover import tasks

    return tasks.failback_step(get_current_context(), _decision(), "rebuild_replication", None)


@task.branch
def wait_for_replica() -> str:
    """Wait (bounded) until the new replica has caught up; plan the rest; ask for approval."""
    from include.failover import tasks

    waited = tasks.wait_for_replica(get_current_context(), _decision())
    get_current_context()["ti"].xcom_push(key="waited", value=waited)
    return {"policy": "approve_by_policy"}.get(waited["approval"], "approve_failback")


@task(multiple_outputs=False)
def approve_by_policy() -> dict[str, Any]:
    """The catalog approves failbacks of this service without a person: recorded."""
    from include.failover import tasks

    ti = get_current_context()["ti"]
    return tasks.approve_failback_by_policy(get_current_context(), _decision(),
                                            ti.xcom_pull(task_ids="wait_for_replica", key="waited"))


def _step(task_id: str) -> dict[str, Any]:
    from include.failover import tasks

    context = get_current_context()
    approval = tasks.run_approval(context, _pull, _decision(), policy_task="approve_by_policy",
                                  human_task="approve_failback", record=task_id == "fence_standby")
    return tasks.failback_step(context, _decision(), task_id, approval)


@task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
def fence_standby() -> dict[str, Any]:
    """Stop writes on the standby (the current writer), as the fencing policy says."""
    return _step("fence_standby")


@task(multiple_outputs=False)
def promote_primary() -> dict[str, Any]:
    """Promote the new replica in the original region; wait until it is an available writer (bounded)."""
    return _step("promote_primary")


@task(multiple_outputs=False)
def switch_dns() -> dict[str, Any]:
    """Make the name answer the primary; wait until the change is in sync (bounded)."""
    return _step("switch_dns")


@task(multiple_outputs=False)
def verify() -> dict[str, Any]:
    """DNS answers the primary, its database accepts writes, its probes pass."""
    from include.failover import tasks

    return tasks.verify(get_current_context(), _decision(), "primary")


@task(multiple_outputs=False)
def restore_standby() -> dict[str, Any]:
    """A new replica of the primary under the standby's name; bounded wait until caught up."""
    from include.failover import tasks

    out = _step("restore_standby")
    out["caught_up"] = tasks.wait_for_replica(get_current_context(), _decision(), side="standby")
    return out


@task(trigger_rule="all_done", multiple_outputs=False)
def record_and_notify(resolved: dict[str, Any] | None) -> dict[str, Any]:
    """Timeline, time to verified, result, history, notification; fail unless failed back or rejected."""
    from include.failover import tasks

    context = get_current_context()
    return tasks.record_failback(
        context, resolved, tasks.pulled(_pull, "assess_primary"), tasks.pulled(_pull, "assess_standby"),
        _decision(), tasks.pulled(_pull, "wait_for_replica", key="waited"),
        tasks.pulled_approval(_pull, "approve_by_policy", "approve_failback"),
        tasks.pulled_steps(_pull, STEP_TASKS), tasks.pulled(_pull, "verify", key=tasks.CHECKS_KEY))


@dag(
    dag_id="failback_service",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "failover", "failback", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={"owner": "sre-team", "retries": 1, "retry_delay": timedelta(seconds=5),
                  "execution_timeout": timedelta(hours=3)},
    params={
        "service": param(type="string", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", title="Service",
                         description="A service of config/services.yaml."),
        "incident_id": param(type="string", pattern=_KEY, maxLength=200, title="Incident id",
                             description="The failover this reverts: the ledger key (once per key, a rerun resumes)."),
        "reason": reason_param(),
        "dry_run": dry_run_param(),
    },
)
def failback_service() -> None:
    approve_failback = approval_gate(
        "approve_failback",
        subject="{{ ti.xcom_pull(task_ids='wait_for_replica', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='wait_for_replica', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to fence the standby, promote the primary and switch DNS back; Reject stops here.",
    )

    resolved = resolve_request()
    primary, standby = assess_primary(resolved), assess_standby(resolved)  # type: ignore[arg-type]
    rebuild = rebuild_replication()
    decide(resolved, primary, standby) >> [report_decision(resolved, primary, standby), rebuild]  # type: ignore[arg-type]
    policy = approve_by_policy()
    rebuild >> wait_for_replica() >> [approve_failback, policy]
    fence = fence_standby()
    [approve_failback, policy] >> fence
    fence >> promote_primary() >> switch_dns() >> verify() >> restore_standby() >> record_and_notify(resolved)  # type: ignore[arg-type]


failback_service()
