"""
# Provision an environment from its spec

**Owner:** platform-team · **Trigger:** by hand (UI form) or the API with an `environment` (a spec in
`config/environments/<environment>.yaml`); `detect_drift` starts a dry run for every drifted environment ·
**Changes the clouds** only when `dry_run` is false (it is **on** by default), and a plan that changes a
**production** environment waits for a human's approval first.

Terraform's plan / apply discipline on the change engine (`include/changes/`): every resource the spec
declares (S3 / GCS buckets, Azure containers, security groups, EC2 and RDS instances and replicas, Route 53
zones and records, DynamoDB tables, Compute Engine instances, Azure VMs) is read, compared with the spec
field by field, and created or updated in dependency order. Only resources tagged as managed by this
environment are ever changed; a resource with the spec's name that is not is a **conflict**, never adopted.

## Steps
1. **validate_spec**: load the spec and validate it against `config/environments/schema.json` and the checks a
   schema cannot make (targets, references `${sg.web.id}`, `depends_on`, cycles). A bad spec fails here, naming
   the file, the resource and the field, before any cloud is called, and is not retried.
2. **plan_changes**: read the live state of every resource and plan it: create, update (each differing
   field: live -> spec), or no change; conflicts (an unmanaged look-alike) and errors are listed. The plan
   is in the task log, returned as data, and written to `data/provisioning/<run id>/plan.md` (+ `plan.json`).
3. **choose_path**: a dry run, nothing to change, or anything that could not be planned -> **report_plan**
   (writes the result; fails listing every conflict / error: nothing is applied from a partial plan).
   A production environment -> **approve_changes**; otherwise -> **no_approval_needed**.
4. **approve_changes** (production only; Browse -> Required Actions, or the HITL API): *Approve* applies exactly
   the plan; *Reject*, or no answer within 12 hours, changes nothing.
5. **apply_changes**: apply in dependency order under rate control (`max_concurrency`, `max_errors`; by
   default the first failure stops new changes), each recorded in the ledger under `idempotency_key`.
6. **verify_changes**: re-read every resource (bounded wait for clouds that create asynchronously): live
   state equals the spec.
7. **report**: `data/provisioning/<run id>/result.json`, listing what was done and what was not; the run
   fails when anything failed, was not attempted or is not as the spec says.

## If it fails
- `validate_spec`: fix the spec at the file / resource / field named and trigger again.
- `report_plan` with a conflict: a resource with the spec's name exists but is not tagged
  `managed-by: cloud-runbooks` + `runbooks-environment: <environment>`: rename it in the spec, or delete or tag the
  existing one if it really belongs here.
- `report`: the result lists done / not done per resource with the cloud's own error. The spec is
  declarative: trigger again (a new plan converges on what is left), or re-run with the same
  `idempotency_key` to resume the same change set without repeating what was done.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, idempotency_key_param, param, rate_params, reason_param

#: How long a human has to answer; no answer = the safe outcome (Reject).
APPROVAL_TIMEOUT = timedelta(hours=12)
ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"


@dag(
    dag_id="provision_environment",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "provisioning", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "environment": param(
            type="string", pattern=ENVIRONMENT_PATTERN, title="Environment",
            description="The spec to apply: config/environments/<environment>.yaml (e.g. demo).",
        ),
        "dry_run": dry_run_param(),
        "reason": reason_param(),
        **rate_params(default_concurrency="5", default_errors="0"),
        "idempotency_key": idempotency_key_param(),
    },
)
def provision_environment() -> None:
    # Each task body is one call into include/provisioning/runbook.py (the change engine underneath).
    @task(multiple_outputs=False)
    def validate_spec() -> dict[str, Any]:
        """Load and validate the spec; a bad spec fails here, naming file, resource and field (no retry)."""
        from include.provisioning.runbook import resolve_request

        return resolve_request(get_current_context(), "provision")

    @task(multiple_outputs=False)
    def plan_changes(resolved: dict[str, Any]) -> dict[str, Any]:
        """Read live state and plan every resource (reads only, also in a dry run); write the plan file."""
        from include.provisioning.runbook import PROVISION

        return PROVISION.plan(get_current_context(), resolved)

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run / nothing to change / refused -> report_plan; production -> approval; else apply."""
        from include.provisioning.runbook import ProvisioningRunbook

        return ProvisioningRunbook.choose_path(planned)

    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan as the run's result; fail naming every conflict or error."""
        from include.provisioning.runbook import PROVISION

        return PROVISION.report_plan(get_current_context(), planned)

    approve_changes = approval_gate(
        "approve_changes",
        subject="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Production environment: approve to apply exactly the planned changes; Reject changes nothing.",
    )
    no_approval_needed = EmptyOperator(task_id="no_approval_needed", doc_md="Not a production environment.")

    # Runs after either gate (a skipped approval must not skip it); Reject skips it explicitly.
    @task(trigger_rule="none_failed_min_one_success", multiple_outputs=False)
    def apply_changes() -> dict[str, Any]:
        """Apply in dependency order under rate control, each change recorded in the ledger."""
        from include.provisioning.runbook import PROVISION

        context = get_current_context()
        ti = context["ti"]
        return PROVISION.apply(context, ti.xcom_pull(task_ids="plan_changes"),
                               ti.xcom_pull(task_ids="approve_changes", key="decision"))

    @task(multiple_outputs=False)
    def verify_changes(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every resource: live state equals the spec."""
        from include.provisioning.runbook import PROVISION

        return PROVISION.verify(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json (done / not done per resource); fail on anything failed or not as the spec says."""
        from include.provisioning.runbook import PROVISION

        ti = get_current_context()["ti"]
        return PROVISION.report(get_current_context(), planned=planned, verified=verified,
                                applied=ti.xcom_pull(task_ids="apply_changes"),
                                decision=ti.xcom_pull(task_ids="approve_changes", key="decision"))

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (as in remediate_findings).
    planned = plan_changes(validate_spec())  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), approve_changes, no_approval_needed]  # type: ignore[arg-type]
    applied = apply_changes()
    [approve_changes, no_approval_needed] >> applied
    report(planned, verify_changes(applied))  # type: ignore[arg-type]


provision_environment()
