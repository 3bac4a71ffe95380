"""
# Back up object stores across clouds

**Owner:** platform-team · **Trigger:** every 15 minutes (each policy runs on its own schedule from
`config/backup/policies.yaml`), by hand (UI form) or the API · **Changes the clouds:** writes to the backup
stores and prunes them by retention; `dry_run` is empty by default: a scheduled run applies, a run triggered
by hand or the API only plans, unless `dry_run` is set to false.

Copies each policy's source prefix (a bucket / container of one target) into its backup store in another
cloud or region, as restorable points in time: content-addressed blobs stored once, plus one manifest per
run naming every object's bytes (details: `docs/backup.md`). Only new or changed objects travel; every
copy is verified by its checksum at the destination before it counts.

## Steps
1. **select_policies**: refuse an unknown parameter or policy name (listing the known ones), once, with no
   retry; nothing is read or written. Empty `policies`: every policy.
2. **back_up_policy** (one mapped task per policy, in parallel): skipped unless the policy is **due** (its
   schedule fired since its newest point), named in `policies`, or `force` is on. Holding the policy's lease
   (`backup:<policy>` in the change ledger, so two runs of one policy, or a run and a prune, never overlap):
   1. list the source and compare each object with the previous point (size + MD5 / CRC32C, or the S3 ETag);
   2. copy what is new or changed, pinned to the version listed, at most `concurrency` at once, each
      verified by its MD5 at the destination (an existing identical blob is reused, not uploaded);
   3. when every object verified: check the manifest's structure (complete against the listing, checksums
      present and well-formed, no duplicate keys, each blob named by its content) and write it, last;
   4. prune by the policy's retention (GFS): expired points, then only blobs no kept point references;
      every deletion is audited. The reviewed policies file is the approval for pruning;
   5. write `data/backup/<policy>/runs/<run id>.json` and a line in `data/backup/<policy>/history.jsonl`
      (chart: `history.html`); for a written point the line waits for its validation (step 3).
   A dry run lists what would be copied and pruned and writes nothing to any cloud (it fails, as a real run
   does, when it cannot read what it plans from).
3. **validate_points**: great-expectations validates each manifest this run wrote, as stored (complete against
   the run's source listing, checksums present and well-formed, no duplicate keys, fresh within the RPO), in
   its own task so that the copying processes stay lean; the verdict goes into the policy's run report and
   history. A manifest failing a structural check is moved to `quarantine/` (never restored) and the task
   fails without retry; a stale point is reported, not failed.
4. **check_results**: fails the run listing every policy that failed and every RPO breach (the newest
   restorable point older than the policy's `rpo`; in a dry run breaches are listed, not enforced).

## If it fails
- `select_policies`: fix the names / parameters it lists and trigger again.
- `back_up_policy`: the log and the run report list each object that did not copy and why (`unreachable`,
  `access_denied`, `changed` twice while being read, `verification`). No point was written, so nothing
  half-copied counts; the blobs that did verify stay, and the next run (the task's retry, or the next
  schedule) copies only what is still missing. `another run is applying changes for key 'backup:<policy>'`:
  an earlier run of that policy is still going; it retries.
- `validate_points`: the log names each failed check with examples. A quarantined point is not restorable;
  the next run of the policy writes a new one (the verified blobs are reused). A validation that could not
  run (store unreachable) leaves the point as written and fails; clear the task to validate again.
- `check_results` with an RPO breach and no failure: the schedule is sparser than the RPO, or backups have
  failed for a while: see the policy's `history.html`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.params import POLICY_NAME_PATTERN, auto_dry_run_param, param


@dag(
    dag_id="backup_object_stores",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "backup", "mutating", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(hours=6),
    },
    params={
        "dry_run": auto_dry_run_param(),
        "policies": param(
            None, type=["null", "array"], items={"type": "string", "pattern": POLICY_NAME_PATTERN},
            title="Policies",
            description="Backup policy names from config/backup/policies.yaml. Empty: every policy that is due.",
        ),
        "force": param(
            False, type="boolean", title="Force",
            description="Back up even the policies that are not due yet (named policies always run).",
        ),
    },
)
def backup_object_stores() -> None:
    @task
    def select_policies() -> list[str]:
        """Refuse unknown parameters and policy names (no retry); return the policies to back up."""
        from include.backup.runbook import select_policies as select

        return select(get_current_context())

    @task(map_index_template="{{ policy_name }}", max_active_tis_per_dagrun=4)
    def back_up_policy(name: str) -> dict[str, Any]:
        """Back up one policy (skipped unless due, named or forced); fails when its point is not complete."""
        from include.backup.runbook import back_up_policy as run

        context = get_current_context()
        context["policy_name"] = name  # type: ignore[typeddict-unknown-key]  # names the mapped task in the UI
        return run(context, name)

    @task(trigger_rule="all_done")
    def validate_points(selected: list[str] | None) -> dict[str, Any]:
        """Validate with great-expectations each point this run wrote; fail when one does not hold."""
        from include.backup.runbook import validate_points as validate

        return validate(get_current_context(), selected)

    @task(trigger_rule="all_done")
    def check_results(selected: list[str] | None) -> dict[str, Any]:
        """Fail listing every policy that failed and every RPO breach."""
        from include.backup.runbook import check_results as check

        return check(get_current_context(), selected)

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignore (until we use its mypy plugin).
    selected = select_policies()
    backed_up = back_up_policy.expand(name=selected)
    validated = validate_points(selected)  # type: ignore[arg-type]
    backed_up >> validated >> check_results(selected)  # type: ignore[arg-type]


backup_object_stores()
