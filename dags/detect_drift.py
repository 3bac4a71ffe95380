"""
# Detect drift between the environment specs and the clouds

**Owner:** platform-team · **Trigger:** daily at 05:00 UTC, by hand (UI form) or the API ·
**Changes nothing** (read-only); it may start `provision_environment` **dry runs**, which change nothing either.

Compares every spec in `config/environments/` with live state, exactly as a provisioning plan would, and
reports per resource and field what drifted: **changed** by hand (each field: live value vs the spec's),
**missing** (deleted outside the runbook, with the run that last created it; or never created), a
**conflict** (an unmanaged look-alike, or a resource of another environment, has the spec's name).

## Steps
1. **compare_with_specs**: check the requested `environments` (empty: every spec); an unknown environment or
   parameter fails here, unretried. Writes `data/drift/<run id>/report.json` and `report.md`.
2. **notify_drift**: when anything drifted, a warning notification (task log, notifications file; Slack /
   e-mail when their connections exist) with the report's path and the drifted resources.
3. **start_dry_runs** (one per drifted environment, unless `start_dry_runs` is false): triggers a
   `provision_environment` dry run through Airflow (`TriggerDagRunOperator`) whose plan shows the changes
   that would bring the environment back to its spec. Run id `drift__<environment>__<this run id>`, so a
   retry never starts a second one.
4. **check_complete**: fails the run, listing each spec that could not be loaded and each resource that
   could not be read. Drift itself is a finding, not a failure.

## If it fails
Read `check_complete`'s log: a spec error names the file, the resource and the field; a read error carries
the cloud's own message (`access_denied`: the connection lacks a read permission that the kind declares in
`include/provisioning/<cloud>/<kind>.py`). Detection only reads: re-running is always safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, get_current_context, task

from include.params import param


@dag(
    dag_id="detect_drift",
    schedule="0 5 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "provisioning", "drift", "read-only", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(hours=1),
    },
    params={
        "environments": param(
            None, type=["null", "array"], items={"type": "string", "pattern": r"^[a-z][a-z0-9-]{0,39}$"},
            title="Environments", description="Specs to check (config/environments/<name>.yaml). Empty: every spec.",
        ),
        "start_dry_runs": param(
            True, type="boolean", title="Start dry runs",
            description="Start a provision_environment dry run for each drifted environment.",
        ),
    },
)
def detect_drift() -> None:
    @task(multiple_outputs=False)
    def compare_with_specs() -> dict[str, Any]:
        """Plan every spec against live state (reads only) and write the drift report."""
        from include.provisioning.drift import check_task

        return check_task(get_current_context())

    @task(multiple_outputs=False)
    def notify_drift(summary: dict[str, Any]) -> dict[str, str]:
        """Notify when an environment drifted."""
        from include.provisioning.drift import notify_task

        return notify_task(summary, get_current_context())

    @task
    def dry_run_requests(summary: dict[str, Any]) -> list[dict[str, Any]]:
        """One provision_environment dry-run request per drifted environment."""
        from include.provisioning.drift import dry_run_requests as requests

        return requests(summary, get_current_context())

    @task(trigger_rule="all_done")
    def check_complete(summary: dict[str, Any]) -> None:
        """Fail when a spec or a resource could not be checked."""
        from include.provisioning.drift import check_errors_task

        check_errors_task(summary)

    summary = compare_with_specs()
    start_dry_runs = TriggerDagRunOperator.partial(
        task_id="start_dry_runs", trigger_dag_id="provision_environment", wait_for_completion=False,
        skip_when_already_exists=True, logical_date=None,
    ).expand_kwargs(dry_run_requests(summary))  # type: ignore[arg-type]
    notify_drift(summary) >> start_dry_runs >> check_complete(summary)  # type: ignore[arg-type]


detect_drift()
