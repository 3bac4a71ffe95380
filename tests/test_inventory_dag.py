"""The inventory runbook end to end through Airflow (dag.test) against the seeded emulators."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from include.inventory import store
from tests.dagrun import run_dag

pytestmark = pytest.mark.slow


def test_inventory_runbook_publishes_all_three_clouds(seeded, airflow_db, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_dag("inventory_estate")
    assert result["state"] == "success", result["output"][-4000:]
    pointer = store.latest()
    summary = json.loads((Path(pointer["path"]).parent / "summary.json").read_text())
    assert summary["complete"] is True and summary["errors"] == []
    assert set(summary["by_cloud"]) == {"aws", "gcp", "azure"}
    records = store.load_latest()
    assert len(records) == summary["resources"]
    # every seeded bucket / container is in the published dataset
    names = {(r.cloud, r.resource_type, r.name) for r in records}
    for kind, ident in (item.split(":", 1) for item in seeded.created):
        if kind in ("aws.s3.bucket", "gcp.storage.bucket", "azure.storage.container"):
            assert any(rt == kind and n == ident for _, rt, n in names), f"{kind} {ident} missing"


def test_unreachable_target_fails_the_run_with_details_but_keeps_the_rest(
    seeded, airflow_db, data_dir: Path, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    from localdev.emulators import free_port

    targets = (Path(__file__).resolve().parents[1] / "config" / "targets.yaml").read_text()
    targets += (
        "\n  - name: aws-dr\n    cloud: aws\n    conn_id: aws_unreachable\n    account: '210987654321'\n"
        "    regions: [us-west-2]\n"
    )
    targets_file = tmp_path / "targets.yaml"
    targets_file.write_text(targets)
    closed = free_port()
    env = dict(os.environ)
    env["RUNBOOKS_TARGETS_FILE"] = str(targets_file)
    env["AIRFLOW_CONN_AWS_UNREACHABLE"] = json.dumps(
        {
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {
                "endpoint_url": f"http://127.0.0.1:{closed}", "region_name": "us-west-2",
                "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
            },
        }
    )
    result = run_dag("inventory_estate", env=env)
    assert result["state"] == "failed"
    assert result["tasks"]["publish_inventory"] == "success", "the targets that worked are published"
    assert result["tasks"]["check_complete"] == "failed"
    assert "aws-dr" in result["output"] and "unreachable" in result["output"]
    summary = json.loads((Path(store.latest()["path"]).parent / "summary.json").read_text())
    assert summary["complete"] is False
    assert [(e["target"], e["kind"]) for e in summary["errors"]] == [("aws-dr", "unreachable")]
    assert {t["target"] for t in summary["targets"] if t["complete"]} == {"aws-prod", "gcp-prod", "azure-prod"}
    assert summary["by_cloud"]["aws"], "aws-prod's resources are still published"
