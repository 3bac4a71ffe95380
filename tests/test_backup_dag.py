"""The backup_object_stores runbook end to end through Airflow (dag.test) against the seeded emulators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from include.backup.manifest import list_points, read_manifest
from include.backup.policies import load_policies
from include.backup.report import read_history, read_run_report
from include.backup.runner import places
from tests.dagrun import run_dag

pytestmark = pytest.mark.slow

DAG = "backup_object_stores"
POLICIES = ["aws-customer-exports-to-gcp", "gcp-app-data-to-azure"]


def _backup_store_contents() -> dict[str, list[str]]:
    contents = {}
    for name in POLICIES:
        destination = places(load_policies().get(name))[1]
        contents[name] = sorted(i.key for i in destination.store.list_objects(destination.container, destination.prefix))
    return contents


def test_runbook_backs_up_both_demo_policies_then_skips_them_until_due(
    seeded: Any, airflow_db: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo policies, on a yearly schedule: no fire time can pass between the two runs of this test.
    text = (Path(__file__).resolve().parents[1] / "config" / "backup" / "policies.yaml").read_text()
    yearly = tmp_path / "policies.yaml"
    yearly.write_text(text.replace('schedule: "0 * * * *"', 'schedule: "@yearly"').replace(
        'schedule: "30 * * * *"', 'schedule: "@yearly"'))
    assert yearly.read_text().count("@yearly") == 2
    monkeypatch.setenv("RUNBOOKS_BACKUP_POLICIES", str(yearly))

    result = run_dag(DAG, {"dry_run": False})
    assert result["state"] == "success", result["output"][-6000:]
    assert result["tasks"] == {"select_policies": "success", "back_up_policy[0]": "success",
                               "back_up_policy[1]": "success", "validate_points": "success",
                               "check_results": "success"}
    assert result["output"].count("validated by great-expectations in") == 2
    for name in POLICIES:
        report = read_run_report(name, result["run_id"])
        assert report is not None and report["status"] == "succeeded" and report["dry_run"] is False
        assert report["totals"]["copied"] == report["totals"]["listed"] > 0
        # validated by great-expectations in the validate_points task, after the copy task wrote the point
        assert report["validation"]["success"] is True and report["validation_pending"] is False
        assert report["rpo"]["breached"] is False
        destination = places(load_policies().get(name))[1]
        points = list_points(destination.store, destination.container, destination.prefix)
        assert points == [report["point_id"]]
        manifest = read_manifest(destination.store, destination.container, destination.prefix, points[0])
        assert len(manifest.entries) == report["totals"]["listed"]
        assert [(h.run_id, h.validation_success) for h in read_history(name)] == [(result["run_id"], True)]
    assert {r.runbook for r in read_audit(step="backup")} == {DAG}
    # the run ran as a manual run with dry_run false; nothing leaks the emulator credentials into reports
    text = "".join(p.read_text() for p in (data_dir / "backup").rglob("*.json"))
    assert "testing" not in text and "AccountKey" not in text

    # A second run, not forced, names no policy: neither policy's schedule fired since its point: both skipped.
    again = run_dag(DAG, {"dry_run": False})
    assert again["state"] == "success", again["output"][-6000:]
    assert again["tasks"]["back_up_policy[0]"] == again["tasks"]["back_up_policy[1]"] == "skipped"
    assert again["tasks"]["validate_points"] == "success"  # nothing written, nothing to validate
    assert again["output"].count(": no point written by this run: nothing to validate") == 2
    assert again["output"].count(": skipped (not due); newest point") == 2
    assert all(read_run_report(name, again["run_id"]) is None for name in POLICIES)


def test_runbook_by_hand_plans_only_and_writes_nothing(seeded: Any, airflow_db: Path, data_dir: Path) -> None:
    before = _backup_store_contents()
    result = run_dag(DAG, {"policies": ["gcp-app-data-to-azure"]})  # by hand, dry_run empty: a dry run
    assert result["tasks"]["back_up_policy[0]"] == "success", result["output"][-6000:]
    report = read_run_report("gcp-app-data-to-azure", result["run_id"])
    assert report is not None and report["status"] == "planned" and report["dry_run"] is True
    assert len(report["plan"]) == report["totals"]["to_copy"] == report["totals"]["listed"] > 0
    assert "would copy app/large-12mib.bin (12582912 bytes): new" in result["output"]
    assert _backup_store_contents() == before, "a dry run writes nothing"
    assert read_history("gcp-app-data-to-azure") == []
    # No point exists yet: the RPO is breached, and a dry run lists it without failing on it.
    assert result["state"] == "success" and "RPO breaches are reported, not enforced" in result["output"]
    assert read_run_report("aws-customer-exports-to-gcp", result["run_id"]) is None, "only the named policy"


def test_unknown_policy_or_parameter_is_refused_before_anything_runs(
    seeded: Any, airflow_db: Path, data_dir: Path,
) -> None:
    result = run_dag(DAG, {"policies": ["no-such-policy"], "dry_run": False})
    assert result["state"] == "failed"
    assert result["tasks"]["select_policies"] == "failed" and result["tasks"]["check_results"] == "failed"
    assert result["tasks"]["validate_points"] == "failed"
    assert "unknown backup policy 'no-such-policy'; known: aws-customer-exports-to-gcp, gcp-app-data-to-azure" in (
        result["output"])
    typo = run_dag(DAG, {"polices": ["gcp-app-data-to-azure"]})
    assert typo["state"] == "failed" and "unknown parameter(s) 'polices'" in typo["output"]
    assert _backup_store_contents() == {name: [] for name in POLICIES}
    assert not (data_dir / "backup").exists()


def test_params_form_is_submittable_as_it_opens() -> None:
    """Every optional field is nullable or has a non-empty default (Airflow 3.3's form rule)."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags" / f"{DAG}.py")).dags[DAG]
    schema = {name: param.schema for name, param in dag.params.items()}
    assert schema["dry_run"]["type"] == ["null", "boolean"] and dag.params["dry_run"] is None
    assert schema["policies"]["type"] == ["null", "array"] and dag.params["policies"] is None
    assert schema["force"]["type"] == "boolean" and dag.params["force"] is False
    assert json.dumps(schema)  # JSON-serialisable for the form
