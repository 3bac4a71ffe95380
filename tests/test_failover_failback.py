"""failback_service against moto: rebuild replication, wait, approve, switch back, restore the catalog's
topology (primary writer, standby replica, DNS on the primary), nothing deleted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from tests.test_failover_support import REJECT, Estate, db, primary_answers, run_failback, run_failover, start_estate

FAILOVER = {"service": "orders", "reason": "INC-9: us-east-1 down", "dry_run": False, "severity": "critical"}
FAILBACK = {"service": "orders", "reason": "INC-9: us-east-1 is back", "dry_run": False}


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    for running in start_estate(tmp_path):
        monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(running.catalog_file))
        yield running


def _failed_over(estate: Estate, incident: str) -> None:
    estate.services.down("primary")
    out = run_failover(f"fo-{incident}", incident_id=incident, **FAILOVER)
    assert out["result"]["status"] == "failed_over", out["error"]
    estate.services.up("primary")


def _source(identifier: str, region: str) -> str | None:
    from tests.test_failover_support import tags

    instance = db(identifier, region)
    assert instance is not None, f"{identifier} missing"
    source = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    # the emulator keeps naming the old source after a promotion; the promotion tag tells them apart
    return None if source and tags(identifier, region).get("runbooks-promoted-from") == source else source


def test_failback_restores_the_catalog_topology(estate: Estate, data_dir: Path) -> None:
    _failed_over(estate, "INC-9")
    assert primary_answers() == "orders-standby"
    out = run_failback("fb-1", incident_id="INC-9", **FAILBACK)
    result = out["result"]
    assert out["error"] is None, out["error"]
    assert result["status"] == "failed_back", result
    assert result["approver"] == "carol"
    # DNS answers the primary, the primary's name is the writer, the standby's name replicates from it
    assert primary_answers() == "orders-primary"
    assert _source("rb-orders-db", "us-east-1") is None
    assert db("rb-orders-db", "us-east-1")["DBInstanceStatus"] == "available"
    assert _source("rb-orders-db-replica-eu", "eu-west-1") == "arn:aws:rds:us-east-1:123456789012:db:rb-orders-db"
    # nothing deleted: both databases that held the names are kept under their retired names
    old_primary, old_standby = result["retired"]
    assert old_primary.startswith("rb-orders-db-retired-") and db(old_primary, "us-east-1") is not None
    assert old_standby.startswith("rb-orders-db-replica-eu-retired-") and db(old_standby, "eu-west-1") is not None
    applies = {r.action: r.outcome for r in read_audit(run_id="fb-1") if r.step == "apply"}
    assert applies == {"rebuild_replica": "changed", "fence": "changed", "promote": "changed", "switch_dns": "changed"}
    # a second failback for the same incident changes nothing
    again = run_failback("fb-2", incident_id="INC-9", **FAILBACK)
    assert again["result"]["status"] in ("done_earlier", "nothing_to_do") and again["error"] is None
    # and the service can fail over again (a new incident) from the restored topology
    estate.services.down("primary")
    second = run_failover("fo-10", incident_id="INC-10", **FAILOVER)
    assert second["result"]["status"] == "failed_over", second["error"]


def test_failback_refuses_while_the_primary_side_is_down(estate: Estate, data_dir: Path) -> None:
    _failed_over(estate, "INC-11")
    estate.services.down("primary")
    out = run_failback("fb-down", incident_id="INC-11", **FAILBACK)
    assert out["result"]["status"] == "refused" and "primary side's endpoints are down" in out["error"]
    assert primary_answers() == "orders-standby" and db("rb-orders-db", "us-east-1") is not None
    assert not [r for r in read_audit(run_id="fb-down") if r.step == "apply"]


def test_failback_when_not_failed_over_changes_nothing(estate: Estate, data_dir: Path) -> None:
    out = run_failback("fb-none", incident_id="INC-0", **FAILBACK)
    assert out["result"]["status"] == "nothing_to_do" and out["error"] is None


def test_failback_dry_run_and_rejection_change_nothing_after_the_rebuild(estate: Estate, data_dir: Path) -> None:
    _failed_over(estate, "INC-12")
    dry = run_failback("fb-dry", incident_id="INC-12", service="orders", reason="look first")
    assert dry["result"]["status"] == "dry_run" and dry["error"] is None
    assert any("create rb-orders-db (us-east-1) as a read replica of rb-orders-db-replica-eu" in line
               for line in dry["result"]["plan"])
    assert _source("rb-orders-db", "us-east-1") is None  # still the fenced old primary, untouched
    rejected = run_failback("fb-no", incident_id="INC-12", approval=REJECT, **FAILBACK)
    assert rejected["result"]["status"] == "rejected", rejected["error"]
    assert primary_answers() == "orders-standby"  # traffic stays on the standby
    assert _source("rb-orders-db", "us-east-1") is not None  # replication was rebuilt (before approval)
