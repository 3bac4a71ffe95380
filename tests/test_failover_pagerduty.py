"""failover_service started by the intake from a PagerDuty incident: when the run completes, the incident gets
a note through the PagerDuty provider's hook (the RTO on success, then resolved; the cause on failure), against
a local PagerDuty REST API; a failing PagerDuty never fails the runbook."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.test_failover_support import Estate, primary_answers, run_failover, start_estate
from tests.test_notify import PAGERDUTY_TOKEN, pagerduty  # noqa: F401  (the fixture)


def incident(server: ThreadingHTTPServer, incident_id: str) -> tuple[str, dict[str, Any]]:
    """A triggered incident PagerDuty knows (one per test: the change ledger keeps each incident done), and the
    run id and parameters the intake starts failover_service with for it."""
    server.incidents[incident_id] = {"id": incident_id, "type": "incident", "status": "triggered"}  # type: ignore[attr-defined]
    run = f"intake__pagerduty__{incident_id}"
    return run, {"service": "orders", "incident_id": run, "severity": "critical", "dry_run": False,
                 "reason": f"PagerDuty incident {incident_id}: orders API down"}


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_RUNBOOKS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_RUNBOOKS", raising=False)
    for running in start_estate(tmp_path):
        monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(running.catalog_file))
        yield running


def test_failover_from_a_pagerduty_incident_notes_the_rto_and_resolves_it(
        estate: Estate, pagerduty: ThreadingHTTPServer) -> None:  # noqa: F811
    run, request = incident(pagerduty, "Q1FAILOVER1")
    estate.services.down("primary")
    out = run_failover(run, **request)
    result = out["result"]
    assert out["error"] is None and result["status"] == "failed_over", out
    assert primary_answers() == "orders-standby"
    assert result["notified"]["pagerduty"] == "noted, resolved"  # in result.json
    requests = pagerduty.requests  # type: ignore[attr-defined]
    assert [(r["method"], r["path"]) for r in requests] == [
        ("POST", "/incidents/Q1FAILOVER1/notes"), ("GET", "/incidents/Q1FAILOVER1"), ("PUT", "/incidents/Q1FAILOVER1")]
    note = requests[0]["body"]["note"]["content"]
    assert f"RTO {result['rto']['rto_seconds']:.1f}s" in note and "orders now runs on its standby" in note
    assert pagerduty.incidents["Q1FAILOVER1"]["status"] == "resolved"  # type: ignore[attr-defined]
    assert PAGERDUTY_TOKEN not in Path(result["path"]).read_text()


def test_failed_failover_notes_the_cause_and_leaves_the_incident_open(
        estate: Estate, pagerduty: ThreadingHTTPServer) -> None:  # noqa: F811
    run, request = incident(pagerduty, "Q1FAILOVER2")
    estate.services.down("primary")
    out = run_failover(run, fail_at="promote_standby", **request)  # the promotion task crashes
    assert out["result"]["status"] == "failed" and out["tasks"]["record_and_notify"] == "failed"
    [request] = pagerduty.requests  # type: ignore[attr-defined]
    note = request["body"]["note"]["content"]
    assert "FAILED" in note and out["result"]["error"] in note
    assert pagerduty.incidents["Q1FAILOVER2"]["status"] == "triggered"  # type: ignore[attr-defined]
    assert out["result"]["notified"]["pagerduty"] == "noted"


def test_pagerduty_down_does_not_fail_the_failover(estate: Estate, pagerduty: ThreadingHTTPServer) -> None:  # noqa: F811
    run, request = incident(pagerduty, "Q1FAILOVER3")
    pagerduty.incidents.clear()  # type: ignore[attr-defined]  # PagerDuty answers 404 for the incident
    estate.services.down("primary")
    out = run_failover(run, **request)
    assert out["error"] is None and out["result"]["status"] == "failed_over", out
    assert out["result"]["notified"]["pagerduty"].startswith("failed:") and "404" in out["result"]["notified"]["pagerduty"]
    assert out["tasks"]["record_and_notify"] == "success"


def test_a_run_not_started_from_pagerduty_leaves_pagerduty_alone(
        estate: Estate, pagerduty: ThreadingHTTPServer) -> None:  # noqa: F811
    _, request = incident(pagerduty, "Q1FAILOVER4")
    estate.services.down("primary")
    out = run_failover("fo-manual", **{**request, "incident_id": "INC-PD-MANUAL"})
    assert out["result"]["status"] == "failed_over" and "pagerduty" not in out["result"]["notified"]
    assert pagerduty.requests == []  # type: ignore[attr-defined]
