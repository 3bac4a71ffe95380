"""
# Remediate compliance findings

**Owner:** security-team · **Trigger:** by hand (UI form) or the API, with finding ids from a
`compliance_scan` report, or a rule id and resource ids · **Changes the clouds** only after a human
approves the exact plan; `dry_run` is **on** by default.

Fixes what `compliance_scan` found with idempotent fixers (`include/compliance/remediation/`):
S3 block public access, S3 default encryption, S3 versioning, GCS uniform access + public access
prevention, Azure container public access off, RDS backup retention, required tags / labels / metadata.
Each fixer is a step of the change engine (`include/changes/`): it reads the resource, plans the exact
change, applies only what is still missing and re-reads to verify. Every step writes the audit trail.

## Steps
1. **resolve_targets**: validate the parameters: either `finding_ids` (from the latest scan) or `rule` +
   `resources` (from the latest inventory), never both, never neither; an unknown parameter is refused.
   Unknown finding ids, unknown resources, a rule without a fixer, or (when applying) a missing `reason`
   or `tag_values` fail here, before any cloud is called, and are not retried.
2. **plan_changes**: read each resource from its cloud and compute the exact change (before / after and
   the API call), logged per resource and kept in XCom. Reads only, also in a dry run.
3. **choose_path**: dry run, or nothing to change -> **report_plan** writes the plan and stops (a dry
   run lists resources that need a parameter, e.g. `tag_values`, without failing; any other plan error,
   such as a resource that no longer exists, fails the run). Otherwise -> **approve_changes**.
4. **approve_changes** (Human in the loop: Browse -> Required Actions, or the HITL API): the request lists
   every planned change. *Approve* applies exactly that plan; *Reject*, or no answer within 12 hours,
   changes nothing.
5. **apply_changes**: apply the changes with rate control (`max_concurrency`, `max_errors`: a number or
   a percentage, as in AWS SSM Automation), each recorded in the change ledger under the run's
   `idempotency_key`: a rerun resumes and never repeats a completed change. Applying twice changes
   nothing the second time.
6. **verify_changes**: re-read every resource (waiting, within a bound, for clouds that apply a change
   asynchronously): fixed / not fixed.
7. **report**: write `data/remediation/<run id>/result.json`; the run **fails** when any change failed, was
   not attempted or is not fixed, listing each one. A rejection is recorded and ends the run green.

## If it fails
- `resolve_targets`: the message lists every bad id / resource / parameter; fix them and trigger again.
- `report_plan` / `report`: open the log (or result.json): each failed resource names the phase (plan /
  apply / verify) and the cloud's own error; `access_denied` means the connection lacks a permission that
  fixer declares (`permissions=` in `include/compliance/remediation/<cloud>.py`). Re-running with the same
  `idempotency_key` only touches what is still not done.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, idempotency_key_param, param, rate_params, reason_param

#: How long a human has to answer; no answer = the safe outcome (Reject).
APPROVAL_TIMEOUT = timedelta(hours=12)
_FINDING_ID = r"^(aws|gcp|azure)_[a-z0-9_]+:[0-9a-f]{16}$"


@dag(
    dag_id="remediate_findings",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "compliance", "remediation", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={
        "owner": "security-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "dry_run": dry_run_param(),
        "finding_ids": param(
            None, type=["null", "array"], items={"type": "string", "pattern": _FINDING_ID}, title="Finding ids",
            description="Finding ids from the latest compliance_scan report (e.g. aws_s3_bucket_versioning:1a2b...).",
        ),
        "rule": param(
            None, type=["null", "string"], pattern=r"^(aws|gcp|azure)_[a-z0-9_]+$", title="Rule id",
            description="Instead of finding ids: a rule id whose fixer to run on the resources below.",
        ),
        "resources": param(
            None, type=["null", "array"], items={"type": "string", "minLength": 1}, title="Resources",
            description="With a rule: resource ids (ARN, GCS / Azure URL) or unique names from the latest inventory.",
        ),
        "tag_values": param(
            None, type=["null", "object"], additionalProperties={"type": "string", "minLength": 1, "maxLength": 256},
            title="Tag values",
            description='Values for missing required tags, e.g. {"owner": "platform-team", "cost-center": "cc-1"}. '
                        "Existing values are never overwritten.",
        ),
        "retention_days": param(
            7, type="integer", minimum=1, maximum=35, title="RDS backup retention (days)",
            description="Backup retention aws.rds.backup_retention sets (never lowers).",
        ),
        "kms_key_id": param(
            None, type=["null", "string"], title="KMS key for S3 default encryption",
            description="Key id / ARN for SSE-KMS. Empty: SSE-S3 (AES256).",
        ),
        "reason": reason_param(),
        **rate_params(),
        "idempotency_key": idempotency_key_param(),
    },
)
def remediate_findings() -> None:
    # Each task body is one call into the change engine (include/changes/runbook.py) with this runbook's
    # part: its request, wording and fixers (include/compliance/remediation/runner.py).
    @task(multiple_outputs=False)
    def resolve_targets() -> dict[str, Any]:
        """Validate the request and resolve it to (fixer, resource) pairs; nothing is called yet."""
        from include.compliance.remediation.runner import resolve_request

        return resolve_request(get_current_context())

    @task(multiple_outputs=False)
    def plan_changes(resolved: dict[str, Any]) -> dict[str, Any]:
        """Read every resource and compute its exact change (reads only, also in a dry run)."""
        from include.compliance.remediation.runner import REMEDIATION

        return REMEDIATION.plan(get_current_context(), resolved)

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run or nothing to change: report the plan. Otherwise: ask for approval."""
        from include.changes.runbook import ChangeSet

        return "approve_changes" if ChangeSet.from_dict(planned).needs_approval else "report_plan"

    # The report tasks fail with AirflowFailException (no retry): a result does not change by retrying.
    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan as the run's result; fail when a resource could not be planned."""
        from include.compliance.remediation.runner import REMEDIATION

        return REMEDIATION.report_plan(get_current_context(), planned)

    approve_changes = approval_gate(
        "approve_changes",
        subject="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to apply exactly the planned changes listed in the request; Reject changes nothing.",
    )

    @task(multiple_outputs=False)
    def apply_changes(planned: dict[str, Any]) -> dict[str, Any]:
        """Apply the approved changes under rate control, each recorded in the ledger; failures are recorded."""
        from include.compliance.remediation.runner import REMEDIATION

        context = get_current_context()
        decision = context["ti"].xcom_pull(task_ids="approve_changes", key="decision")
        return REMEDIATION.apply(context, planned, decision)

    @task(multiple_outputs=False)
    def verify_changes(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every resource: fixed or not fixed."""
        from include.compliance.remediation.runner import REMEDIATION

        return REMEDIATION.verify(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json; fail listing every failed / not fixed resource. A rejection ends green."""
        from include.compliance.remediation.runner import REMEDIATION

        ti = get_current_context()["ti"]
        return REMEDIATION.report(
            get_current_context(), planned=planned, verified=verified, applied=ti.xcom_pull(task_ids="apply_changes"),
            decision=ti.xcom_pull(task_ids="approve_changes", key="decision"),
        )

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (until we use its mypy plugin).
    planned = plan_changes(resolve_targets())  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), approve_changes]  # type: ignore[arg-type]
    applied = apply_changes(planned)  # type: ignore[arg-type]
    approve_changes >> applied  # Reject (or timeout) skips apply_changes and everything after it
    report(planned, verify_changes(applied))  # type: ignore[arg-type]


remediate_findings()
