"""
# Remediate compliance findings

**Owner:** security-team · **Trigger:** by hand (UI form) or the API, with finding ids from a
`compliance_scan` report, or a rule id and resource ids · **Changes the clouds** only after a human
approves the exact plan; `dry_run` is **on** by default.

Fixes what `compliance_scan` found with idempotent fixers (`include/compliance/remediation/`):
S3 block public access, S3 default encryption, S3 versioning, GCS uniform access + public access
prevention, Azure container public access off, RDS backup retention, required tags / labels / metadata.
Every fixer reads the resource first, plans the exact change, applies only what is still missing and
re-reads to verify. Every step writes the audit trail (`data/audit/<date>.jsonl`).

## Steps
1. **resolve_targets**: validate the parameters: either `finding_ids` (from the latest scan) or `rule` +
   `resources` (from the latest inventory), never both, never neither. Unknown finding ids, unknown
   resources, a rule without a fixer, or (when applying) a missing `tag_values` fail here, before any
   cloud is called.
2. **plan_changes**: read each resource from its cloud and compute the exact change (before / after and
   the API call), logged per resource and kept in XCom. Reads only, also in a dry run.
3. **choose_path**: dry run, or nothing to change -> **report_plan** writes the plan and stops (a dry
   run lists resources that need a parameter, e.g. `tag_values`, without failing). Otherwise ->
   **approve_changes**.
4. **approve_changes** (Human in the loop: Browse -> Required Actions, or the HITL API): the request lists
   every planned change. *Approve* applies exactly that plan; *Reject*, or no answer within 12 hours,
   changes nothing.
5. **apply_changes**: apply each change on its own: a fixer that fails is recorded and the others
   still run. Applying twice changes nothing the second time.
6. **verify_changes**: re-read every resource: fixed / not fixed.
7. **report**: write `data/remediation/<run id>/result.json`; the run **fails** when any fixer failed or
   any resource is not fixed, listing each one. A rejection is recorded and ends the run green.

## If it fails
- `resolve_targets`: the message lists every bad id / resource; fix the parameters and trigger again.
- `report`: open its log (or result.json): each failed resource names the step (plan / apply) and the
  cloud's own error; `access_denied` means the connection lacks a permission that fixer declares
  (`permissions=` in `include/compliance/remediation/<cloud>.py`). Fixes are idempotent: re-running the
  same request after the cause is fixed only touches what is still non-compliant.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from include.approval import RecordedApprovalOperator

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
        "dry_run": Param(
            True, type="boolean", title="Dry run",
            description="Plan and show each change, change nothing. Turn off to apply (after approval).",
        ),
        "finding_ids": Param(
            [], type="array", items={"type": "string", "pattern": _FINDING_ID}, title="Finding ids",
            description="Finding ids from the latest compliance_scan report (e.g. aws_s3_bucket_versioning:1a2b...).",
        ),
        "rule": Param(
            None, type=["null", "string"], pattern=r"^(aws|gcp|azure)_[a-z0-9_]+$", title="Rule id",
            description="Instead of finding ids: a rule id whose fixer to run on the resources below.",
        ),
        "resources": Param(
            [], type="array", items={"type": "string", "minLength": 1}, title="Resources",
            description="With a rule: resource ids (ARN, GCS / Azure URL) or unique names from the latest inventory.",
        ),
        "tag_values": Param(
            {}, type="object", additionalProperties={"type": "string", "minLength": 1, "maxLength": 256},
            title="Tag values",
            description='Values for missing required tags, e.g. {"owner": "platform-team", "cost-center": "cc-1"}. '
                        "Existing values are never overwritten.",
        ),
        "retention_days": Param(
            7, type="integer", minimum=1, maximum=35, title="RDS backup retention (days)",
            description="Backup retention aws.rds.backup_retention sets (never lowers).",
        ),
        "kms_key_id": Param(
            None, type=["null", "string"], title="KMS key for S3 default encryption",
            description="Key id / ARN for SSE-KMS. Empty: SSE-S3 (AES256).",
        ),
        "reason": Param(
            "", type="string", maxLength=500, title="Reason",
            description="Why (ticket, incident). Required to apply; recorded in the audit trail.",
        ),
    },
)
def remediate_findings() -> None:
    @task(multiple_outputs=False)
    def resolve_targets(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Validate the request and resolve it to (fixer, resource) pairs; nothing is called yet."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.compliance.remediation import runner

        try:
            request = runner.Request.from_params(params or {})
            if not request.dry_run and not request.reason.strip():
                raise runner.RemediationError("reason is required when dry_run is false (it goes to the audit trail)")
            entries = runner.resolve(request)
        except runner.RemediationError as exc:
            raise AirflowFailException(str(exc)) from None  # a bad request: retrying cannot help
        for entry in entries:
            print(f"{entry.fixer}: [{entry.record.target}] {entry.resource_id} (findings: "
                  f"{', '.join(entry.finding_ids) or '-'})")
        return {"request": request.to_dict(), "entries": runner.to_dicts(entries)}

    @task(multiple_outputs=False)
    def plan_changes(resolved: dict[str, Any]) -> dict[str, Any]:
        """Read every resource and compute its exact change (reads only, also in a dry run)."""
        from include.compliance.remediation import runner

        context = get_current_context()
        request = runner.Request(**resolved["request"])
        entries = runner.plan(runner.from_dicts(resolved["entries"]), request.options,
                              audit=runner.audit_context(context, request))
        for line in runner.plan_lines(entries):
            print(line)
        subject, body = runner.approval_text(entries, reason=request.reason, run_id=context["run_id"])
        context["ti"].xcom_push(key="approval_subject", value=subject)
        context["ti"].xcom_push(key="approval_body", value=body)
        return {"request": resolved["request"], "entries": runner.to_dicts(entries)}

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run or nothing to change: report the plan. Otherwise: ask for approval."""
        from include.compliance.remediation import runner

        entries = runner.from_dicts(planned["entries"])
        path = "report_plan" if planned["request"]["dry_run"] or not runner.changes(entries) else "approve_changes"
        get_current_context()["ti"].xcom_push(key="path", value=path)  # read by report
        return path

    # The report tasks fail with AirflowFailException (no retry): a result does not change by retrying.
    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan as the run's result; fail when a resource could not be planned."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.compliance.remediation import runner

        context = get_current_context()
        request = runner.Request(**planned["request"])
        entries = runner.from_dicts(planned["entries"])
        # A dry run reports resources that only lack a parameter (e.g. tag_values) without failing.
        failed = runner.plan_errors(entries, include_needs_input=not request.dry_run)
        status = "plan_failed" if failed else "dry_run" if request.dry_run else "compliant"
        result = runner.summarise(entries, request=request, status=status, run_id=context["run_id"])
        path = runner.write_result(result)
        print(f"{status}: {len(runner.changes(entries))} change(s) planned, nothing changed; result: {path}")
        for line in runner.plan_lines(entries):
            print(line)
        if failed:
            raise AirflowFailException(
                f"{len(failed)} resource(s) could not be planned:\n"
                + "\n".join(f"{e.resource_id}: {e.plan_error}" for e in failed)
            )
        return {"status": status, "path": str(path), "totals": result["totals"]}

    approve_changes = RecordedApprovalOperator(  # Airflow's ApprovalOperator + the decision in XCom
        task_id="approve_changes",
        subject="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_changes', key='approval_body') }}",
        defaults="Reject",  # no answer before the timeout: the safe outcome
        response_timeout=APPROVAL_TIMEOUT,
        # Airflow 3.3.2 can fail a HITL task answered within ~1 s of waiting: retry re-asks.
        retries=2,
        retry_delay=timedelta(seconds=5),
        execution_timeout=None,
        doc_md="Approve to apply exactly the planned changes listed in the request; Reject changes nothing.",
    )

    @task(multiple_outputs=False)
    def apply_changes(planned: dict[str, Any]) -> dict[str, Any]:
        """Apply each approved change on its own; failures are recorded, the others still run."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.compliance.remediation import runner

        context = get_current_context()
        try:  # defence in depth: the approval task skips this one on Reject; never apply without Approve
            decision = context["ti"].xcom_pull(task_ids="approve_changes", key="decision")
            approver = runner.approval_of(decision, require_approved=True)
        except runner.RemediationError as exc:
            raise AirflowFailException(str(exc)) from None
        request = runner.Request(**planned["request"])
        entries = runner.apply(runner.from_dicts(planned["entries"]), request.options,
                               audit=runner.audit_context(context, request, approver=approver))
        for entry in entries:
            print(f"{entry.outcome}: {entry.fixer} {entry.resource_id}"
                  + (f": {entry.apply_error}" if entry.apply_error else ""))
        return {"request": planned["request"], "entries": runner.to_dicts(entries), "approver": approver}

    @task(multiple_outputs=False)
    def verify_changes(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every resource: fixed or not fixed."""
        from include.compliance.remediation import runner

        context = get_current_context()
        request = runner.Request(**applied["request"])
        entries = runner.verify(runner.from_dicts(applied["entries"]), request.options,
                                audit=runner.audit_context(context, request, approver=applied.get("approver")))
        return {**applied, "entries": runner.to_dicts(entries)}

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json; fail listing every failed / not fixed resource. A rejection ends green."""
        from include.compliance.remediation import runner

        return runner.final_report(get_current_context(), verified)

    planned = plan_changes(resolve_targets())
    choose_path(planned) >> [report_plan(planned), approve_changes]
    applied = apply_changes(planned)
    approve_changes >> applied  # Reject (or timeout) skips apply_changes and everything after it
    report(verify_changes(applied))


remediate_findings()
