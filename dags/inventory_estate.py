"""
# Inventory the estate

**Owner:** platform-team · **Trigger:** hourly, by hand (UI form), or the API · **Changes nothing** (read-only)

Lists every resource of every configured target (AWS accounts, Google Cloud projects, Azure
subscriptions from `config/targets.yaml`) through the Airflow providers' hooks, normalises them into
one record shape (`docs/inventory-records.md`) and publishes a dated, versioned dataset that the
compliance, backup and drift runbooks read.

## Steps
1. **select_targets**: resolve the `targets` parameter (empty = all) against `config/targets.yaml` and
   check `services` against the listers of the selected targets' clouds. An unknown parameter, target
   or service fails here, naming the allowed ones, before any cloud is called, and is not retried.
2. **collect_target** (one mapped task per target, in parallel): probe the connection, then run every
   lister of that cloud in every region of the target, at most `concurrency` calls at once. A service
   that is unreachable or denies access is recorded and the other services still complete.
3. **publish_inventory**: merge the per-target files into
   `data/inventory/date=YYYY-MM-DD/run=<run id>/inventory.jsonl` + `summary.json`, move
   `data/inventory/latest.json`, and emit the `estate_inventory` asset (downstream runbooks start).
   Runs even when a target failed, so the targets that worked are never lost (but never after a refused
   request: then nothing is published and the latest inventory stays as it was).
4. **check_complete**: fails the run, listing each target / service / region that could not be
   inventoried and why (unreachable, access denied, error). A green run means a complete inventory.

## If it fails
Open the `check_complete` log: each line names the target, the service and the cloud's own error.
`unreachable` → check the connection's endpoint / network; `access_denied` → the connection's role
lacks a read permission (each lister declares its permissions in `include/clouds/<cloud>/inventory/<service>.py`).
Fix and trigger again: collection is read-only, so re-running is always safe.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from include.assets import ESTATE_INVENTORY
from include.params import check_conf, param, targets_param


@dag(
    dag_id="inventory_estate",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "inventory", "read-only", "aws", "gcp", "azure"],
    default_args={
        "owner": "platform-team",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "targets": targets_param(),
        "services": param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^[a-z0-9_]+$"},
            title="Services",
            description="Only these services (e.g. s3, ec2). Empty: each target's configured services.",
        ),
    },
)
def inventory_estate() -> None:
    @task
    def select_targets(params: dict[str, Any] | None = None) -> list[str]:
        """Resolve the requested targets and services; an unknown one fails before any cloud call, unretried."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.inventory.registry import validate_services
        from include.targets import TargetsError, load_targets

        check_conf(get_current_context())
        params = params or {}
        try:
            selected = load_targets().select(list(params.get("targets") or []))
            validate_services(list(params.get("services") or []), {t.cloud for t in selected})
        except (TargetsError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from None  # a bad request does not improve by retrying
        return [target.name for target in selected]

    @task(max_active_tis_per_dagrun=4)
    def collect_target(target_name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """List one target's resources; per-service failures are recorded, not raised."""
        from include.inventory.collect import collect_target as collect
        from include.inventory.registry import validate_services
        from include.inventory.store import staging_path, write_jsonl
        from include.targets import load_targets

        params = params or {}
        config = load_targets()
        target = config.get(target_name)
        requested = list(params.get("services") or [])
        # None: the target's own services; else exactly the requested ones its cloud has (maybe none: a
        # service of another selected cloud).
        clouds = {t.cloud for t in config.select(list(params.get("targets") or []))}
        services = list(validate_services(requested, clouds)[target.cloud]) if requested else None
        result = collect(target, max_workers=config.concurrency(target), services=services)
        run_id = get_current_context()["run_id"]
        path = staging_path(run_id, target.name)
        write_jsonl(path, result.records)
        summary = result.summary()
        summary["staged"] = str(path)
        print(
            f"{target.name}: {summary['resources']} resources in {summary['seconds']}s, "
            f"{len(result.errors)} errors"
        )
        for error in result.errors:
            print(f"  {error.kind}: {error.service} {error.region}: {error.message}")
        return summary

    @task(trigger_rule="all_done", outlets=[ESTATE_INVENTORY])
    def publish_inventory(selected: list[str] | None, summaries: list[dict[str, Any] | None]) -> dict[str, Any]:
        """Merge the per-target files into one dated version and emit the inventory asset."""

        from airflow.sdk.exceptions import AirflowFailException

        from include.inventory.store import publish, staging_path
        from include.paths import as_data_path

        if selected is None:  # the request was refused: publish nothing, keep the latest inventory as it is
            raise AirflowFailException("select_targets refused the request (see its log): nothing was collected "
                                       "or published; the latest inventory is unchanged")
        context = get_current_context()
        run_id = context["run_id"]
        got = [s for s in (summaries or []) if s]
        missing = sorted(set(selected) - {s["target"] for s in got})
        for name in missing:  # the collecting task itself crashed: say so, don't go silently short
            got.append(
                {
                    "target": name, "cloud": "?", "resources": 0, "by_type": {}, "complete": False,
                    "errors": [{"target": name, "cloud": "?", "service": "*", "region": "*",
                                "kind": "error", "message": "collect_target task failed; see its log"}],
                }
            )
        staged = [as_data_path(s["staged"]) if s.get("staged") else staging_path(run_id, s["target"]) for s in got]
        summary = publish(run_id, staged, got)
        context["outlet_events"][ESTATE_INVENTORY].extra = {
            "run_id": run_id,
            "path": summary["path"],
            "resources": summary["resources"],
            "complete": summary["complete"],
            "failed_targets": sorted({e["target"] for e in summary["errors"]}),
        }
        print(f"published {summary['resources']} resources to {summary['path']}")
        for cloud, types in summary["by_cloud"].items():
            print(f"  {cloud}: " + ", ".join(f"{t}={n}" for t, n in types.items()))
        return {k: summary[k] for k in ("path", "resources", "complete", "errors", "by_cloud")}

    @task
    def check_complete(summary: dict[str, Any]) -> None:
        """Fail with details when any target / service could not be inventoried."""
        from airflow.sdk.exceptions import AirflowFailException

        if summary["complete"]:
            return
        lines = [
            f"{e['target']} {e['service']} {e['region']}: {e['kind']}: {e['message']}" for e in summary["errors"]
        ]
        # AirflowFailException: retrying cannot change a published result; re-trigger after the fix.
        raise AirflowFailException(
            f"inventory incomplete ({len(lines)} problems; the rest was published to {summary['path']}):\n"
            + "\n".join(lines)
        )

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (until we use its mypy plugin).
    selected = select_targets()
    summaries = collect_target.expand(target_name=selected)
    check_complete(publish_inventory(selected, summaries))  # type: ignore[arg-type]


inventory_estate()
