"""Waivers (apply, expiry, malformed files) and the scan-to-scan diff (new / open / resolved), on moto.

The estate is a handful of S3 buckets created through S3Hook; the versioning rule is the one exercised.
Between two scans a bucket is fixed in the emulator, another deleted, another created.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.compliance.engine import failing, scan
from include.compliance.model import Finding, Waiver
from include.compliance.store import (
    diff,
    inventory_gaps,
    latest_pointer,
    load_history,
    load_latest_findings,
    load_scan,
    save_scan,
)
from include.compliance.waivers import WaiverError, load_waivers, parse_waivers
from include.records import ResourceRecord

RULE = "aws_s3_bucket_versioning"
NOW = datetime.now(UTC)


def _s3() -> Any:
    from include.clouds.aws.clients import client_for

    return client_for("aws_estate", "s3", "us-east-1")


def _make_bucket(name: str, versioned: bool) -> None:
    s3 = _s3()
    s3.create_bucket(Bucket=name)
    if versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


def _collect(target_name: str = "aws-prod", conn_id: str | None = None) -> tuple[list[ResourceRecord], bool]:
    from include.inventory.collect import collect_target
    from include.targets import load_targets

    target = load_targets().get(target_name)
    if conn_id:
        target = target.model_copy(update={"conn_id": conn_id})
    result = collect_target(target, services=["s3"])
    return result.records, result.complete


def _scan(records: list[ResourceRecord], now: datetime = NOW, waivers: tuple[Waiver, ...] = ()) -> list[Finding]:
    from include.targets import load_targets

    return scan(records, load_targets(), now=now, rules=[RULE], waivers=waivers)


def _by_name(findings: list[Finding]) -> dict[str, Finding]:
    return {f.resource_name: f for f in findings}


@pytest.fixture
def buckets(clean_clouds: Any) -> list[ResourceRecord]:
    """wd-keep-open, wd-fix-me, wd-delete-me unversioned, wd-fine versioned; collected."""
    for name, versioned in (("wd-keep-open", False), ("wd-fix-me", False), ("wd-delete-me", False), ("wd-fine", True)):
        _make_bucket(name, versioned)
    records, complete = _collect()
    assert complete
    return records


# ---- waivers ---------------------------------------------------------------------------------------------


def test_matching_unexpired_waiver_waives_the_finding(buckets: list[ResourceRecord]) -> None:
    waiver = Waiver(rule=RULE, resource="arn:aws:s3:::wd-keep-*", reason="scratch data", owner="data-team",
                    expires=(NOW + timedelta(days=30)).date().isoformat())
    found = _by_name(_scan(buckets, waivers=(waiver,)))
    assert found["wd-keep-open"].status == "waived"
    assert found["wd-keep-open"].waiver == {
        "rule": RULE, "resource": "arn:aws:s3:::wd-keep-*", "reason": "scratch data", "owner": "data-team",
        "expires": waiver.expires,
    }
    assert found["wd-fix-me"].status == "fail" and found["wd-fix-me"].waiver is None  # pattern does not match
    assert found["wd-fine"].status == "pass"  # a waiver never touches a pass
    failed = {f.resource_name for f in failing(list(found.values()), ["medium"])}
    assert failed == {"wd-fix-me", "wd-delete-me"}, "waived findings never fail a run"


def test_waiver_matches_by_name_and_star_rule_and_lasts_through_its_last_day(buckets: list[ResourceRecord]) -> None:
    today = NOW.date().isoformat()
    waiver = Waiver(rule="*", resource="wd-fix-me", reason="migration", owner="ops", expires=today)
    assert _by_name(_scan(buckets, waivers=(waiver,)))["wd-fix-me"].status == "waived"


def test_expired_waiver_reopens_the_finding_and_says_when_it_expired(buckets: list[ResourceRecord]) -> None:
    yesterday = (NOW - timedelta(days=1)).date().isoformat()
    waiver = Waiver(rule=RULE, resource="arn:aws:s3:::wd-keep-open", reason="until the migration", owner="ops",
                    expires=yesterday)
    finding = _by_name(_scan(buckets, waivers=(waiver,)))["wd-keep-open"]
    assert finding.status == "fail" and finding.waiver is None
    assert f"waiver expired on {yesterday}" in finding.detail
    assert finding.evidence["expired_waiver"]["owner"] == "ops"


def test_waivers_file_loads_and_validates_rule_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "waivers.yaml"
    file.write_text(
        "waivers:\n"
        f"  - {{rule: {RULE}, resource: 'arn:aws:s3:::scratch-*', reason: scratch, owner: ops, expires: 2027-03-31}}\n"
    )
    monkeypatch.setenv("RUNBOOKS_WAIVERS_FILE", str(file))
    assert load_waivers() == [Waiver(RULE, "arn:aws:s3:::scratch-*", "scratch", "ops", "2027-03-31")]
    assert load_waivers(Path(__file__).resolve().parents[1] / "config" / "compliance" / "waivers.yaml") == []
    monkeypatch.setenv("RUNBOOKS_WAIVERS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(WaiverError, match="not found"):
        load_waivers()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("waivers: [{rule: x}\n", "not valid YAML"),
        ("- rule: x\n", "expected a mapping with one key, 'waivers'"),
        ("waivers: {rule: x}\n", "'waivers' must be a list"),
        ("waivers:\n  - {rule: aws_s3_bucket_versioning, resource: '*', owner: ops, expires: 2027-01-01}\n",
         "waivers[0]: missing reason"),
        ("waivers:\n  - {rule: aws_s3_bucket_versioning, resource: '*', reason: r, owner: ops, expires: soon}\n",
         "waivers[0]: expires must be a date"),
        ("waivers:\n  - {rule: aws_no_such_rule, resource: '*', reason: r, owner: ops, expires: 2027-01-01}\n",
         "waivers[0]: unknown rule 'aws_no_such_rule'"),
        ("waivers:\n  - {rule: '*', resource: '*', reason: r, owner: ops, expires: 2027-01-01, until: x}\n",
         "waivers[0]: unknown field(s) until"),
        ("waivers:\n  - {rule: '*', resource: '*', reason: r, owner: 7, expires: 2027-01-01}\n",
         "waivers[0]: owner must be a non-empty string"),
    ],
)
def test_malformed_waivers_file_is_a_clear_error(text: str, message: str) -> None:
    from include.compliance.registry import rule_ids

    with pytest.raises(WaiverError) as info:
        parse_waivers(text, source="waivers.yaml", known_rules=set(rule_ids()))
    assert message in str(info.value) and "waivers.yaml" in str(info.value)


# ---- diff across scans -----------------------------------------------------------------------------------


def test_new_open_resolved_across_two_scans(buckets: list[ResourceRecord], data_dir: Path) -> None:
    first_at = NOW - timedelta(days=1)
    first = diff(load_latest_findings(), _scan(buckets, now=first_at), scanned_at=first_at)
    assert {f.resource_name: f.lifecycle for f in first if f.status == "fail"} == {
        "wd-keep-open": "new", "wd-fix-me": "new", "wd-delete-me": "new",
    }
    assert _by_name(first)["wd-fine"].lifecycle is None
    save_scan(first, scanned_at=first_at, scan_id="scan-1")

    # Between the scans: fix one bucket, delete one, create a new offender.
    s3 = _s3()
    s3.put_bucket_versioning(Bucket="wd-fix-me", VersioningConfiguration={"Status": "Enabled"})
    s3.delete_bucket(Bucket="wd-delete-me")
    _make_bucket("wd-brand-new", versioned=False)
    records, complete = _collect()
    assert complete

    second = diff(load_latest_findings(), _scan(records), scanned_at=NOW)
    found = _by_name(second)
    assert (found["wd-keep-open"].status, found["wd-keep-open"].lifecycle) == ("fail", "open")
    assert found["wd-keep-open"].first_seen == first_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "open keeps first_seen"
    assert (found["wd-fix-me"].status, found["wd-fix-me"].lifecycle) == ("pass", "resolved")
    assert (found["wd-delete-me"].status, found["wd-delete-me"].lifecycle) == ("pass", "resolved")
    assert found["wd-delete-me"].evidence["gone"] is True
    assert (found["wd-brand-new"].status, found["wd-brand-new"].lifecycle) == ("fail", "new")
    assert found["wd-fine"].lifecycle is None
    saved = save_scan(second, scanned_at=NOW, scan_id="scan-2")

    # the store: latest pointer, per-scan document, one trend line per scan (a re-save replaces its line)
    assert latest_pointer() == {"scan_id": "scan-2", "path": saved["path"], "scanned_at": saved["scanned_at"]}
    assert [f.finding_id for f in load_scan(saved["path"])["findings"]] == [f.finding_id for f in second]
    save_scan(second, scanned_at=NOW, scan_id="scan-2")
    # a retried diff step of scan-2 compares with scan-1, not with its own earlier save
    assert {f.finding_id for f in load_latest_findings(before="scan-2")} == {f.finding_id for f in first}
    history = load_history()
    assert [h["scan_id"] for h in history] == ["scan-1", "scan-2"]
    assert history[1]["by_lifecycle"] == {"new": 1, "open": 1, "resolved": 2}
    assert history[1]["by_status"] == {"fail": 2, "pass": 3, "waived": 0}
    assert history[1]["by_severity"]["medium"]["fail"] == 2 and history[1]["by_cloud"]["aws"]["fail"] == 2
    assert json.loads((data_dir / "compliance" / "latest.json").read_text())["scan_id"] == "scan-2"

    # a third scan: a resolved finding is not reported again, a regression is new again
    s3.put_bucket_versioning(Bucket="wd-fix-me", VersioningConfiguration={"Status": "Suspended"})
    records, _ = _collect()
    third = _by_name(diff(load_latest_findings(), _scan(records), scanned_at=NOW + timedelta(days=1)))
    assert "wd-delete-me" not in third
    assert (third["wd-fix-me"].status, third["wd-fix-me"].lifecycle) == ("fail", "new")


def test_incomplete_target_keeps_previous_findings_open(buckets: list[ResourceRecord], data_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from localdev.emulators import free_port

    previous = diff([], _scan(buckets), scanned_at=NOW - timedelta(days=1))
    # aws-prod cannot be reached this time: the collector reports it, and returns no records.
    monkeypatch.setenv("AIRFLOW_CONN_AWS_UNREACHABLE", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1",
                  "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}}},
    }))
    records, complete = _collect(conn_id="aws_unreachable")
    assert records == [] and complete is False

    current = diff(previous, _scan(records), scanned_at=NOW, incomplete_targets=["aws-prod"])
    found = _by_name(current)
    assert {n: (f.status, f.lifecycle) for n, f in found.items() if n != "wd-fine"} == {
        "wd-keep-open": ("fail", "open"), "wd-fix-me": ("fail", "open"), "wd-delete-me": ("fail", "open"),
    }
    assert "inventory of target aws-prod was incomplete" in found["wd-fix-me"].detail
    assert "wd-fine" not in found, "a pass that was not re-checked is simply not reported"
    # carried twice, the note is not repeated
    again = _by_name(diff(current, [], scanned_at=NOW + timedelta(hours=1), incomplete_targets=["aws-prod"]))
    assert again["wd-fix-me"].detail.count("not re-checked") == 1
    assert again["wd-fix-me"].first_seen == previous[0].first_seen

    # the same empty result from a complete inventory would resolve them
    resolved = _by_name(diff(previous, [], scanned_at=NOW))
    assert {f.lifecycle for f in resolved.values()} == {"resolved"}


def test_targets_and_rules_outside_the_scan_are_carried_over(buckets: list[ResourceRecord]) -> None:
    previous = diff([], _scan(buckets), scanned_at=NOW - timedelta(days=1))
    other_target = diff(previous, [], scanned_at=NOW, scanned_targets=["gcp-prod"])
    assert {f.resource_name: f.lifecycle for f in other_target if f.status == "fail"} == {
        "wd-keep-open": "open", "wd-fix-me": "open", "wd-delete-me": "open",
    }
    other_rule = diff(previous, [], scanned_at=NOW, scanned_rules=["aws_s3_bucket_not_public"])
    assert all(f.lifecycle != "resolved" for f in other_rule)


def test_waived_finding_is_tracked_not_resolved(buckets: list[ResourceRecord]) -> None:
    previous = diff([], _scan(buckets), scanned_at=NOW - timedelta(days=1))
    waiver = Waiver(rule=RULE, resource="wd-keep-open", reason="r", owner="o",
                    expires=(NOW + timedelta(days=1)).date().isoformat())
    found = _by_name(diff(previous, _scan(buckets, waivers=(waiver,)), scanned_at=NOW))
    assert (found["wd-keep-open"].status, found["wd-keep-open"].lifecycle) == ("waived", "open")


def test_inventory_gaps_are_targets_absent_or_incomplete() -> None:
    summary = {"targets": [{"target": "aws-prod", "complete": True}, {"target": "gcp-prod", "complete": False}]}
    assert inventory_gaps(summary, ["aws-prod", "gcp-prod", "azure-prod"]) == ["azure-prod", "gcp-prod"]
    assert inventory_gaps(summary, ["aws-prod"]) == []
