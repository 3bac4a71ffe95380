"""Backup building blocks without a cloud: the policies file, manifests, GFS retention, schedules, the change test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from include.backup.copier import plan_copy, reused_entry, unchanged
from include.backup.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    blob_key,
    new_point_id,
    point_time,
    referenced_blobs,
    select_point,
)
from include.backup.policies import DEFAULT_POLICIES_FILE, BackupPolicyError, Retention, load_policies, parse_policies
from include.backup.retention import PERIODS, plan_retention
from include.backup.schedule import is_due, previous_fire
from include.capabilities.object_store import ObjectInfo

T0 = datetime(2026, 11, 30, 6, 15, tzinfo=UTC)


# ---- the policies file --------------------------------------------------------------------------------------
def _policy(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "p-one",
        "source": {"target": "aws-prod", "container": "rb-src", "prefix": "data/"},
        "destination": {"target": "gcp-prod", "container": "rb-dst", "prefix": "aws/"},
        "schedule": "0 * * * *",
        "retention": {"hourly": 24, "daily": 7},
        "rpo": "2h",
    }
    for path, value in changes.items():
        node = base
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return base


def _parse(*policies: dict[str, Any]) -> Any:
    return parse_policies(yaml.safe_dump({"policies": list(policies)}))


def test_the_shipped_policies_file_is_valid_and_copies_across_clouds() -> None:
    config = load_policies(DEFAULT_POLICIES_FILE)
    assert [p.name for p in config.policies] == ["aws-customer-exports-to-gcp", "gcp-app-data-to-azure"]
    for policy in config.policies:
        assert policy.source.target.split("-")[0] != policy.destination.target.split("-")[0]
        assert policy.rpo <= timedelta(hours=24) and policy.destination.prefix.endswith("/")


@pytest.mark.parametrize(
    ("changes", "where", "message"),
    [
        ({"schedule": "61 * * * *"}, "policy p-one: schedule", "cron expression"),
        ({"schedule": "daily"}, "policy p-one: schedule", "cron expression"),
        ({"rpo": "2 hours"}, "policy p-one: rpo", "not a duration"),
        ({"retention": {"hourly": 0, "daily": 0, "weekly": 0, "monthly": 0}}, "policy p-one: retention",
         "keeps nothing"),
        ({"retention.daily": -1}, "policy p-one: retention.daily", "greater than or equal to 0"),
        ({"concurrency": 0}, "policy p-one: concurrency", "greater than or equal to 1"),
        ({"source.prefix": "../etc"}, "policy p-one: source.prefix", "relative"),
        ({"destination.container": "ab"}, "policy p-one: destination.container", "at least 3"),
        ({"colour": "red"}, "policy p-one: colour", "Extra inputs"),
        ({"immutability": {"mode": "forever", "days": 3}}, "policy p-one: immutability.mode", "governance"),
        ({"name": "Bad_Name"}, "policy Bad_Name: name", "pattern"),
    ],
)
def test_a_bad_policy_is_an_error_naming_the_policy_and_the_field(changes: dict[str, Any], where: str,
                                                                  message: str) -> None:
    with pytest.raises(BackupPolicyError) as error:
        _parse(_policy(**changes))
    assert where in str(error.value) and message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"destination.target": "nowhere"}, "policy p-one: unknown target 'nowhere'"),
        ({"destination.target": "aws-prod"}, "policy p-one: destination aws-prod:rb-dst/aws/ is in the same cloud"),
        ({"immutability": {"mode": "compliance", "days": 30}}, "policy p-one: immutability is supported on an S3"),
    ],
)
def test_cross_checks_against_the_targets_name_the_policy(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BackupPolicyError, match=message):
        _parse(_policy(**changes))


def test_two_policies_with_one_name_are_refused_and_good_ones_load() -> None:
    with pytest.raises(BackupPolicyError, match="duplicate policy names: p-one"):
        _parse(_policy(), _policy())
    config = _parse(_policy(), _policy(name="p-two", **{"destination.target": "azure-prod"}))
    assert config.get("p-two").rpo == timedelta(hours=2)
    with pytest.raises(BackupPolicyError, match="unknown backup policy 'p-three'; known: p-one, p-two"):
        config.get("p-three")
    with pytest.raises(BackupPolicyError, match="reserved policy names .*: drills"):
        _parse(_policy(name="drills"))


# ---- manifests ------------------------------------------------------------------------------------------------
def _entry(key: str, content: str, size: int = 10) -> ManifestEntry:
    md5 = f"{abs(hash(content)) % 16**32:032x}"
    return ManifestEntry(key=key, size=size, md5=md5, blob=blob_key("p/", md5, size))


def test_manifest_round_trips_and_point_ids_sort_by_time() -> None:
    entries = (_entry("a", "1"), _entry("b", "2"))
    manifest = Manifest("pol", new_point_id(T0, "scheduled__2026-11-30T06:15:00+00:00"), "run", T0.isoformat(),
                        T0.isoformat(), {"target": "x"}, {"prefix": "p/"}, entries, {"copied": 2})
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.point_id.startswith("20261130T061500Z-scheduled__2026-11-30T06_15_00+00_00")
    assert point_time(manifest.point_id) == T0
    assert referenced_blobs([manifest]) == {e.blob for e in entries}
    later = new_point_id(T0 + timedelta(seconds=1), "a")
    assert sorted([later, manifest.point_id]) == [manifest.point_id, later]
    with pytest.raises(ManifestError, match="unknown manifest format"):
        Manifest.from_json('{"format": "other", "entries": []}')
    with pytest.raises(ManifestError, match="not a hex MD5"):
        blob_key("p/", "XYZ", 1)


def test_select_point_by_run_id_timestamp_or_newest() -> None:
    points = [new_point_id(T0 + timedelta(hours=h), f"run-{h}") for h in range(3)]
    assert select_point(points) == points[-1]
    assert select_point(points, "run-1") == points[1]
    assert select_point(points, (T0 + timedelta(hours=1, minutes=30)).isoformat()) == points[1]
    with pytest.raises(ManifestError, match="no point at or before"):
        select_point(points, (T0 - timedelta(days=1)).isoformat())


# ---- what counts as unchanged ---------------------------------------------------------------------------------
def _info(**fields: Any) -> ObjectInfo:
    return ObjectInfo(container="c", key="k", **{"size": 10, **fields})


@pytest.mark.parametrize(
    ("listed", "previous", "expected"),
    [
        (_info(md5="a" * 32), None, (False, "new")),
        (_info(md5="a" * 32), {"md5": "a" * 32}, (True, "unchanged (md5)")),
        (_info(md5="a" * 32), {"md5": "b" * 32}, (False, "changed (md5)")),
        (_info(size=11, md5="a" * 32), {"md5": "a" * 32}, (False, "changed (size)")),
        # GCS composite objects list no MD5 but a CRC32C
        (_info(crc32c="0000000a"), {"md5": "a" * 32, "crc32c": "0000000a"}, (True, "unchanged (crc32c)")),
        # S3 listings: no MD5; the ETag (also a multipart one) stands for the content the previous point stored
        (_info(etag="abc-2"), {"md5": "a" * 32, "source_etag": "abc-2"}, (True, "unchanged (size + etag)")),
        (_info(etag="abd-2"), {"md5": "a" * 32, "source_etag": "abc-2"}, (False, "changed (etag)")),
        (_info(), {"md5": "a" * 32}, (False, "changed (no checksum to compare)")),
    ],
)
def test_unchanged_compares_size_and_a_real_checksum(listed: ObjectInfo, previous: dict[str, Any] | None,
                                                     expected: tuple[bool, str]) -> None:
    entry = None
    if previous is not None:
        md5 = previous.pop("md5")
        entry = ManifestEntry(key="k", size=10, md5=md5, blob=blob_key("", md5, 10), **previous)
    assert unchanged(listed, entry) == expected


def test_a_plan_is_made_from_the_listing_as_it_streams_and_reuses_unchanged_entries() -> None:
    md5 = "a" * 32
    kept = ManifestEntry(key="same", size=10, md5=md5, blob=blob_key("", md5, 10), source_etag=md5,
                         last_modified="2026-11-30T06:00:00.000000Z")
    moved = ManifestEntry(key="newer", size=10, md5=md5, blob=blob_key("", md5, 10), source_etag=md5,
                          source_version="v1", last_modified="2026-11-30T06:00:00.000000Z")
    listing = iter([  # one pass only, as a store's paged listing
        ObjectInfo(container="c", key="new", size=5, etag="b" * 32),
        ObjectInfo(container="c", key="same", size=10, etag=md5, last_modified="2026-11-30T06:00:00.000000Z"),
        ObjectInfo(container="c", key="newer", size=10, etag=md5, version="v2",
                   last_modified="2026-11-30T06:00:00.000000Z"),
    ])
    plan = plan_copy(listing, {"same": kept, "newer": moved}, started_at=T0, previous_point="p")
    assert [i.key for i in plan.listed] == ["new", "same", "newer"]
    assert [(item.info.key, item.action) for item in plan.items] == [("new", "copy"), ("same", "reuse"),
                                                                      ("newer", "reuse")]
    assert plan.bytes_total == 25 and plan.bytes_to_copy == 5
    # an entry the listing adds nothing to is the previous one itself; a newer version listed is recorded
    assert reused_entry(plan.items[1].info, kept) is kept
    updated = reused_entry(plan.items[2].info, moved)
    assert updated.source_version == "v2" and (updated.md5, updated.blob) == (moved.md5, moved.blob)
    assert moved.source_version == "v1"


# ---- retention ----------------------------------------------------------------------------------------------
def _points(*hours_ago: float, now: datetime = T0) -> list[str]:
    return [new_point_id(now - timedelta(hours=h), f"r{i}") for i, h in enumerate(hours_ago)]


def test_gfs_keeps_the_newest_point_of_each_period() -> None:
    # Every 6 hours for 20 days.
    points = _points(*[6 * i for i in range(80)])
    plan = plan_retention(points, Retention(hourly=2, daily=3, weekly=2, monthly=1))
    newest = max(points)
    assert plan.keep[newest] == ["newest", "hourly", "daily", "weekly", "monthly"]
    by_reason: dict[str, list[str]] = {}
    for point, reasons in plan.keep.items():
        for reason in reasons:
            by_reason.setdefault(reason, []).append(point)
    assert len(by_reason["hourly"]) == 2 and len(by_reason["daily"]) == 3 and len(by_reason["weekly"]) == 2
    # the daily ones are the newest of three different days
    assert len({point_time(p).date() for p in by_reason["daily"]}) == 3
    assert sorted(plan.prune + list(plan.keep)) == sorted(points)


def test_gfs_counts_periods_that_have_a_point() -> None:
    """Backups stopped for two weeks: the older points still count as the last N days (restic / borg)."""
    points = _points(0, 24 * 14, 24 * 15, 24 * 16, 24 * 17)
    plan = plan_retention(points, Retention(daily=3, weekly=0, monthly=0))
    assert sorted(plan.keep) == sorted(points[:3])
    assert plan.prune == sorted(points[3:])


def test_gfs_of_nothing_and_of_one_point() -> None:
    assert plan_retention([], Retention()).keep == {}
    only = _points(0)
    assert plan_retention(only, Retention(hourly=0, daily=1, weekly=0, monthly=0)).keep == {
        only[0]: ["newest", "daily"]}


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=60 * 24 * 120), min_size=1, max_size=60, unique=True),
    counts=st.tuples(*[st.integers(min_value=0, max_value=6)] * 4).filter(any),
)
def test_gfs_properties(offsets: list[int], counts: tuple[int, int, int, int]) -> None:
    points = [new_point_id(T0 - timedelta(minutes=m), f"r{m}") for m in offsets]
    retention = Retention(**dict(zip(PERIODS, counts, strict=True)))
    plan = plan_retention(points, retention)
    assert max(points) in plan.keep  # the newest always stays
    assert set(plan.keep).isdisjoint(plan.prune) and set(plan.keep) | set(plan.prune) == set(points)
    for name, count in zip(PERIODS, counts, strict=True):
        kept = [p for p, reasons in plan.keep.items() if name in reasons]
        periods = {PERIODS[name](point_time(p)) for p in points}
        assert len(kept) == min(count, len(periods))  # N periods, or every period there is
        for point in kept:  # each is the newest point of its period
            period = PERIODS[name](point_time(point))
            assert point == max(p for p in points if PERIODS[name](point_time(p)) == period)
    assert plan_retention(points, retention) == plan  # deterministic


# ---- schedules ----------------------------------------------------------------------------------------------
def test_a_policy_is_due_when_its_schedule_fired_since_its_newest_point() -> None:
    now = datetime(2026, 11, 30, 7, 40, tzinfo=UTC)
    assert previous_fire("30 * * * *", now) == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
    assert previous_fire("30 * * * *", datetime(2026, 11, 30, 7, 30, tzinfo=UTC)).minute == 30
    assert previous_fire("@daily", now) == datetime(2026, 11, 30, tzinfo=UTC)
    assert is_due("30 * * * *", None, now).due
    assert is_due("30 * * * *", datetime(2026, 11, 30, 7, 29, 59, tzinfo=UTC), now).due
    not_due = is_due("30 * * * *", datetime(2026, 11, 30, 7, 30, 5, tzinfo=UTC), now)
    assert not not_due.due and "next at 2026-11-30T08:30Z" in not_due.reason
    assert not is_due("@daily", datetime(2026, 11, 30, 0, 0, 1, tzinfo=UTC), now).due


def test_declared_permissions_match_what_the_object_stores_call() -> None:
    """The runbook's permissions (docs/backup.md) are the object stores' own, plus KMS for encrypted buckets."""
    from include.backup.runner import PERMISSIONS
    from include.clouds.aws.object_store import S3ObjectStore
    from include.clouds.azure.object_store import BlobObjectStore
    from include.clouds.gcp.object_store import GCSObjectStore

    stores = {"aws": S3ObjectStore, "gcp": GCSObjectStore, "azure": BlobObjectStore}
    for role in ("source", "destination"):
        assert set(PERMISSIONS[role]) == set(stores)
        for cloud, store in stores.items():
            assert {p for p in PERMISSIONS[role][cloud] if not p.startswith("kms:")} <= set(store.permissions), (
                role, cloud)
    assert PERMISSIONS["immutability"] == {"aws": S3ObjectStore.lock_permissions}
