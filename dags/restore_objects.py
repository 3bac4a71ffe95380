"""
# Restore objects from a backup point in time

**Owner:** platform-team · **Trigger:** by hand (UI form) or the API, with a backup policy and optionally a
point in time, a key prefix and a destination · **Changes the clouds:** writes objects at the destination;
overwrites existing objects only after a human approves; `dry_run` is **on** by default.

Restores what `backup_object_stores` stored (`config/backup/policies.yaml`; layout in
`include/backup/manifest.py`) with the change engine (`include/changes/`): one "restore object" change per
object of the point, planned, applied under rate control and the change ledger, verified and audited per
object. See docs/restore.md.

## Steps
1. **resolve_point**: validate the parameters (an unknown parameter, policy, point, target, a prefix that
   selects nothing, a destination inside the source or the backup store fail here, not retried, listing the
   allowed values). Select the point: `point` empty = the newest; a point id or a backup run id = that point;
   an ISO time (`2026-11-30T06:00:00Z`) = the newest point at or before it. Read its manifest and list the
   destination (objects there that the point does not hold are **left alone**, never deleted).
2. **plan_restore**: read each destination object (size and MD5) and compare with the manifest: **written**
   (absent), **overwritten** (other content: destructive), **left alone** (identical). Reads only.
3. **choose_path**: dry run, or nothing to restore -> **report_plan** writes the plan and stops. A plan that
   overwrites something -> **approve_overwrites**. A plan that only writes absent objects (a scratch
   location, objects deleted since the point) -> straight to **apply_restore**.
4. **approve_overwrites** (Human in the loop: Browse -> Required Actions, or the HITL API): lists every
   object and what happens to it. *Approve* applies exactly that plan; *Reject*, or no answer within 12
   hours, writes nothing.
5. **apply_restore**: stream each object's blob from the backup store (a pinned read, hashed on the way: a
   blob whose bytes do not match the manifest is never written) to its key; the destination's recorded MD5
   must equal the manifest's. `max_concurrency` / `max_errors` as in AWS SSM; each object is recorded in the
   change ledger under `idempotency_key`: a rerun never writes again what that key restored. An object that
   changed since the plan is refused, not overwritten.
6. **verify_restore**: re-read every object's size and MD5.
7. **report**: write `data/restore/<run id>/result.json` (the point restored, each object, every failure);
   the run **fails** when any object failed, was not attempted or is not as the point recorded.

## If it fails
- `resolve_point`: the message lists the known policies / the newest points / the targets; fix and trigger
  again.
- `report` / `report_plan`: result.json names each object, the phase and the cloud's error. `corrupted in
  the backup store` means the blob no longer matches its manifest: restore that object from an older point
  (`point`) and run `restore_drill`. Re-running with the same `idempotency_key` only does what is still
  not done.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.approval import approval_gate
from include.params import dry_run_param, idempotency_key_param, param, rate_params, reason_param

#: How long a human has to answer; no answer = the safe outcome (Reject).
APPROVAL_TIMEOUT = timedelta(hours=12)
# The same patterns as include/backup/policies.py (POLICY_NAME_PATTERN) and include/backup/restore.py
# (DESTINATION_PATTERN); repeated here because those modules are imported inside the tasks only.
_POLICY = r"^[a-z0-9][a-z0-9-]{0,62}$"
_DESTINATION = r"^(original|[a-z0-9][a-z0-9-]{0,62}:[A-Za-z0-9][A-Za-z0-9._-]{2,62}(/.*)?)$"


@dag(
    dag_id="restore_objects",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "backup", "restore", "mutating", "approval", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=20),
        "execution_timeout": timedelta(hours=6),
    },
    params={
        # Required, but nullable: the first task refuses a missing policy listing the known ones (a Param
        # without a default cannot be read back from dag.params, which the unknown-key check does).
        "policy": param(
            None, type=["null", "string"], pattern=_POLICY, title="Backup policy",
            description="Required: a policy name from config/backup/policies.yaml (e.g. aws-customer-exports-to-gcp).",
        ),
        "point": param(
            None, type=["null", "string"], maxLength=200, title="Point in time",
            description="Empty: the newest point. A point id (20261130T061500Z-<run>), a backup run id, or an ISO "
                        "time (2026-11-30T06:00:00Z): the newest point at or before it.",
        ),
        "prefix": param(
            None, type=["null", "string"], maxLength=1024, title="Key prefix",
            description="Only objects whose source key starts with this (e.g. exports/2026/). Empty: every object.",
        ),
        "destination": param(
            None, type=["null", "string"], pattern=_DESTINATION, title="Destination",
            description="Empty or 'original': back to the policy's source location, each object to its own key. "
                        "Or a scratch location '<target>:<container>/<prefix>': each source key under that prefix.",
        ),
        "dry_run": dry_run_param(),
        "reason": reason_param(),
        **rate_params(default_concurrency="8"),
        "idempotency_key": idempotency_key_param(),
    },
)
def restore_objects() -> None:
    # Each task body is one call into include/backup/restore.py (the restore's part) and the change engine.
    @task(multiple_outputs=False)
    def resolve_point() -> dict[str, Any]:
        """Validate the request, select the point, list the objects to restore; nothing is written."""
        from include.backup.restore import resolve_request

        return resolve_request(get_current_context())

    @task(multiple_outputs=False)
    def plan_restore(resolved: dict[str, Any]) -> dict[str, Any]:
        """Read every destination object: written / overwritten / left alone (reads only, also in a dry run)."""
        from include.backup.restore import plan_restore as plan

        return plan(get_current_context(), resolved)

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str | list[str]:
        """Dry run or nothing to do: report the plan. Overwrites: ask first. Only new objects: restore."""
        from include.changes.runbook import ChangeSet

        change_set = ChangeSet.from_dict(planned)
        if not change_set.applies:
            return "report_plan"
        return ["approve_overwrites", "apply_restore"] if change_set.needs_approval else "apply_restore"

    # The report tasks fail with AirflowFailException (no retry): a result does not change by retrying.
    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan as the run's result; fail when an object could not be planned."""
        from include.backup.restore import RESTORE

        return RESTORE.report_plan(get_current_context(), planned)

    approve_overwrites = approval_gate(
        "approve_overwrites",
        subject="{{ ti.xcom_pull(task_ids='plan_restore', key='approval_subject') }}",
        body="{{ ti.xcom_pull(task_ids='plan_restore', key='approval_body') }}",
        response_timeout=APPROVAL_TIMEOUT,
        doc_md="Approve to restore exactly the listed objects (overwrites included); Reject writes nothing.",
    )

    # none_failed_min_one_success: runs after an Approve, and when choose_path skipped the approval because
    # nothing is overwritten. A Reject skips this task directly (the approval operator does).
    @task(multiple_outputs=False, trigger_rule="none_failed_min_one_success")
    def apply_restore(planned: dict[str, Any]) -> dict[str, Any]:
        """Stream each object from the backup store to its key, under rate control and the ledger."""
        from include.backup.restore import RESTORE

        context = get_current_context()
        decision = context["ti"].xcom_pull(task_ids="approve_overwrites", key="decision")
        return RESTORE.apply(context, planned, decision)

    @task(multiple_outputs=False)
    def verify_restore(applied: dict[str, Any]) -> dict[str, Any]:
        """Re-read every object: as the point recorded, or not."""
        from include.backup.restore import RESTORE

        return RESTORE.verify(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write result.json with the point restored; fail listing every object that is not restored."""
        from include.backup.restore import RESTORE

        ti = get_current_context()["ti"]
        return RESTORE.report(
            get_current_context(), planned=planned, verified=verified, applied=ti.xcom_pull(task_ids="apply_restore"),
            decision=ti.xcom_pull(task_ids="approve_overwrites", key="decision"),
        )

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (until we use its mypy plugin).
    planned = plan_restore(resolve_point())  # type: ignore[arg-type]
    applied = apply_restore(planned)  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), approve_overwrites, applied]  # type: ignore[arg-type]
    approve_overwrites >> applied  # Reject (or timeout) skips apply_restore and everything after it
    report(planned, verify_restore(applied))  # type: ignore[arg-type]


restore_objects()
