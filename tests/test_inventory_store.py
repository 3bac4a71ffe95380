"""The inventory dataset: versions never overwritten, latest pointer, errors carried into the summary."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.inventory import store
from include.records import ResourceRecord


def _record(target: str, name: str, cloud: str = "aws", rtype: str = "aws.s3.bucket") -> ResourceRecord:
    return ResourceRecord(
        cloud=cloud, target=target, account="1", region="us-east-1", service="s3", resource_type=rtype,
        resource_id=f"arn:aws:s3:::{name}", name=name, tags={"owner": "x"},
        attributes={"encrypted": True, "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
    )


def test_record_round_trips_through_json() -> None:
    record = _record("t", "b1")
    again = ResourceRecord.from_dict(json.loads(record.to_json()))
    assert again == record
    assert again.attributes["created_at"] == "2026-01-02T03:04:05Z"
    assert record.key == "t|arn:aws:s3:::b1"


def test_publish_versions_and_latest(data_dir: Path) -> None:
    first = store.staging_path("manual__1", "aws-a")
    store.write_jsonl(first, [_record("aws-a", "b1"), _record("aws-a", "b2")])
    summary1 = store.publish(
        "manual__1", [first], [{"target": "aws-a", "errors": []}],
        collected_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert summary1["resources"] == 2 and summary1["complete"] is True
    assert summary1["by_cloud"] == {"aws": {"aws.s3.bucket": 2}}
    assert "date=2026-11-01" in summary1["path"]
    assert not first.parent.exists(), "staging is cleaned once published"

    second = store.staging_path("manual__2", "aws-a")
    store.write_jsonl(second, [_record("aws-a", "b3")])
    error = {"target": "gcp-a", "cloud": "gcp", "service": "*", "region": "global", "kind": "unreachable", "message": "x"}
    summary2 = store.publish(
        "manual__2", [second, store.staging_path("manual__2", "gcp-a")],
        [{"target": "aws-a", "errors": []}, {"target": "gcp-a", "errors": [error]}],
        collected_at=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert summary2["complete"] is False and summary2["errors"] == [error]
    # the first version is still there, untouched; latest moved to the second
    assert [r.name for r in store.read_jsonl(Path(summary1["path"]))] == ["b1", "b2"]
    assert store.latest()["run_id"] == "manual__2"
    assert [r.name for r in store.load_latest()] == ["b3"]
    assert json.loads((Path(summary2["path"]).parent / "summary.json").read_text())["errors"] == [error]


def test_run_ids_become_safe_path_segments(data_dir: Path) -> None:
    staged = store.staging_path("manual__2026-11-28T23:00:00+00:00", "aws-a")
    assert staged.parent.name == "manual__2026-11-28T23_00_00+00_00"
    assert staged.parent.parent == data_dir / "inventory" / "staging"
    assert store.staging_path("a/b c", "t").parent.name == "a_b_c"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(data_dir: Path) -> None:
    path = store.staging_path("manual__3", "aws-a")
    store.write_jsonl(path, [_record("aws-a", "b1")])
    before = path.read_bytes()

    def records_then_failure() -> Iterator[ResourceRecord]:
        yield _record("aws-a", "b2")
        raise RuntimeError("listing broke half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        store.write_jsonl(path, records_then_failure())
    assert path.read_bytes() == before, "the old file is intact"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name], "no temp file left behind"


def test_a_publish_that_fails_half_way_leaves_no_temp_file_and_latest_untouched(data_dir: Path) -> None:
    good = store.staging_path("manual__4", "aws-a")
    store.write_jsonl(good, [_record("aws-a", "b1")])
    first = store.publish("manual__4", [good], [{"target": "aws-a", "errors": []}])
    pointer = (store.inventory_dir() / "latest.json").read_text()

    staged = [store.staging_path("manual__5", "aws-a"), store.staging_path("manual__5", "gcp-a")]
    store.write_jsonl(staged[0], [_record("aws-a", "b2")])
    staged[1].write_text(_record("gcp-a", "c1").to_json() + "\n{not json\n")  # a corrupt staged file
    with pytest.raises(json.JSONDecodeError):
        store.publish("manual__5", staged, [{"target": "aws-a", "errors": []}, {"target": "gcp-a", "errors": []}])
    assert (store.inventory_dir() / "latest.json").read_text() == pointer, "latest still names the old version"
    assert store.latest()["path"] == first["path"]
    leftovers = [p for p in store.inventory_dir().rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [], "no temp file left behind"
