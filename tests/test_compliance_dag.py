"""The compliance_scan runbook end to end through Airflow (dag.test in a child process, hard timeout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.compliance.store import latest_pointer, load_history, load_scan
from tests.dagrun import run_dag

pytestmark = pytest.mark.slow


def _publish_inventory(run_id: str) -> dict[str, Any]:
    """Collect every target of config/targets.yaml and publish it, as inventory_estate does."""
    from include.inventory.collect import collect_target
    from include.inventory.store import publish, staging_path, write_jsonl
    from include.targets import load_targets

    staged, summaries = [], []
    for target in load_targets().targets:
        result = collect_target(target)
        path = staging_path(run_id, target.name)
        write_jsonl(path, result.records)
        staged.append(path)
        summaries.append(result.summary())
    summary = publish(run_id, staged, summaries)
    assert summary["complete"], summary["errors"]
    return summary


def test_compliance_scan_without_inventory_fails_clearly(airflow_db: Path, data_dir: Path) -> None:
    result = run_dag("compliance_scan", timeout=300)
    assert result["state"] == "failed"
    assert result["tasks"]["load_inventory"] == "failed"
    assert "run the inventory_estate runbook first" in result["output"]


def test_compliance_scan_end_to_end(seeded, airflow_db: Path, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    _publish_inventory("inventory-for-compliance")

    # First scan: the seeded estate has critical findings (public buckets, public database): the run fails
    # at enforce_policy, after every other step did its work.
    first = run_dag("compliance_scan", timeout=420)
    tasks = first["tasks"]
    assert first["state"] == "failed", first["output"][-3000:]
    assert tasks["enforce_policy"] == "failed"
    assert all(state == "success" for task, state in tasks.items() if task != "enforce_policy"), tasks
    assert "aws_s3_bucket_not_public" in first["output"] and "arn:aws:s3:::rb-prod-public-website" in first["output"]

    pointer = latest_pointer()
    assert pointer is not None
    scan = load_scan(pointer["path"])
    failing = [f for f in scan["findings"] if f.status == "fail"]
    assert failing and {f.lifecycle for f in failing} == {"new"}
    assert {f.target for f in scan["findings"]} == {"aws-prod", "gcp-prod", "azure-prod"}
    assert scan["inventory"]["run_id"] == "inventory-for-compliance"
    scan_dir = Path(pointer["path"]).parent
    assert (scan_dir / "validation" / "validation.json").exists(), "great-expectations results are kept"
    for name in ("findings.json", "findings.csv", "findings.sarif", "findings.ocsf.json", "report.html"):
        assert (scan_dir / "reports" / name).exists(), name
        assert (data_dir / "compliance" / "reports" / "latest" / name).exists(), name
    notes = (data_dir / "notifications" / "notifications.jsonl").read_text().splitlines()
    assert any("new critical/high compliance finding" in line for line in notes)

    # Second scan of the same inventory, failing only on "info": it succeeds, and last scan's failures
    # are now "open" with their first_seen kept.
    second = run_dag("compliance_scan", conf={"fail_on": ["info"]}, timeout=420)
    assert second["state"] == "success", second["output"][-3000:]
    again = load_scan(latest_pointer()["path"])  # type: ignore[index]
    assert again["scan_id"] != scan["scan_id"]
    before = {f.finding_id: f for f in failing}
    now_failing = {f.finding_id: f for f in again["findings"] if f.status == "fail"}
    assert set(now_failing) == set(before)
    assert all(f.lifecycle == "open" and f.first_seen == before[i].first_seen for i, f in now_failing.items())
    assert [h["scan_id"] for h in load_history()] == [scan["scan_id"], again["scan_id"]]
