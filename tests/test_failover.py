"""failover_service against moto (RDS cross-region replica, Route 53 failover records) and real HTTP
endpoints on loopback: refusals, the failover itself, once per incident, resume after a failure, dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from tests.test_failover_support import (
    APPROVE,
    Estate,
    db,
    dns_records,
    primary_answers,
    run_failover,
    start_estate,
    tags,
)

INCIDENT = {"service": "orders", "reason": "INC-1: us-east-1 orders API down", "dry_run": False}


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Estate]:
    for running in start_estate(tmp_path):
        monkeypatch.setenv("RUNBOOKS_SERVICES_FILE", str(running.catalog_file))
        yield running


def test_primary_down_fails_over_and_verifies(estate: Estate, data_dir: Path) -> None:
    estate.services.down("primary")
    out = run_failover("fo-1", incident_id="INC-1", severity="critical", **INCIDENT)
    result = out["result"]
    assert out["error"] is None, out
    assert result["status"] == "failed_over", result
    assert out["tasks"]["approve_by_policy"] == "success"
    assert primary_answers() == "orders-standby"
    standby = db("rb-orders-db-replica-eu", "eu-west-1")
    assert standby["DBInstanceStatus"] == "available"
    assert tags("rb-orders-db-replica-eu", "eu-west-1")["runbooks-promoted-from"].endswith(":db:rb-orders-db")
    print(result["rto"], result["timeline"])


def _unchanged() -> None:
    """The topology the catalog describes: nothing was fenced, promoted or switched."""
    assert primary_answers() == "orders-primary"
    assert db("rb-orders-db-replica-eu", "eu-west-1")["ReadReplicaSourceDBInstanceIdentifier"]
    assert "runbooks-promoted-from" not in tags("rb-orders-db-replica-eu", "eu-west-1")
    assert "runbooks-fence" not in tags("rb-orders-db", "us-east-1")


def test_healthy_primary_is_refused(estate: Estate, data_dir: Path) -> None:
    out = run_failover("fo-healthy", incident_id="INC-2", severity="critical", **INCIDENT)
    assert out["result"]["status"] == "refused"
    assert "primary is healthy" in out["error"] and "force" in out["error"]
    assert out["tasks"]["report_decision"] == "failed" and "fence_primary" not in out["tasks"]
    _unchanged()
    decide = [r for r in read_audit(run_id="fo-healthy") if r.step == "decide"]
    assert decide and decide[0].outcome == "failed" and "primary is healthy" in (decide[0].error or "")


def test_force_fails_over_a_healthy_primary(estate: Estate, data_dir: Path) -> None:
    out = run_failover("fo-force", incident_id="INC-3", severity="critical", force=True, **INCIDENT)
    assert out["result"]["status"] == "failed_over", out["error"]
    assert primary_answers() == "orders-standby"


@pytest.mark.parametrize("problem", ["standby_down", "lagging", "lag_unknown"])
def test_unhealthy_or_lagging_standby_is_refused_with_the_reason(problem: str, estate: Estate, data_dir: Path) -> None:
    estate.services.down("primary")
    expected = {"standby_down": "standby endpoints are down", "lagging": "lags 120.0s behind its primary",
                "lag_unknown": "replica lag of rb-orders-db-replica-eu is unknown"}[problem]
    if problem == "standby_down":
        estate.services.down("standby")
    elif problem == "lagging":
        estate.publisher.set_lag("rb-orders-db-replica-eu", 120.0)
    else:  # a replica RDS never published a lag for (the publisher stays silent about it)
        from include.clouds.aws.database_failover import RdsFailover

        estate.publisher.stop()
        monkey = pytest.MonkeyPatch()
        monkey.setattr(RdsFailover, "_lag", lambda self, db: (None, None))
    try:
        out = run_failover(f"fo-{problem}", incident_id=f"INC-{problem}", severity="critical", **INCIDENT)
    finally:
        if problem == "lag_unknown":
            monkey.undo()
    assert out["result"]["status"] == "refused"
    assert expected in out["error"], out["error"]
    assert any(expected in reason for reason in out["result"]["reasons"])
    _unchanged()


def test_dry_run_reads_and_plans_but_changes_nothing(estate: Estate, data_dir: Path) -> None:
    estate.services.down("primary")
    out = run_failover("fo-dry", incident_id="INC-DRY", severity="critical", service="orders", reason="drill")
    result = out["result"]
    assert out["error"] is None and result["status"] == "dry_run" and result["dry_run"] is True
    assert [line.split(": ", 1)[1].split(" ")[0] for line in result["plan"]] == ["action", "action", "action"]
    assert any("promote" in line for line in result["plan"]) and any("switch_dns" in line for line in result["plan"])
    _unchanged()
    assert {r.outcome for r in read_audit(run_id="fo-dry")} <= {"skipped"}
    from include.changes.ledger import Ledger

    assert Ledger.from_connection().entries("failover_service:orders:INC-DRY") == {}


def test_human_approval_and_rejection(estate: Estate, data_dir: Path) -> None:
    from tests.test_failover_support import REJECT

    estate.services.down("primary")
    rejected = run_failover("fo-reject", incident_id="INC-R", approval=REJECT, **INCIDENT)  # no severity: ask
    assert rejected["decision"]["approval"] == "human" and rejected["result"]["status"] == "rejected"
    assert rejected["error"] is None
    _unchanged()
    approved = run_failover("fo-approve", incident_id="INC-A", approval=APPROVE, user="alice", **INCIDENT)
    assert approved["result"]["status"] == "failed_over", approved["error"]
    assert approved["result"]["approver"] == "carol"
    applies = [r for r in read_audit(run_id="fo-approve") if r.step == "apply"]
    assert {r.action for r in applies} == {"fence", "promote", "switch_dns"}
    assert all(r.approver == "carol" and r.actor == "alice" and r.outcome == "changed" for r in applies)
    switch = next(r for r in applies if r.action == "switch_dns")
    assert switch.before["active"] == "primary" and switch.after["active"] == "standby"


def test_ten_concurrent_triggers_for_one_incident(estate: Estate, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from include.clouds.aws.database_failover import RdsFailover
    from include.clouds.aws.dns import Route53Dns

    calls = {"promote": 0, "switch": 0}
    lock = threading.Lock()
    real_promote, real_switch = RdsFailover.promote, Route53Dns.switch

    def promote(self: Any, db: Any) -> Any:
        with lock:
            calls["promote"] += 1
        return real_promote(self, db)

    def switch(self: Any, rs: Any, side: str) -> Any:
        with lock:
            calls["switch"] += 1
        return real_switch(self, rs, side)

    monkeypatch.setattr(RdsFailover, "promote", promote)
    monkeypatch.setattr(Route53Dns, "switch", switch)
    estate.services.down("primary")
    barrier = threading.Barrier(10)
    outs: dict[int, Any] = {}

    def trigger(n: int) -> None:
        barrier.wait()
        outs[n] = run_failover(f"fo-dup-{n}", incident_id="INC-DUP", severity="critical", **INCIDENT)

    threads = [threading.Thread(target=trigger, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    statuses = sorted(o["result"]["status"] for o in outs.values())
    assert calls == {"promote": 1, "switch": 1}, (calls, statuses)
    assert statuses.count("failed_over") == 1, statuses
    assert set(statuses) <= {"failed_over", "duplicate", "done_earlier", "in_progress"}, statuses
    assert all(o["error"] is None for o in outs.values()), [o["error"] for o in outs.values() if o["error"]]
    assert primary_answers() == "orders-standby"
    changed = [r for n in range(10) for r in read_audit(run_id=f"fo-dup-{n}") if r.step == "apply"
               and r.outcome == "changed"]
    assert sorted(r.action for r in changed) == ["fence", "promote", "switch_dns"]


def test_failure_after_promotion_then_rerun_switches_dns_without_a_second_promotion(
        estate: Estate, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from include.clouds.aws.database_failover import RdsFailover
    from tests.test_failover_support import route53

    promotions: list[str] = []
    real = RdsFailover.promote
    monkeypatch.setattr(RdsFailover, "promote", lambda self, db: promotions.append(db.identifier) or real(self, db))
    estate.services.down("primary")
    # The standby's record disappears before the switch (someone deleted it): switch_dns fails for real.
    standby_record = dns_records()["orders-standby"]
    zone = [z for z in route53().list_hosted_zones_by_name(DNSName="example-runbooks.com.")["HostedZones"]
            if z["Name"] == "example-runbooks.com."][0]["Id"]
    route53().change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "DELETE", "ResourceRecordSet": standby_record}]})
    first = run_failover("fo-broken", incident_id="INC-RESUME", severity="critical", **INCIDENT)
    assert first["tasks"]["promote_standby"] == "success" and first["tasks"]["switch_dns"] == "failed"
    assert first["result"]["status"] == "failed" and "resumes" in first["error"]
    assert promotions == ["rb-orders-db-replica-eu"]
    assert primary_answers() == "orders-primary"
    # The record is back; the same incident again: fence and promote are done, only DNS is switched.
    route53().change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": standby_record}]})
    second = run_failover("fo-resume", incident_id="INC-RESUME", severity=None, **INCIDENT)  # no second approval
    assert second["decision"]["resume"] is True and second["decision"]["approval"] == "resumed"
    assert second["result"]["status"] == "failed_over", second["error"]
    assert promotions == ["rb-orders-db-replica-eu"], "promoted once"
    assert primary_answers() == "orders-standby"
    outcomes = {r.action.split(".")[-1]: r.outcome for r in read_audit(run_id="fo-resume") if r.step == "apply"}
    assert outcomes == {"fence": "unchanged", "promote": "unchanged", "switch_dns": "changed"}
    assert second["result"]["steps"]["promote_standby"]["outcome"] in ("done_earlier", "unchanged")
    # and a third run for the incident changes nothing at all
    third = run_failover("fo-again", incident_id="INC-RESUME", severity="critical", **INCIDENT)
    assert third["result"]["status"] == "done_earlier" and third["error"] is None


def test_bad_requests_change_nothing(estate: Estate, data_dir: Path) -> None:
    estate.services.down("primary")
    unknown = run_failover("fo-bad-1", service="payments", incident_id="INC-X", reason="x", dry_run=False)
    assert "unknown service 'payments'; known services: orders" in unknown["error"]
    missing = run_failover("fo-bad-2", service="orders", incident_id="", dry_run=False)
    assert "incident_id is required" in missing["error"] and "reason is required" in missing["error"]
    typo = run_failover("fo-bad-3", service="orders", incident_id="INC-X", reason="x", sevrity="critical")
    assert "unknown parameter(s) 'sevrity'" in typo["error"]
    started = run_failover("fo-bad-4", service="orders", incident_id="INC-X", reason="x",
                           incident_started_at="yesterday")
    assert "not an ISO-8601 time" in started["error"]
    assert all(o["tasks"] == {"resolve_request": "failed"} for o in (unknown, missing, typo, started))
    _unchanged()


def test_another_incident_of_the_same_service_is_not_run_at_the_same_time(estate: Estate, data_dir: Path) -> None:
    from include.changes.ledger import Ledger
    from include.failover.core import service_lease_key

    ledger = Ledger.from_connection()
    ledger.acquire(service_lease_key("orders"), "failover_service/other-run", ttl=600)
    estate.services.down("primary")
    try:
        out = run_failover("fo-busy", incident_id="INC-OTHER", severity="critical", **INCIDENT)
    finally:
        ledger.release(service_lease_key("orders"), "failover_service/other-run")
    assert out["tasks"]["fence_primary"] == "failed" and out["result"]["status"] == "failed"
    _unchanged()


def test_incident_start_given_sets_the_rto_origin(estate: Estate, data_dir: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from include.failover.history import read_history

    estate.services.down("primary")
    start = (datetime.now(UTC) - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = run_failover("fo-rto", incident_id="INC-RTO", severity="critical", incident_started_at=start, **INCIDENT)
    rto = out["result"]["rto"]
    assert rto["started_from"] == "incident_started_at" and 90 <= rto["rto_seconds"] < 150
    assert rto["scheduling_overhead_seconds"] is None  # not measured from the trigger
    (line,) = read_history(service="orders")
    assert line["status"] == "failed_over" and line["rto_seconds"] == rto["rto_seconds"]
    assert set(line["steps"]) >= {"assess_primary", "decide", "fence_primary", "promote_standby", "switch_dns", "verify"}


def test_the_plan_takes_fresh_assessment_reads_and_the_apply_still_reads_live(
        estate: Estate, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """decide plans from what assess read moments ago (no second read of the same resources); a stale
    assessment is read again; and a step never writes on the strength of the plan: it re-reads first."""
    import threading
    from datetime import UTC, datetime, timedelta

    from include.capabilities.dns import dns
    from include.changes.ledger import Ledger
    from include.clouds.aws.database_failover import RdsFailover
    from include.clouds.aws.dns import Route53Dns
    from include.failover import core
    from include.failover.catalog import record_set_ref
    from include.targets import load_targets

    reads = {"status": 0, "dns": 0, "switch": 0}
    real_status, real_read, real_switch = RdsFailover.status, Route53Dns.read, Route53Dns.switch

    def counted(name: str, real: Any) -> Any:
        def call(self: Any, *args: Any) -> Any:
            if threading.current_thread().name != "replica-lag":  # the estate's lag publisher reads too
                reads[name] += 1
            return real(self, *args)
        return call

    estate.services.down("primary")
    service = core.service_spec("orders")
    run = core.RunInfo(runbook="failover_service", run_id="fo-observed", actor="tester")
    request = core.Request(service="orders", key="INC-OBS", reason="plan from the assessment", dry_run=False,
                           severity="critical")
    primary = core.assess_side(service, "primary", with_dns=True)
    standby = core.assess_side(service, "standby")
    monkeypatch.setattr(RdsFailover, "status", counted("status", real_status))
    monkeypatch.setattr(Route53Dns, "read", counted("dns", real_read))
    monkeypatch.setattr(Route53Dns, "switch", counted("switch", real_switch))
    ledger = Ledger.from_connection()
    fresh = core.decide_failover(run, request, primary, standby, ledger=ledger)
    assert fresh["outcome"] == "fail_over", fresh["reasons"]
    assert reads == {"status": 0, "dns": 0, "switch": 0}, reads
    switch = next(i for i in fresh["items"] if i["step"] == "failover.switch_dns")
    assert switch["change"]["before"]["active"] == "primary"
    # an assessment older than a minute (a decide retried long after it) is not trusted: read again
    old = (datetime.now(UTC) - timedelta(seconds=120)).isoformat()
    stale = core.decide_failover(run, request, primary, {**standby, "timing": {**standby["timing"], "finished_at": old}},
                                 ledger=ledger)
    assert stale["outcome"] == "fail_over" and reads["status"] == 2 and reads["dns"] == 1, reads
    # someone switches DNS by hand after the plan: the step re-reads, finds it done, and writes nothing
    config = load_targets()
    rs = record_set_ref(service, config)
    dns(config.get(rs.target)).switch(rs, "standby")
    out = core.apply_step(run, fresh, "failover.switch_dns", "policy", ledger=ledger, task="switch_dns")
    assert out["outcome"] == "unchanged" and reads["switch"] == 1, (out, reads)
    assert primary_answers() == "orders-standby"
    core.release_run_leases(run, request, ledger=ledger)


# ---- the catalog, the capabilities on the emulator, the local endpoints --------------------------------------
def test_the_shipped_catalog_loads_and_errors_name_the_service_and_field(tmp_path: Path) -> None:
    import yaml

    from include.failover.catalog import DEFAULT_SERVICES_FILE, CatalogError, load_catalog, parse_catalog

    catalog = load_catalog(DEFAULT_SERVICES_FILE)
    orders = catalog.get("orders")
    assert orders.policy.auto_approve == ("critical",) and orders.dns.routing == "failover"
    with pytest.raises(CatalogError, match="unknown service 'payments'; known services: orders"):
        catalog.get("payments")
    raw = yaml.safe_load(DEFAULT_SERVICES_FILE.read_text())
    raw["services"][0]["probe"]["attempts"] = 0
    raw["services"][0]["primary"]["database"]["target"] = "aws-nowhere"
    with pytest.raises(CatalogError, match=r"service 'orders': probe.attempts: Input should be greater than or equal to 1"):
        parse_catalog(yaml.safe_dump(raw))
    raw["services"][0]["probe"]["attempts"] = 3
    with pytest.raises(CatalogError, match=r"service 'orders': primary.database.target: unknown target 'aws-nowhere'"):
        parse_catalog(yaml.safe_dump(raw))
    raw = yaml.safe_load(DEFAULT_SERVICES_FILE.read_text())
    raw["services"][0]["standby"]["dns"]["values"] = raw["services"][0]["primary"]["dns"]["values"]
    with pytest.raises(CatalogError, match="service 'orders': .*a switch would change nothing"):
        parse_catalog(yaml.safe_dump(raw))
    raw = yaml.safe_load(DEFAULT_SERVICES_FILE.read_text())
    raw["services"][0]["policy"]["auto_approve"] = ["urgent"]
    with pytest.raises(CatalogError, match="service 'orders': policy.auto_approve.0"):
        parse_catalog(yaml.safe_dump(raw))


def test_route53_weighted_and_simple_switches(clean_clouds: Any) -> None:
    from include.capabilities.dns import DnsSide, RecordSetRef, dns
    from include.targets import load_targets
    from tests.test_failover_support import route53

    zone = route53().create_hosted_zone(Name="weights.example.", CallerReference="w1")["HostedZone"]["Id"]
    route53().change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": "api.weights.example.", "Type": "A", "TTL": 30,
                                                   "SetIdentifier": side, "Weight": weight,
                                                   "ResourceRecords": [{"Value": ip}]}}
        for side, weight, ip in (("us", 100, "10.0.0.1"), ("eu", 0, "10.0.0.2"))]})
    sides = (DnsSide("primary", ("10.0.0.1",), "us"), DnsSide("standby", ("10.0.0.2",), "eu", weight=50))
    target = load_targets().get("aws-prod")
    rs = RecordSetRef(target="aws-prod", cloud="aws", account=target.account, zone="weights.example",
                      name="api.weights.example", type="A", ttl=30, routing="weighted", sides=sides)
    cap = dns(target)
    assert cap.read(rs).active == "primary"
    change = cap.switch(rs, "standby")
    assert cap.in_sync(rs, change)
    weights = {r["SetIdentifier"]: r["Weight"] for r in route53().list_resource_record_sets(HostedZoneId=zone)[
        "ResourceRecordSets"] if "SetIdentifier" in r}
    assert weights == {"us": 0, "eu": 50} and cap.read(rs).active == "standby"
    simple = RecordSetRef(target="aws-prod", cloud="aws", account=target.account, zone="weights.example",
                          name="www.weights.example", type="A", ttl=30, routing="simple", sides=sides)
    cap.switch(simple, "standby")
    assert cap.read(simple).answer == ("10.0.0.2",)


def test_local_endpoints_go_down_and_up_for_real() -> None:
    import urllib.error
    import urllib.request

    from localdev.services import LocalServices

    with LocalServices("demo", primary=("127.0.0.2", 0), standby=("127.0.0.3", 0), control=("127.0.0.1", 0)) as svc:
        url = svc.url("primary") + "/healthz"
        assert json.loads(urllib.request.urlopen(url, timeout=2).read())["side"] == "primary"
        urllib.request.urlopen(urllib.request.Request(svc.control_url + "/primary/down", method="POST", data=b""),
                               timeout=2)
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=2)
        assert svc.status() == {"primary": False, "standby": True}
        svc.up("primary")
        assert urllib.request.urlopen(url, timeout=2).status == 200
