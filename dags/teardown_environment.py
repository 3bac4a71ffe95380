"""
# Tear down an environment

**Owner:** platform-team · **Trigger:** by hand (UI form) or the API with an `environment` (a spec in
`config/environments/`) · **Deletes** only when `dry_run` is false (it is **on** by default) and only after a
human approved the exact list of deletions, **every time**.

Deletes exactly the resources the spec declares that carry its ownership tags (`managed-by: cloud-runbooks`,
`runbooks-environment: <environment>`), in reverse dependency order (what refers to a resource goes first:
records before their zone, instances before their security group, a replica before its source). A resource
with the spec's name that is not managed by the environment is left alone and reported. The teardown is
refused, with nothing deleted, while any of its resources is protected, and says which and why: deletion
protection (RDS, DynamoDB, EC2 termination protection, Compute Engine), a retention lock (S3 Object Lock, a
locked GCS retention policy, an Azure immutability policy or legal hold), `prevent_destroy` in the spec, a
bucket or container holding data without `force_destroy`, a zone holding records the spec does not manage.

## Steps
1. **validate_spec**: load and validate the spec (errors name the file, the resource and the field); no retry.
2. **plan_changes**: read every resource and plan its deletion (reads only, also in a dry run): delete, absent,
   left alone (not managed by this environment), or **protected**. Written to
   `data/teardown/<run id>/plan.md` (+ `plan.json`) and the task log.
3. **choose_path**: a dry run, nothing to delete, or any protected / unreadable resource -> **report_plan**
   (fails naming each protected resource and why: nothing is deleted). Otherwise -> **approve_changes**.
4. **approve_changes** (Browse -> Required Actions, or the HITL API): the request lists every deletion.
   *Approve* deletes exactly those; *Reject*, or no answer within 12 hours, deletes nothing.
5. **apply_changes**: delete in reverse dependency order under rate control, each deletion recorded in the
   ledger under `idempotency_key` (a rerun resumes and never repeats one); waits (bounded) where the next
   deletion depends on it (an instance must be terminated before its security group goes).
6. **verify_changes**: re-read every resource until it is gone (bounded wait: RDS takes minutes on AWS).
7. **report**: `data/teardown/<run id>/result.json`, listing what was deleted and what was not; the run fails
   when anything failed, was not attempted or still exists.

## If it fails
- `report_plan`: the message names each protected resource and the protection; lift it (or set
  `force_destroy`) deliberately, then trigger again.
- `report`: the result lists each resource with the cloud's own error; trigger again (a new plan only
  deletes what is left), or re-run with the same `idempotency_key` to resume.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, idempotency_key_param, param, rate_params, reason_param

#: How long a human has to answer; no answer = the safe outcome (Reject).
APPROVAL_TIMEOUT = timedelta(hours=12)
ENVIRONMENT_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"


@dag(
    dag_id="teardown_environment",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "provisioning", "teardown", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "environment": param(
            type="string", pattern=ENVIRONMENT_PATTERN, title="Environment",
            description="The spec whose resources to delete: config/environments/<environment>.yaml.",
        ),
        "dry_run": dry_run_param(),
        "reason": reason_param(),
        **rate_params(default_concurrency="5", default_errors="0"),
        "idempotency_key": idempotency_key_param(),
    },
)
def teardown_environment() -> None:
    # Each task body is one call into include/provisioning/runbook.py (the change engine underneath).
    @task(multiple_outputs=False)
    def validate_spec() -> dict[str, Any]:
        """Load and validate the spec; a bad spec fails here, naming file, resource and field (no retry)."""
        from include.provisioning.runbook import resolve_request

        return resolve_request(get_current_context(), "teardown")

    @task(multiple_outputs=False)
    def plan_changes(resolved: dict[str, Any]) -> dict[str, Any]:
        """Read every resource and plan its deletion (reads only, also in a dry run); write the plan file."""
        from include.provisioning.runbook import TEARDOWN

        return TEARDOWN.plan(get_current_context(), resolved)

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run / nothing to delete / protected -> report_plan; otherwise the approval (always)."""
        from include.provisioning.runbook import ProvisioningRunbook

        return ProvisioningRunbook.choose_path(planned)

    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan as the run's result; fail naming every protected or unreadable resource."""
        from include.provisioning.runbook import TEARDOWN

        return TEARDOWN.report_plan(get_current_context(), planned)

    approve_changes = approval_gate(
        "approve_changes",
        subject="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to delete exactly the listed resources; Reject deletes nothing.",
    )

    @task(multiple_outputs=False)
    def apply_changes(planned: dict[str, Any]) -> dict[str, Any]:
        """Delete in reverse dependency order under rate control, each deletion recorded in the ledger."""
        from include.provisioning.runbook import TEARDOWN

        context = get_current_context()
        return TEARDOWN.apply(context, planned, context["ti"].xcom_pull(task_ids="approve_changes", key="decision"))

    @task(multiple_outputs=False)
    def verify_changes(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every resource until it is gone (bounded)."""
        from include.provisioning.runbook import TEARDOWN

        return TEARDOWN.verify(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json (deleted / not deleted per resource); fail on anything failed or still there."""
        from include.provisioning.runbook import TEARDOWN

        ti = get_current_context()["ti"]
        return TEARDOWN.report(get_current_context(), planned=planned, verified=verified,
                                applied=ti.xcom_pull(task_ids="apply_changes"),
                                decision=ti.xcom_pull(task_ids="approve_changes", key="decision"))

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (as in remediate_findings).
    planned = plan_changes(validate_spec())  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), approve_changes]  # type: ignore[arg-type]
    applied = apply_changes(planned)  # type: ignore[arg-type]
    approve_changes >> applied  # Reject (or timeout) skips apply_changes and everything after it
    report(planned, verify_changes(applied))  # type: ignore[arg-type]


teardown_environment()
