"""
# Cost hygiene

**Owner:** finops-team · **Trigger:** daily at 07:00 UTC (a report), by hand (UI form) or the API ·
**Changes the clouds** only when `cleanup` names categories, `dry_run` is false (it is **on** by default,
also on the schedule) and a human approves the exact list of cleanups.

Reads the latest published inventory (`inventory_estate`) and finds what costs money for nothing:
**unattached volumes**, **instances stopped** for more than `stopped_days`, **snapshots past retention**
(their `retention-days` tag, else `snapshot_retention_days`), **buckets without lifecycle rules**, and
**resources without cost-allocation tags** (`cost_tags`). Each is priced per month from the tables in
`config/pricing/` (list prices, with their source and the date they were recorded), and totalled per
category, target and owner.

## Steps
1. **find_waste**: check the parameters (an unknown one, a bad category, no inventory yet, or a price table
   without source / date fails here, unretried), find and price the waste, write
   `data/cost/<run id>/report.json`, `report.md` and `findings.csv`, and resolve the requested `cleanup`
   (categories, optionally narrowed to `resources`) into changes.
2. **notify_waste**: a summary notification (task log, notifications file; Slack / e-mail when configured).
3. **plan_cleanup**: re-read each resource to clean and plan the exact change (reads only, also in a dry
   run): snapshot + delete a volume, delete a snapshot, terminate an instance, add the hygiene lifecycle rule
   (abort incomplete uploads, expire old versions; current objects are kept), add missing tags
   (`tag_values`; never overwriting). A resource an environment spec manages is refused (its spec owns it);
   one that changed since the inventory (attached again, running again) is refused too.
4. **choose_path**: a dry run or nothing to clean -> **report_plan**; otherwise -> **approve_cleanup**.
5. **approve_cleanup** (Browse -> Required Actions, or the HITL API): *Approve* applies exactly the listed
   cleanups; *Reject*, or no answer within 12 hours, changes nothing.
6. **apply_cleanup**: under rate control (one at a time by default, stop at the first error), each change
   recorded in the ledger under `idempotency_key` and in the audit trail.
7. **verify_cleanup** then **report**: `data/cost/<run id>/result.json`; fails when anything failed.

## If it fails
- `find_waste`: the message names the bad parameter / category / resource; with no inventory, run
  `inventory_estate` first.
- `report_plan` / `report`: each resource names the phase and the cloud's own error; a refusal says why
  (managed by an environment, attached again, termination protection).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, idempotency_key_param, param, rate_params, reason_param

APPROVAL_TIMEOUT = timedelta(hours=12)
CATEGORIES = ["unattached_volume", "stopped_instance", "old_snapshot", "bucket_without_lifecycle",
              "missing_cost_tags"]


@dag(
    dag_id="cost_hygiene",
    schedule="0 7 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "cost", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={
        "owner": "finops-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "dry_run": dry_run_param(),
        "stopped_days": param(30, type="integer", minimum=0, maximum=3650, title="Stopped for more than (days)"),
        "snapshot_retention_days": param(
            90, type="integer", minimum=0, maximum=36500, title="Snapshot retention (days)",
            description="Snapshots older than this are past retention (a snapshot's retention-days tag wins).",
        ),
        "cost_tags": param(
            None, type=["null", "array"], items={"type": "string", "minLength": 1}, title="Cost-allocation tags",
            description="Tags every resource must carry. Empty: owner, cost-center.",
        ),
        "cleanup": param(
            None, type=["null", "array"], items={"type": "string", "enum": CATEGORIES}, title="Clean up",
            description="Categories to clean up (after approval). Empty: report only.",
        ),
        "resources": param(
            None, type=["null", "array"], items={"type": "string", "minLength": 1}, title="Only these resources",
            description="Resource ids or names from the report, to narrow the cleanup.",
        ),
        "tag_values": param(
            None, type=["null", "object"], additionalProperties={"type": "string", "minLength": 1, "maxLength": 256},
            title="Tag values", description='For missing_cost_tags, e.g. {"owner": "team-a", "cost-center": "cc-1"}.',
        ),
        "snapshot_before_delete": param(True, type="boolean", title="Snapshot a volume before deleting it"),
        "reason": reason_param(),
        **rate_params(default_concurrency="1", default_errors="0"),
        "idempotency_key": idempotency_key_param(),
    },
)
def cost_hygiene() -> None:
    @task(multiple_outputs=False)
    def find_waste() -> dict[str, Any]:
        """Find and price the waste in the latest inventory; write the report; resolve the cleanup."""
        from include.cost.runbook import find_waste_task

        return find_waste_task(get_current_context())

    @task(multiple_outputs=False)
    def notify_waste(found: dict[str, Any]) -> dict[str, str]:
        """Notify a summary of the waste (when there is any)."""
        from include.cost.runbook import notify_task

        return notify_task(found, get_current_context())

    @task(multiple_outputs=False)
    def plan_cleanup(found: dict[str, Any]) -> dict[str, Any]:
        """Re-read each resource to clean and plan the exact change (reads only, also in a dry run)."""
        from include.cost.runbook import COST

        return COST.plan(get_current_context(), found["change_set"])

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run or nothing to clean: report the plan. Otherwise: ask for approval."""
        from include.changes.runbook import ChangeSet

        return "approve_cleanup" if ChangeSet.from_dict(planned).needs_approval else "report_plan"

    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the cleanup plan as the result; fail when a resource could not be planned."""
        from include.cost.runbook import COST

        return COST.report_plan(get_current_context(), planned)

    approve_cleanup = approval_gate(
        "approve_cleanup",
        subject="{{ ti.xcom_pull(task_ids='plan_cleanup', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_cleanup', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to apply exactly the listed cleanups; Reject changes nothing.",
    )

    @task(multiple_outputs=False)
    def apply_cleanup(planned: dict[str, Any]) -> dict[str, Any]:
        """Apply the approved cleanups under rate control, each recorded in the ledger and the audit trail."""
        from include.cost.runbook import COST

        context = get_current_context()
        return COST.apply(context, planned, context["ti"].xcom_pull(task_ids="approve_cleanup", key="decision"))

    @task(multiple_outputs=False)
    def verify_cleanup(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every cleaned resource."""
        from include.cost.runbook import COST

        return COST.verify(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json; fail listing every failed cleanup. A rejection ends green."""
        from include.cost.runbook import COST

        ti = get_current_context()["ti"]
        return COST.report(get_current_context(), planned=planned, verified=verified,
                           applied=ti.xcom_pull(task_ids="apply_cleanup"),
                           decision=ti.xcom_pull(task_ids="approve_cleanup", key="decision"))

    found = find_waste()
    notify_waste(found)  # type: ignore[arg-type]
    planned = plan_cleanup(found)  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), approve_cleanup]  # type: ignore[arg-type]
    applied = apply_cleanup(planned)  # type: ignore[arg-type]
    approve_cleanup >> applied
    report(planned, verify_cleanup(applied))  # type: ignore[arg-type]


cost_hygiene()
