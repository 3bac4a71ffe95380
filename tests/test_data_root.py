"""The data root as a URL: every store, report, history and the audit trail on S3 (moto) or on file://.

With ``RUNBOOKS_DATA_DIR=s3://<aws conn>@<bucket>/<prefix>`` the data lands in the bucket (listed through
S3Hook, as production would) and nothing is written to local disk; with ``file://`` it lands in the local
folder. Appended logs (audit trail, histories, notifications) are one object per record on the object
store, so concurrent writers never lose a record.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include import fileio
from include.audit import AuditContext, read_audit, write_audit
from include.backup import report as backup_report
from include.compliance import store as compliance_store
from include.compliance.model import Finding
from include.failover import history as failover_history
from include.inventory import store as inventory_store
from include.paths import PROJECT_ROOT, as_data_path, data_dir, data_root
from include.records import ResourceRecord
from localdev import emulators as emu


@dataclass
class Root:
    kind: str  # "s3" | "file"
    url: str
    bucket: str | None
    prefix: str
    local: Path | None  # the folder of a file:// root

    def keys(self) -> list[str]:
        """Every object / file under the root, relative to it."""
        if self.bucket:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            found = S3Hook(aws_conn_id=emu.AWS_CONN_ID).list_keys(self.bucket, prefix=f"{self.prefix}/")
            return sorted(k[len(self.prefix) + 1:] for k in found)
        assert self.local is not None
        return sorted(str(p.relative_to(self.local)) for p in self.local.rglob("*") if p.is_file())


def _local_files(folder: Path) -> dict[str, float]:
    if not folder.exists():
        return {}
    return {str(p): p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(params=["s3", "file"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Root]:
    """RUNBOOKS_DATA_DIR as an S3 URL (moto, the estate's AWS connection) or a file:// URL."""
    # Local folders a wrong path handling would write to: the project's data dir, the session's default
    # data dir, and a folder named after the URL scheme ("s3:" is what Path("s3://...") collapses to).
    watched = [PROJECT_ROOT / "data", Path(os.environ["RUNBOOKS_DATA_DIR"]), Path.cwd(), PROJECT_ROOT]
    if request.param == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        request.getfixturevalue("emulators")
        bucket = f"data-root-{uuid.uuid4().hex[:12]}"
        S3Hook(aws_conn_id=emu.AWS_CONN_ID).create_bucket(bucket_name=bucket)
        url = f"s3://{emu.AWS_CONN_ID}@{bucket}/runbooks"
        value = Root("s3", url, bucket, "runbooks", None)
    else:
        folder = tmp_path / "file-root"
        value = Root("file", folder.as_uri(), None, "", folder)
    before = {str(w): _local_files(w / "data") if w in (Path.cwd(), PROJECT_ROOT) else _local_files(w)
              for w in watched}
    monkeypatch.setenv("RUNBOOKS_DATA_DIR", value.url)
    yield value
    if value.kind == "s3":
        for w in watched:
            after = _local_files(w / "data") if w in (Path.cwd(), PROJECT_ROOT) else _local_files(w)
            assert after == before[str(w)], f"an S3 data root wrote to local disk under {w}"
            assert not (w / "s3:").exists(), f"a URL was treated as a local path under {w}"


def _record(target: str, name: str) -> ResourceRecord:
    return ResourceRecord(
        cloud="aws", target=target, account="1", region="us-east-1", service="s3", resource_type="aws.s3.bucket",
        resource_id=f"arn:aws:s3:::{name}", name=name, tags={"owner": "x"}, attributes={"encrypted": True},
    )


def _finding(name: str, status: str = "fail") -> Finding:
    return Finding(
        finding_id=f"r1|t|{name}", rule_id="r1", title="bucket encrypted", severity="high", status=status,  # type: ignore[arg-type]
        cloud="aws", target="t", account="1", region="us-east-1", resource_type="aws.s3.bucket",
        resource_id=f"arn:aws:s3:::{name}", resource_name=name, detail="not encrypted", remediation="encrypt",
        frameworks={"cis": ["2.1.1"]},
    )


def test_the_root_is_the_kind_the_url_says(root: Root) -> None:
    path = data_root()
    assert str(path).rstrip("/") == (root.url if root.kind == "s3" else str(root.local))
    # str() of any data path round-trips (pointer files store it)
    child = path / "a" / "b.json"
    assert str(as_data_path(str(child))) == str(child)
    if root.kind == "s3":
        assert not isinstance(path, Path)
        with pytest.raises(ValueError, match="object store"):
            data_dir()  # callers that need a real folder are told, not handed "s3:/..."
    else:
        assert data_dir() == root.local


def test_inventory_publish_and_latest(root: Root) -> None:
    staged = [inventory_store.staging_path("manual__1", "aws-a"), inventory_store.staging_path("manual__1", "aws-b")]
    inventory_store.write_jsonl(staged[0], [_record("aws-a", "b1"), _record("aws-a", "b2")])
    inventory_store.write_jsonl(staged[1], [_record("aws-b", "b3")])
    assert sorted(k for k in root.keys() if k.startswith("inventory/staging/")) == [
        "inventory/staging/manual__1/aws-a.jsonl", "inventory/staging/manual__1/aws-b.jsonl"]

    summary = inventory_store.publish(
        "manual__1", [str(p) for p in staged], [{"target": "aws-a", "errors": []}, {"target": "aws-b", "errors": []}],
        collected_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    assert summary["resources"] == 3 and summary["complete"] is True
    assert summary["path"] == f"{str(data_root()).rstrip('/')}/inventory/date=2026-11-01/run=manual__1/inventory.jsonl"
    assert root.keys() == [
        "inventory/date=2026-11-01/run=manual__1/inventory.jsonl",
        "inventory/date=2026-11-01/run=manual__1/summary.json",
        "inventory/latest.json",
    ], "published once, staging removed"
    assert inventory_store.latest()["run_id"] == "manual__1"
    assert [r.name for r in inventory_store.load_latest()] == ["b1", "b2", "b3"]
    assert [r.name for r in inventory_store.read_jsonl(summary["path"])] == ["b1", "b2", "b3"]


def test_compliance_scan_history_and_latest(root: Root) -> None:
    first = compliance_store.save_scan([_finding("b1"), _finding("b2")], scanned_at=datetime(2026, 11, 1, tzinfo=UTC),
                                       scan_id="s1")
    second = compliance_store.save_scan([_finding("b1")], scanned_at=datetime(2026, 11, 2, tzinfo=UTC), scan_id="s2")
    # a retried save of the same scan replaces its history line instead of adding a twin
    compliance_store.save_scan([_finding("b1")], scanned_at=datetime(2026, 11, 2, tzinfo=UTC), scan_id="s2")

    assert compliance_store.latest_pointer() == {k: second[k] for k in ("scan_id", "path", "scanned_at")}
    assert [line["scan_id"] for line in compliance_store.load_history()] == ["s1", "s2"]
    assert [line["findings"] for line in compliance_store.load_history()] == [2, 1]
    assert [f.resource_name for f in compliance_store.load_latest_findings()] == ["b1"]
    assert [f.resource_name for f in compliance_store.load_latest_findings(before="s2")] == ["b1", "b2"]
    assert compliance_store.load_scan(first["path"])["scan_id"] == "s1"
    evaluated = compliance_store.scan_dir("s2") / "evaluated.json"
    assert compliance_store.write_findings(evaluated, [_finding("b9")]) == 1
    assert [f.resource_name for f in compliance_store.read_findings(str(evaluated))] == ["b9"]
    assert root.keys() == ["compliance/history.jsonl", "compliance/latest.json", "compliance/scans/s1/findings.json",
                           "compliance/scans/s2/evaluated.json", "compliance/scans/s2/findings.json"]


def test_audit_records_written_and_read_filtered(root: Root) -> None:
    runs = [AuditContext(runbook=rb, run_id=f"{rb}__{i}", actor="api", dry_run=False,
                         params={"password": "hunter2-not-stored"})
            for rb in ("remediate", "failover_service") for i in range(2)]

    def write(i: int) -> None:
        ctx = runs[i % len(runs)]
        write_audit(ctx.record(step="apply", action="s3:PutBucketEncryption", outcome="changed",
                               resource=f"arn:aws:s3:::b{i}"))

    with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent writers: no record may be lost
        list(pool.map(write, range(24)))

    everything = read_audit()
    assert len(everything) == 24
    assert [r.time for r in everything] == sorted(r.time for r in everything)
    assert {r.resource for r in everything} == {f"arn:aws:s3:::b{i}" for i in range(24)}
    assert len(read_audit(runbook="remediate")) == 12
    assert len(read_audit(run_id="failover_service__1")) == 6
    assert [r.resource for r in read_audit(resource="arn:aws:s3:::b5")] == ["arn:aws:s3:::b5"]
    today = everything[0].time[:10]
    assert read_audit(since="2999-01-01") == [] and len(read_audit(since=today, until=today)) == 24
    keys = root.keys()
    if root.kind == "s3":
        assert len(keys) == 24 and all(k.startswith(f"audit/{today}.jsonl.d/") for k in keys), keys
    else:
        assert keys == [f"audit/{today}.jsonl"]
    text = "".join(fileio.read_lines(data_root() / "audit" / f"{today}.jsonl"))
    assert "hunter2-not-stored" not in text, "records are redacted before they are stored"


def test_failover_result_and_history(root: Root) -> None:
    failover_history.write_result({"run_id": "manual__f1", "service": "shop", "status": "verified"})
    failover_history.append_history({"run_id": "manual__f1", "service": "shop", "status": "verified", "rto": 9.6})
    failover_history.append_history({"run_id": "manual__f2", "service": "billing", "status": "failed"})
    assert [e["run_id"] for e in failover_history.read_history()] == ["manual__f1", "manual__f2"]
    assert [e["rto"] for e in failover_history.read_history(service="shop")] == [9.6]
    result = json.loads(failover_history.result_path("manual__f1").read_text())
    assert result["status"] == "verified"
    keys = root.keys()
    assert "failover/manual__f1/result.json" in keys
    history_keys = [k for k in keys if k.startswith("failover/history.jsonl")]
    assert len(history_keys) == (2 if root.kind == "s3" else 1)


def test_backup_report_and_history(root: Root) -> None:
    report = {"policy": "nightly", "run_id": "scheduled__1", "status": "succeeded", "objects": 3}
    path = backup_report.write_run_report(report)
    assert backup_report.read_run_report("nightly", "scheduled__1") == report
    assert backup_report.read_run_report("nightly", "missing") is None
    for i, status in enumerate(("succeeded", "failed")):
        backup_report.append_history(backup_report.HistoryLine(
            time=f"2026-11-0{i + 1}T00:00:00Z", policy="nightly", run_id=f"scheduled__{i}", status=status,
            point_id=None, objects=3, copied=1, reused=2, deduplicated=0, failed=0, bytes_copied=10, bytes_total=30,
            seconds=1.5, rpo_age_seconds=60.0, rpo_seconds=3600.0, rpo_breached=False, validation_success=True))
    assert [h.status for h in backup_report.read_history("nightly")] == ["succeeded", "failed"]
    page = backup_report.render_history_html("nightly")
    assert page.read_text().count("<svg") == 3
    keys = root.keys()
    assert {"backup/nightly/runs/scheduled__1.json", "backup/nightly/history.html"} <= set(keys)
    assert str(path).endswith("backup/nightly/runs/scheduled__1.json")


def test_notification_file_record(root: Root) -> None:
    from include.notify import Notification, notifications_path, send

    result = send(Notification(title="scan done", text="2 new findings", runbook="compliance_scan"), channels=[])
    assert result["file"] == "sent"
    send(Notification(title="second", text="t"), channels=[])
    lines = [json.loads(line) for line in fileio.read_lines(notifications_path())]
    assert [n["title"] for n in lines] == ["scan done", "second"]
    assert all(k.startswith("notifications/notifications.jsonl") for k in root.keys())


def test_a_failed_write_leaves_the_object_as_it_was(root: Root) -> None:
    target = data_root() / "inventory" / "latest.json"
    fileio.atomic_write_text(target, '{"run_id": "old"}')
    with pytest.raises(RuntimeError), fileio.atomic_text_writer(target) as handle:
        handle.write('{"run_id": "half')
        raise RuntimeError("collector died")
    assert json.loads(target.read_text()) == {"run_id": "old"}
    assert root.keys() == ["inventory/latest.json"]


def test_object_store_log_records_are_one_object_each(root: Root) -> None:
    log = data_root() / "x" / "log.jsonl"
    written = [fileio.append_line(log, json.dumps({"n": n})) for n in range(3)]
    assert [json.loads(line)["n"] for line in fileio.read_lines(log)] == [0, 1, 2]
    assert fileio.log_names(data_root() / "x") == ["log.jsonl"]
    if root.kind == "s3":
        assert len({str(w) for w in written}) == 3 and all(str(w).startswith(f"{log}.d/") for w in written)
    else:
        assert written == [log, log, log]
    with pytest.raises(ValueError, match="one line"):
        fileio.append_line(log, "two\nlines")


def test_a_tool_that_writes_to_disk_publishes_under_the_root(root: Root) -> None:
    dest = data_root() / "compliance" / "scans" / "s1" / "validation"
    with fileio.local_folder(dest) as folder:
        assert isinstance(folder, Path)
        (folder / "data_docs" / "index.html").parent.mkdir(parents=True)
        (folder / "data_docs" / "index.html").write_text("<html>docs</html>")
        (folder / "results.json").write_text("{}")
        html = fileio.published(folder / "data_docs" / "index.html", folder, dest)
    assert as_data_path(html).read_text() == "<html>docs</html>"
    assert root.keys() == ["compliance/scans/s1/validation/data_docs/index.html",
                           "compliance/scans/s1/validation/results.json"]
    if root.kind == "s3":
        assert not folder.exists(), "the temporary folder is removed once uploaded"
