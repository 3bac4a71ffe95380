"""failover_drill: the primary's endpoint is stopped for real, failover and failback run, the RTO is measured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.failover.history import read_history
from tests.test_failover_support import Estate, db, primary_answers, run_drill, start_estate


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    for running in start_estate(tmp_path):
        monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(running.catalog_file))
        yield running


def test_drill_fails_over_and_back_and_measures_the_rto(estate: Estate, data_dir: Path) -> None:
    out = run_drill("drill-1", service="orders", dry_run=False)
    result = out["result"]
    assert out["error"] is None, out["error"]
    assert result["status"] == "passed"
    rto = result["rto"]
    assert rto["started_from"] == "incident_started_at" and rto["incident_started_at"] == \
        result["outage"]["outage_started_at"]
    assert 0 < rto["our_steps_seconds"] <= rto["rto_seconds"] < 30
    steps = [s["step"] for s in result["failover"]["timeline"]]
    assert steps[-4:] == ["fence_primary", "promote_standby", "switch_dns", "verify"]
    assert result["failback"]["status"] == "failed_back" and result["failback"]["seconds"] > 0
    # the drill leaves the catalog's topology, the endpoint back up, the old databases renamed for review
    assert primary_answers() == "orders-primary" and estate.services.status() == {"primary": True, "standby": True}
    assert all(db(name, region) for name, region in zip(result["failback"]["retired"], ("us-east-1", "eu-west-1"),
                                                        strict=True))
    (line,) = read_history(service="orders")
    assert line["runbook"] == "failover_drill" and line["status"] == "passed" and line["rto_seconds"] == rto["rto_seconds"]


def test_drill_dry_run_by_hand_and_refusals(estate: Estate, data_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dry = run_drill("drill-dry", service="orders")  # by hand, dry_run not given: a dry run
    assert dry["result"]["status"] == "dry_run" and dry["result"]["dry_run"] is True and dry["error"] is None
    assert estate.services.status()["primary"] and primary_answers() == "orders-primary"
    estate.services.down("standby")
    refused = run_drill("drill-no", service="orders", dry_run=False)
    assert refused["result"]["status"] == "refused" and "standby endpoints are down" in refused["error"]
    assert estate.services.status()["primary"], "nothing was stopped"
