"""
# Restore drill: prove that every backup restores

**Owner:** platform-team · **Trigger:** weekly (Mondays 04:00 UTC), by hand (UI form) or the API ·
**Changes the clouds:** only its own scratch prefix, removed at the end whatever happened; a run by hand is
a dry run unless `dry_run` is false.

A backup that has never been restored is a hope. For each backup policy (`config/backup/policies.yaml`;
`policies` empty = all) this restores the newest point into a scratch location, checks every checksum
against the manifest, measures RPO and restore time, removes the scratch location, and keeps the history:
`data/backup/drills/history.jsonl` and the page `data/backup/drills/report.html` (charts of RPO and restore
time per policy). See docs/restore.md.

## Steps
1. **resolve_drills**: validate the parameters (unknown parameter or policy: fails here, not retried, listing
   the known ones); one drill per policy, each with a unique scratch prefix `restore-drills/<run>/<policy>/`
   in the container of the policy's backup store (or the `scratch` location given for the policy).
2. Per policy, in the task group **drill** (one mapped instance per policy):
   1. **create_scratch** (setup): the prefix must be empty; a marker object proves write access.
   2. **restore_newest_point**: restore the newest point with the restore engine (`restore_objects`' steps,
      no approval: every object is new there); each blob is hashed on the way, so a corrupted one is never
      written. Measures the RPO (age of the newest point), the restore time and bytes/s.
   3. **verify_checksums**: every object's size and recorded MD5 against the manifest, and the bytes of
      `hash_sample_percent` of them (default 100: all) read back and hashed. **Fails on any mismatch,
      naming each object.**
   4. **remove_scratch** (teardown): delete the scratch prefix; runs also after a failure.
3. **record_drills**: one history line per policy, the report page; **fails** listing every failed drill,
   every RPO beyond its objective and any scratch location left behind.

## If it fails
- `verify_checksums` names each object: `corrupted in the backup store` means the blob's bytes no longer
  match the manifest (restore that object from an older point with `restore_objects`, and find out what
  wrote to the backup store); `missing` means the blob is gone (retention, or someone deleted it).
- `RPO ... beyond the objective`: the newest point is too old: look at `backup_object_stores`' runs.
- `scratch ... not removed`: delete the prefix named in the message by hand (`remove_scratch`'s log).
- `no restorable point`: the policy has never been backed up.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, setup, task, task_group, teardown

from include.params import auto_dry_run_param, param

# The same patterns as include/backup/policies.py (POLICY_NAME_PATTERN) and include/backup/drill.py
# (SCRATCH_PATTERN); repeated here because those modules are imported inside the tasks only.
_POLICY = r"^[a-z0-9][a-z0-9-]{0,62}$"
_SCRATCH = r"^[a-z0-9][a-z0-9-]{0,62}:[A-Za-z0-9][A-Za-z0-9._-]{2,62}(/.*)?$"


@dag(
    dag_id="restore_drill",
    schedule="0 4 * * 1",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "backup", "restore", "drill", "mutating", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(hours=6),
    },
    params={
        "policies": param(
            None, type=["null", "array"], items={"type": "string", "pattern": _POLICY}, title="Policies",
            description="Backup policies to drill (config/backup/policies.yaml). Empty: every policy.",
        ),
        "dry_run": auto_dry_run_param(),
        "hash_sample_percent": param(
            100, type="integer", minimum=0, maximum=100, title="Objects whose bytes are hashed (%)",
            description="Every restored object's size and recorded MD5 are checked; this share of them is also "
                        "read back and hashed (100 = all; the sample is the same keys drill after drill).",
        ),
        "scratch": param(
            None, type=["null", "object"], additionalProperties={"type": "string", "pattern": _SCRATCH},
            title="Scratch locations",
            description='Per policy, where to restore instead of the backup store\'s container, e.g. '
                        '{"aws-customer-exports-to-gcp": "gcp-prod:rb-gcp-legacy-scratch/"}. Required for a '
                        "policy with Object Lock.",
        ),
    },
)
def restore_drill() -> None:
    @task(multiple_outputs=False)
    def resolve_drills() -> list[dict[str, Any]]:
        """Validate the request; one drill (policy, scratch prefix) per policy."""
        from include.backup.drill import resolve_task

        return resolve_task(get_current_context())

    @task_group(group_id="drill")
    def drill(spec: dict[str, Any]) -> Any:
        @setup
        def create_scratch(spec: dict[str, Any]) -> dict[str, Any]:
            """Check the drill's own prefix is empty and mark it (a dry run writes nothing)."""
            from include.backup.drill import setup_task

            return setup_task(get_current_context(), spec)

        @task(multiple_outputs=False)
        def restore_newest_point(spec: dict[str, Any], scratch: dict[str, Any]) -> dict[str, Any]:
            """Restore the newest point into the scratch prefix; measure RPO, restore time and bytes/s."""
            from include.backup.drill import restore_task

            return restore_task(get_current_context(), spec, scratch)

        @task(multiple_outputs=False)
        def verify_checksums(spec: dict[str, Any], scratch: dict[str, Any], restored: dict[str, Any]) -> dict[str, Any]:
            """Every checksum against the manifest; fail naming each object that does not match."""
            from include.backup.drill import verify_task

            return verify_task(get_current_context(), spec, scratch, restored)

        @teardown
        def remove_scratch(scratch: dict[str, Any]) -> dict[str, Any]:
            """Delete the scratch prefix, whatever happened before."""
            from include.backup.drill import teardown_task

            return teardown_task(get_current_context(), scratch)

        scratch = create_scratch(spec)
        verified = verify_checksums(spec, scratch, restore_newest_point(spec, scratch))  # type: ignore[arg-type]
        removed = remove_scratch(scratch)
        verified >> removed
        return removed

    @task(trigger_rule="all_done", multiple_outputs=False)
    def record_drills() -> dict[str, Any]:
        """One history line per drill and the report page; fail listing every failed drill."""
        from include.backup.drill import record_task

        ti = get_current_context()["ti"]
        specs = ti.xcom_pull(task_ids="resolve_drills") or []
        indexes = list(range(len(specs)))

        def pulled(task_id: str, key: str = "return_value") -> Any:
            return ti.xcom_pull(task_ids=f"drill.{task_id}", key=key, map_indexes=indexes) if indexes else []

        return record_task(get_current_context(), specs, scratches=pulled("create_scratch"),
                           results=pulled("verify_checksums", "drill"), restored=pulled("restore_newest_point"),
                           teardowns=pulled("remove_scratch"))

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (until we use its mypy plugin).
    drill.expand(spec=resolve_drills()) >> record_drills()


restore_drill()
