"""
# Compliance scan

**Owner:** security-team · **Trigger:** daily at 06:00 UTC, whenever a fresh inventory is published
(`estate_inventory` asset), by hand (UI form), or the API · **Changes nothing** in the clouds (read-only)

Evaluates every enabled compliance rule (`include/compliance/rules/`: CIS AWS / Google Cloud / Azure
controls, GDPR and HIPAA tags, required tags, data residency) over the latest published inventory,
compares the findings with the previous scan, writes the reports and fails when the policy says so.
No cloud is called: the rules read the inventory that `inventory_estate` collected.

## Steps
1. **load_inventory**: find the latest published inventory (`data/inventory/latest.json`) and which of
   the requested targets it covers completely. No inventory yet fails here: run `inventory_estate` first.
2. **evaluate_rules**: run the rules over the inventory (one finding per rule and resource: pass / fail),
   apply the waivers of `config/compliance/waivers.yaml` (waived, or failing again once expired) and the
   policy of `config/compliance/policy.yaml` (disabled rules, thresholds, required tag keys).
3. **validate_facts**: check the inventory facts against the great-expectations suites in
   `config/expectations/`; the results go into the report.
4. **diff_against_previous**: mark each failing finding new or still open, and the fixed ones resolved.
   A target whose inventory was incomplete keeps its old findings open (never "resolved" unseen).
   Saves the scan under `data/compliance/scans/<scan id>/` and moves `data/compliance/latest.json`.
5. **write_reports**: JSON, CSV, SARIF, OCSF and HTML (totals, trend, findings with remediation) into
   `data/compliance/scans/<scan id>/reports/` and `data/compliance/reports/latest/`.
6. **notify**: announce new critical / high findings (task log and `data/notifications/`; Slack and
   e-mail when the `slack_runbooks` / `smtp_runbooks` connections exist).
7. **enforce_policy**: fail the run when new or still-open findings of a failing severity exist
   (policy `fail_on`, or the `fail_on` parameter), listing each one. Waived findings never fail it.

## If it fails
- `load_inventory`: no inventory published, or a target name is unknown: run `inventory_estate` / fix the name.
- `evaluate_rules`: a rule, the policy or the waivers file is invalid: the error names the rule or entry.
- `enforce_policy`: real findings. Fix them (the `remediate_findings` runbook has fixers for many rules,
  see each finding's `fixer`), or add a waiver with a reason, an owner and an expiry, then re-run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import (
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    dag,
    get_current_context,
    task,
)

from include.assets import ESTATE_INVENTORY
from include.params import check_conf, param, targets_param

_SEVERITIES = ["critical", "high", "medium", "low", "info"]


@dag(
    dag_id="compliance_scan",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[ESTATE_INVENTORY]
    ),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    is_paused_upon_creation=False,
    doc_md=__doc__,
    tags=["runbook", "compliance", "read-only", "aws", "gcp", "azure"],
    default_args={
        "owner": "security-team",
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=30),
    },
    params={
        "targets": targets_param(),
        "fail_on": param(
            None,
            type=["null", "array"],
            items={"type": "string", "enum": _SEVERITIES},
            title="Severities that fail the run",
            description="Overrides the policy's fail_on for this run. Empty / null: the policy decides.",
        ),
        "rules": param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": "^(aws|gcp|azure)_[a-z0-9_]+$"},
            title="Rules",
            description="Only these rule ids. Empty: every enabled rule.",
        ),
    },
)
def compliance_scan() -> None:  # noqa: C901 - mccabe sums its seven @task bodies (none above 5)
    @task
    def load_inventory(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Locate the latest inventory and which requested targets it covers completely."""
        import json

        from airflow.sdk.exceptions import AirflowFailException

        from include.compliance.registry import rule_ids
        from include.compliance.store import inventory_gaps
        from include.inventory.store import latest
        from include.paths import as_data_path
        from include.targets import TargetsError, load_targets

        check_conf(get_current_context())
        params = params or {}
        # Bad names fail here, before any work, and without retries: retrying cannot fix them.
        unknown_rules = sorted(set(params.get("rules") or []) - set(rule_ids()))
        if unknown_rules:
            raise AirflowFailException(f"unknown rules: {', '.join(unknown_rules)}; known: {', '.join(rule_ids())}")
        try:
            requested = [t.name for t in load_targets().select(list(params.get("targets") or []))]
        except TargetsError as exc:
            raise AirflowFailException(str(exc)) from exc
        try:
            pointer = latest()
        except FileNotFoundError:
            raise AirflowFailException(
                "no inventory has been published yet: run the inventory_estate runbook first"
            ) from None
        summary = json.loads((as_data_path(pointer["path"]).parent / "summary.json").read_text())
        incomplete = inventory_gaps(summary, requested)
        print(f"inventory {pointer['run_id']} collected at {pointer['collected_at']}: {pointer['path']}")
        for name in incomplete:
            print(f"  {name}: not inventoried completely; its previous findings stay open, not resolved")
        return {
            "path": pointer["path"],
            "run_id": pointer["run_id"],
            "collected_at": pointer["collected_at"],
            "targets": requested,
            "incomplete_targets": incomplete,
        }

    @task
    def evaluate_rules(inventory: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run every enabled rule over the inventory; apply waivers and the policy."""

        from include.compliance.engine import scan
        from include.compliance.policy import load_policy
        from include.compliance.store import new_scan_id, scan_dir, write_findings
        from include.compliance.waivers import load_waivers
        from include.inventory.store import read_jsonl
        from include.targets import load_targets

        wanted = set(inventory["targets"])
        records = [r for r in read_jsonl(inventory["path"]) if r.target in wanted]
        rules = list((params or {}).get("rules") or []) or None
        scanned_at = datetime.now(UTC)
        findings = scan(
            records, load_targets(), now=scanned_at, rules=rules, waivers=load_waivers(), policy=load_policy()
        )
        scan_id = new_scan_id(scanned_at, get_current_context()["run_id"])
        path = scan_dir(scan_id) / "evaluated.json"  # before the diff; findings.json comes after it
        write_findings(path, findings)
        counts = {s: sum(1 for f in findings if f.status == s) for s in ("fail", "pass", "waived")}
        print(f"{len(records)} resources, {len(findings)} findings: {counts}")
        return {
            "scan_id": scan_id,
            "staged": str(path),
            "scanned_at": scanned_at.isoformat(),
            "resources": len(records),
            **counts,
        }

    @task
    def validate_facts(inventory: dict[str, Any], evaluated: dict[str, Any]) -> dict[str, Any]:
        """Validate the inventory facts with the great-expectations suites (results go into the report)."""
        from include.compliance.store import compliance_dir
        from include.compliance.validation import (
            validate_inventory,  # imports GX inside the call
        )
        from include.fileio import local_folder, published
        from include.inventory.store import read_jsonl

        wanted = set(inventory["targets"])
        records = [r for r in read_jsonl(inventory["path"]) if r.target in wanted]
        out_dir = compliance_dir() / "scans" / evaluated["scan_id"] / "validation"
        # GX writes its results and Data Docs to a local folder; on an object-store data root they are uploaded.
        with local_folder(out_dir) as folder:
            summary = validate_inventory(records, out_dir=folder)
        results_path = published(summary.results_path, folder, out_dir) if summary.results_path else None
        html_path = published(summary.html_path, folder, out_dir) if summary.html_path else None
        stats = summary.statistics
        print(
            f"fact validation {'passed' if summary.success else 'FAILED'}: {stats['successful_expectations']} of "
            f"{stats['evaluated_expectations']} expectations held ({summary.renderer}: {html_path})"
        )
        for label in summary.failed_labels():
            print(f"  failed: {label}")
        # The findings still stand; the report shows which facts they rest on were questionable.
        return {
            "success": summary.success,
            "results_path": results_path,
            "html_path": html_path,
            "statistics": stats,
            "failed": summary.failed_labels()[:50],
        }

    @task
    def diff_against_previous(
        inventory: dict[str, Any], evaluated: dict[str, Any], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Mark findings new / open / resolved against the previous scan and save this scan."""
        from include.compliance.store import (
            diff,
            load_latest_findings,
            read_findings,
            save_scan,
        )

        scanned_at = datetime.fromisoformat(evaluated["scanned_at"])
        rules = list((params or {}).get("rules") or []) or None
        findings = diff(
            load_latest_findings(before=evaluated["scan_id"]),  # a retry must not diff against itself
            read_findings(evaluated["staged"]),
            scanned_at=scanned_at,
            incomplete_targets=inventory["incomplete_targets"],
            scanned_targets=inventory["targets"],
            scanned_rules=rules,
        )
        saved = save_scan(
            findings,
            scanned_at=scanned_at,
            scan_id=evaluated["scan_id"],
            inventory={k: inventory[k] for k in ("run_id", "path", "collected_at", "incomplete_targets")},
        )
        lifecycle = saved["totals"]["by_lifecycle"]
        print(f"scan {saved['scan_id']}: {saved['totals']['by_status']}; {lifecycle}")
        return {"scan_id": saved["scan_id"], "path": saved["path"], "scanned_at": saved["scanned_at"],
                "by_status": saved["totals"]["by_status"], "by_lifecycle": lifecycle}

    @task
    def write_reports(saved: dict[str, Any], validation: dict[str, Any]) -> dict[str, str]:
        """Write the JSON, CSV, SARIF, OCSF and HTML reports of this scan (and of 'latest')."""
        from include.compliance.reports import write_scan

        paths = write_scan(saved["path"], validation=validation)
        for key, path in sorted(paths.items()):
            print(f"{key}: {path}")
        return dict(paths)

    @task
    def notify(saved: dict[str, Any], written: dict[str, str]) -> dict[str, Any]:
        """Announce new critical / high findings through the configured channels."""
        from include.compliance.store import load_scan
        from include.notify import notify_new_findings

        result = notify_new_findings(
            load_scan(saved["path"])["findings"],
            scan_id=saved["scan_id"],
            report_url=written.get("html"),
            context=get_current_context(),
        )
        print(f"notified: {result}")
        return dict(result)

    @task
    def enforce_policy(saved: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        """Fail the run when new or still-open findings of a failing severity exist, listing them."""
        from airflow.sdk.exceptions import AirflowFailException

        from include.compliance.engine import failing
        from include.compliance.policy import load_policy
        from include.compliance.store import load_scan

        severities = list((params or {}).get("fail_on") or []) or list(load_policy().fail_on)
        bad = failing(load_scan(saved["path"])["findings"], severities)
        if not bad:
            print(f"no new or open findings of severity {', '.join(severities)}")
            return
        lines = [
            f"[{f.severity}] {f.lifecycle} {f.rule_id} {f.target} {f.resource_id}: {f.detail}" for f in bad
        ]
        shown = lines[:200]
        more = f"\n... and {len(lines) - len(shown)} more (see {saved['path']})" if len(lines) > len(shown) else ""
        # AirflowFailException: retrying cannot change the findings; fix, waive, or re-scan.
        raise AirflowFailException(
            f"{len(bad)} new or open finding(s) of severity {', '.join(severities)}:\n" + "\n".join(shown) + more
        )

    # A @task call takes the XComArg of an upstream task where its function takes that task's value;
    # Airflow's Task type cannot say so, hence the arg-type ignores (until we use its mypy plugin).
    inventory = load_inventory()
    evaluated = evaluate_rules(inventory)  # type: ignore[arg-type]
    validation = validate_facts(inventory, evaluated)  # type: ignore[arg-type]
    saved = diff_against_previous(inventory, evaluated)  # type: ignore[arg-type]
    validation >> saved
    written = write_reports(saved, validation)  # type: ignore[arg-type]
    enforce_policy(saved) << notify(saved, written)  # type: ignore[arg-type]


compliance_scan()
