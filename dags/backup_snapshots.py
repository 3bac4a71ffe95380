"""
# Snapshot tagged resources (EBS volumes, RDS instances, DynamoDB tables)

**Owner:** platform-team · **Trigger:** every hour on the schedule (each snapshot policy snapshots on its
own cron `schedule` from `config/backup/policies.yaml`), by hand (UI form) or the API · **Changes the
clouds:** on the schedule, unattended: the reviewed snapshot policy is the approval. A manual or API run
is a **dry run** unless `dry_run` is false.

For each snapshot policy: the resources of its target that carry its tag (e.g. `backup: daily`) are
snapshotted when the policy's schedule has fired since our newest snapshot of them, each snapshot is
marked as this platform's (`runbooks:managed-by=backup_snapshots`, `runbooks:policy`, `runbooks:source`,
`runbooks:created-at`), copied to the policy's `copy_to_region` (EBS, RDS; DynamoDB cannot copy its
on-demand backups across regions, which the report says), and the policy's GFS retention deletes our
expired snapshots. A snapshot without our marks (made by a person, AWS Backup, another tool or another
policy) is never deleted. Details: `docs/backup-snapshots.md`.

## Steps
1. **select_policies**: validate the request: `policies` (empty: every snapshot policy), `force`,
   `dry_run`. An unknown parameter or policy name fails here, once (no retry), naming the known ones;
   nothing is read or changed. The policies are fixed for the run as read now, with the run's clock.
2. **find_tagged_resources**: list, per policy, the EBS volumes, RDS instances and DynamoDB tables of its
   target that carry its tag. An untagged resource is never selected.
3. **plan_snapshots**: read our snapshots and plan, per resource, a snapshot when one is due (`force`:
   always, once per run) and its copy to the second region, then, per resource and region, delete what
   the GFS retention no longer keeps (after the new snapshot / copy of that series exists). Reads only,
   also in a dry run; the plan is logged per change with its exact API call.
4. **choose_path**: dry run, or nothing to change -> **report_plan** writes the plan per policy and stops
   (it fails if anything could not be planned). Otherwise -> **apply_snapshots**.
5. **apply_snapshots**: create, copy (after a bounded wait for the snapshot to be available), delete,
   four at a time, every change attempted, each recorded in the change ledger under the run's key:
   clearing the task resumes and never snapshots twice. Audited per change.
6. **verify_snapshots**: every new snapshot and copy is available in its region, every expired one is
   gone (bounded waits).
7. **report**: write `data/backup/snapshots/<policy>/runs/<run id>.json` per policy; the run **fails**
   listing every change that failed, was not attempted or is not as wanted afterwards.

## If it fails
- `select_policies`: the message lists the bad parameter or policy name and the known ones.
- `report_plan` / `report`: each failed item names its phase (plan / apply / verify) and the cloud's
  error; `access_denied` means the connection lacks a permission the step declares
  (`include/clouds/aws/snapshots.py`, `PERMISSIONS`). A snapshot still `creating` after the wait bound
  fails verification; the next run finds it and copies it once it is available.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.params import POLICY_NAME_PATTERN, auto_dry_run_param, param


@dag(
    dag_id="backup_snapshots",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # two runs at once would both find the same snapshot due
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "backup", "mutating", "aws"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "dry_run": auto_dry_run_param(),
        "policies": param(
            None, type=["null", "array"], items={"type": "string", "pattern": POLICY_NAME_PATTERN},
            title="Snapshot policies",
            description="Names from snapshot_policies in config/backup/policies.yaml. Empty: every snapshot policy.",
        ),
        "force": param(
            None, type=["null", "boolean"], title="Snapshot now",
            description="true: snapshot every tagged resource now, whatever its schedule says (once per run). "
                        "Empty or false: only what the policy's schedule makes due.",
        ),
    },
)
def backup_snapshots() -> None:
    # Each task body is one call into include/backup/snapshots.py, which runs the change engine.
    @task(multiple_outputs=False)
    def select_policies() -> dict[str, Any]:
        """Validate the request and fix the run's policies and clock; nothing is called yet."""
        from include.backup.snapshots import select_task

        return select_task(get_current_context())

    @task(multiple_outputs=False)
    def find_tagged_resources(selected: dict[str, Any]) -> dict[str, Any]:
        """Per policy, the resources of its target carrying its tag."""
        from include.backup.snapshots import find_task

        return find_task(selected)

    @task(multiple_outputs=False)
    def plan_snapshots(found: dict[str, Any]) -> dict[str, Any]:
        """Plan due snapshots, their copies and expired snapshots of ours (reads only)."""
        from include.backup.snapshots import plan_task

        return plan_task(get_current_context(), found)

    @task.branch
    def choose_path(planned: dict[str, Any]) -> str:
        """Dry run or nothing to change: report the plan. Otherwise: apply."""
        from include.backup.snapshots import applies
        from include.changes.runbook import ChangeSet

        return "apply_snapshots" if applies(ChangeSet.from_dict(planned)) else "report_plan"

    @task(multiple_outputs=False)
    def report_plan(planned: dict[str, Any]) -> dict[str, Any]:
        """Write the plan per policy; fail when something could not be planned."""
        from include.backup.snapshots import report_plan_task

        return report_plan_task(get_current_context(), planned)

    @task(multiple_outputs=False, execution_timeout=timedelta(hours=3))
    def apply_snapshots(planned: dict[str, Any]) -> dict[str, Any]:
        """Create, copy and delete under rate control, each change recorded in the ledger."""
        from include.backup.snapshots import apply_task

        return apply_task(get_current_context(), planned)

    @task(multiple_outputs=False, execution_timeout=timedelta(hours=3))
    def verify_snapshots(applied: dict[str, Any]) -> dict[str, Any]:
        """Every new snapshot / copy available, every expired one gone."""
        from include.backup.snapshots import verify_task

        return verify_task(get_current_context(), applied)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def report(planned: dict[str, Any] | None, verified: dict[str, Any] | None) -> dict[str, Any]:
        """Write the result per policy; fail listing every failed, not attempted or unverified change."""
        from include.backup.snapshots import report_task

        context = get_current_context()
        return report_task(context, planned=planned, verified=verified,
                           applied=context["ti"].xcom_pull(task_ids="apply_snapshots"))

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (as in remediate_findings).
    planned = plan_snapshots(find_tagged_resources(select_policies()))  # type: ignore[arg-type]
    applied = apply_snapshots(planned)  # type: ignore[arg-type]
    choose_path(planned) >> [report_plan(planned), applied]  # type: ignore[arg-type]
    report(planned, verify_snapshots(applied))  # type: ignore[arg-type]


backup_snapshots()
