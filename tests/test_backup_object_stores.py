"""The backup_object_stores engine on the three emulators, through the providers' hooks.

Every backup here runs the production code (:func:`include.backup.runner.back_up`) on real emulators; the
only seams are a clock (points hours apart without waiting hours), a ``progress`` callback (to stop an
emulator at a chosen moment) and, for the overwrite-during-copy case, a source store that delegates to the
real one and overwrites the object after its first chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.audit import read_audit
from include.backup.copier import Outcome, Place
from include.backup.manifest import Manifest, list_points, point_key, read_manifest
from include.backup.policies import BackupPolicy, load_policies
from include.backup.report import read_history, read_run_report
from include.backup.runner import BackupConfigError, BackupFailed, back_up, places
from include.capabilities import capability
from include.capabilities.object_store import CHUNK_SIZE, ObjectInfo, ObjectStore, Pin
from include.changes.ledger import Ledger
from include.targets import Target, load_targets
from localdev.seed import object_body, seed_estate, seeded_objects

KIB, MIB = 1024, 1024 * 1024
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
PROJECT_ROOT = Path(__file__).resolve().parents[1]


# ---- helpers ------------------------------------------------------------------------------------------------
class Clock:
    """A settable clock: points hours or days apart, without waiting."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def target(cloud: str) -> Target:
    return load_targets().select(cloud=cloud)[0]


def store(cloud: str) -> ObjectStore:
    found: ObjectStore = capability("object_store", target(cloud))
    return found


def make_container(cloud: str, name: str, *, versioned: bool = False, object_lock: bool = False) -> None:
    if cloud == "aws":
        from include.clouds.aws.clients import client_for

        client = client_for(target("aws"), "s3")
        client.create_bucket(Bucket=name, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    elif cloud == "gcp":
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        GCSHook(gcp_conn_id=target("gcp").conn_id).get_conn().create_bucket(name, project=target("gcp").account)
    else:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        WasbHook(wasb_conn_id=target("azure").conn_id).blob_service_client.create_container(name)


def make_policy(name: str, source: tuple[str, str, str], destination: tuple[str, str, str], **extra: Any) -> BackupPolicy:
    """A policy between (cloud, container, prefix) places of the local targets."""
    return BackupPolicy.model_validate({
        "name": name,
        "source": {"target": target(source[0]).name, "container": source[1], "prefix": source[2]},
        "destination": {"target": target(destination[0]).name, "container": destination[1], "prefix": destination[2]},
        "retention": {"hourly": 48, "daily": 7, "weekly": 4, "monthly": 6},
        "rpo": "2h",
        **extra,
    })


def put(cloud: str, container: str, key: str, data: bytes) -> ObjectInfo:
    return store(cloud).write(container, key, [data])


def read(place: Place, key: str) -> bytes:
    return b"".join(place.store.read(place.container, key))


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def blobs_under(place: Place) -> dict[str, ObjectInfo]:
    return {i.key: i for i in place.store.list_objects(place.container, f"{place.prefix}blobs/")}


def everything(place: Place) -> dict[str, tuple[int, str | None]]:
    return {i.key: (i.size, i.etag) for i in place.store.list_objects(place.container, place.prefix)}


def points_of(place: Place) -> list[str]:
    return list_points(place.store, place.container, place.prefix)


def manifest_of(place: Place, point: str) -> Manifest:
    return read_manifest(place.store, place.container, place.prefix, point)


def assert_restorable(place: Place, manifest: Manifest, contents: dict[str, bytes] | None = None) -> None:
    """Every blob the manifest names exists and holds exactly the bytes its entry describes."""
    for entry in manifest.entries:
        data = read(place, entry.blob)
        assert (len(data), md5(data)) == (entry.size, entry.md5), entry.key
        if contents is not None:
            assert data == contents[entry.key], entry.key


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger.from_url(f"sqlite:///{tmp_path / 'state.db'}")


def run(policy: BackupPolicy, ledger: Ledger, run_id: str, clock: Clock | None = None, **kwargs: Any) -> dict[str, Any]:
    return back_up(policy, run_id=run_id, dry_run=kwargs.pop("dry_run", False), ledger=ledger,
                   clock=clock or Clock(), **kwargs)


# ---- the demo estate's two policies ---------------------------------------------------------------------------
DEMO = {
    "aws-customer-exports-to-gcp": ("aws", "gcp", "rb-prod-customer-exports"),
    "gcp-app-data-to-azure": ("gcp", "azure", "rb-gcp-app-data-eu"),
}


def _estate_entry(container: str) -> dict[str, Any]:
    from localdev.seed import load_spec

    spec = load_spec()
    entries = [*spec["aws"]["s3_buckets"], *spec["gcp"]["buckets"]]
    return next(e for e in entries if e["name"] == container)


@pytest.mark.parametrize("name", sorted(DEMO))
def test_demo_policy_is_incremental_and_every_point_restores(
    clean_clouds: Any, data_dir: Path, ledger: Ledger, name: str,
) -> None:
    src_cloud, dst_cloud, container = DEMO[name]
    seed_estate(clouds=(src_cloud, dst_cloud))
    policy = load_policies().get(name)
    source, destination = places(policy)
    seeded = {k: object_body(container, k, size) for k, size in seeded_objects(_estate_entry(container)).items()}
    assert len({len(v) for v in seeded.values()}) == 2 and max(map(len, seeded.values())) >= MIB  # mixed sizes
    clock = Clock()

    first = run(policy, ledger, "r1", clock)
    assert first["status"] == "succeeded", first["errors"]
    assert first["totals"] | {"listed": len(seeded), "copied": len(seeded), "reused": 0, "failed": 0} == first["totals"]
    assert first["totals"]["bytes_copied"] == sum(map(len, seeded.values()))
    assert first["validation"]["success"] is True
    one = manifest_of(destination, first["point_id"])
    assert {e.key: e.md5 for e in one.entries} == {k: md5(v) for k, v in seeded.items()}
    assert_restorable(destination, one, seeded)

    clock.advance(hours=1)
    second = run(policy, ledger, "r2", clock)
    assert second["status"] == "succeeded"
    assert (second["totals"]["copied"], second["totals"]["reused"], second["totals"]["bytes_copied"]) == (
        0, len(seeded), 0)
    assert second["totals"]["bytes_read"] == 0, "unchanged objects are not read either"

    changed_key = sorted(seeded)[1]
    source.store.write(source.container, changed_key, [b"changed content"])
    clock.advance(hours=1)
    third = run(policy, ledger, "r3", clock)
    assert (third["totals"]["copied"], third["totals"]["reused"]) == (1, len(seeded) - 1)
    assert third["totals"]["bytes_copied"] == len(b"changed content")
    three = manifest_of(destination, third["point_id"])
    assert three.by_key[changed_key].md5 == md5(b"changed content")
    assert_restorable(destination, three, {**seeded, changed_key: b"changed content"})
    # every point in time still restores its own content
    assert points_of(destination) == [first["point_id"], second["point_id"], third["point_id"]]
    assert_restorable(destination, manifest_of(destination, first["point_id"]), seeded)
    # unchanged objects are stored once: one blob per distinct content across all points
    assert len(blobs_under(destination)) == len(seeded) + 1
    history = read_history(name)
    assert [(h.run_id, h.copied, h.reused, h.validation_success) for h in history] == [
        ("r1", len(seeded), 0, True), ("r2", 0, len(seeded), True), ("r3", 1, len(seeded) - 1, True)]
    assert all(h.rpo_age_seconds == 0 and not h.rpo_breached for h in history)
    assert (data_dir / "backup" / name / "history.html").read_text().count("<svg") == 3


def test_point_in_time_keeps_old_content_after_changes_and_deletions(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    make_container("gcp", "rb-pit-src")
    make_container("azure", "pit-dst")
    old = {f"d/{n}": os.urandom(size) for n, size in (("a", 3 * KIB), ("b", 70 * KIB), ("c", 1))}
    for key, data in old.items():
        put("gcp", "rb-pit-src", key, data)
    policy = make_policy("pit", ("gcp", "rb-pit-src", "d/"), ("azure", "pit-dst", "g/"))
    clock = Clock()
    before = run(policy, ledger, "before", clock)

    put("gcp", "rb-pit-src", "d/a", b"a, rewritten")
    store("gcp").delete("rb-pit-src", "d/b")
    put("gcp", "rb-pit-src", "d/new", b"new object")
    clock.advance(hours=3)
    after = run(policy, ledger, "after", clock)
    assert (after["totals"]["listed"], after["totals"]["copied"], after["totals"]["reused"]) == (3, 2, 1)

    destination = places(policy)[1]
    then = manifest_of(destination, before["point_id"])
    assert sorted(then.by_key) == ["d/a", "d/b", "d/c"]
    assert_restorable(destination, then, old)  # the old bytes of a and the deleted b are still there
    now = manifest_of(destination, after["point_id"])
    assert sorted(now.by_key) == ["d/a", "d/c", "d/new"]
    assert_restorable(destination, now, {**old, "d/a": b"a, rewritten", "d/new": b"new object"})
    assert now.by_key["d/c"].blob == then.by_key["d/c"].blob  # unchanged: the same blob
    assert now.by_key["d/a"].source_version != then.by_key["d/a"].source_version  # the generation read

    for key in ("d/a", "d/c", "d/new"):  # the source emptied by mistake: a valid (empty) point, and a warning
        store("gcp").delete("rb-pit-src", key)
    clock.advance(hours=3)
    emptied = run(policy, ledger, "emptied", clock)
    assert emptied["status"] == "succeeded" and emptied["totals"]["listed"] == 0
    assert emptied["warnings"] == [f"the source shrank from 3 objects (point {after['point_id']}) to 0; the older "
                                   "points keep the objects that are gone"]
    assert_restorable(destination, manifest_of(destination, before["point_id"]), old)


def test_retention_never_breaks_a_retained_point(clean_clouds: Any, data_dir: Path, ledger: Ledger) -> None:
    make_container("gcp", "rb-ret-src")
    make_container("azure", "ret-dst")
    policy = make_policy("ret", ("gcp", "rb-ret-src", ""), ("azure", "ret-dst", "b/"),
                         retention={"hourly": 2, "daily": 3, "weekly": 2, "monthly": 1}, rpo="1d")
    destination = places(policy)[1]
    put("gcp", "rb-ret-src", "static", b"never changes")
    clock = Clock()
    deleted_total = 0
    for i in range(24):  # every 8 hours for 8 days; each run changes one object and replaces another
        put("gcp", "rb-ret-src", "counter", f"run {i}".encode())
        if i % 3 == 0:
            store("gcp").delete("rb-ret-src", f"rolling-{i - 3}")
        put("gcp", "rb-ret-src", f"rolling-{i}", os.urandom(512))
        report = run(policy, ledger, f"r{i:02d}", clock)
        assert report["status"] == "succeeded", report["errors"]
        retention = report["retention"]
        deleted_total += len(retention["points_deleted"]) + len(retention["blobs_deleted"])
        kept = points_of(destination)
        assert kept == sorted(retention["plan"]["keep"]) and report["point_id"] in kept
        manifests = [manifest_of(destination, p) for p in kept]
        needed = {e.blob for m in manifests for e in m.entries}
        assert set(blobs_under(destination)) == needed, "unreferenced blobs are gone, referenced ones stay"
        for manifest in manifests:
            assert_restorable(destination, manifest)
        clock.advance(hours=8)
    assert deleted_total > 0 and len(points_of(destination)) < 24
    trail = read_audit(runbook="backup_object_stores", step="prune")
    assert len(trail) == deleted_total and {r.outcome for r in trail} == {"changed"}
    assert {r.action for r in trail} == {"delete expired point manifest", "delete unreferenced blob"}


def test_an_unreadable_retained_point_stops_every_deletion(clean_clouds: Any, data_dir: Path, ledger: Ledger) -> None:
    make_container("gcp", "rb-bad-src")
    make_container("azure", "bad-dst")
    policy = make_policy("bad", ("gcp", "rb-bad-src", ""), ("azure", "bad-dst", ""),
                         retention={"hourly": 2, "daily": 0, "weekly": 0, "monthly": 0})
    destination = places(policy)[1]
    clock = Clock()
    for i in range(3):
        put("gcp", "rb-bad-src", "obj", f"version {i}".encode())
        run(policy, ledger, f"r{i}", clock)
        clock.advance(hours=1)
    older, newest = points_of(destination)
    destination.store.write(destination.container, point_key("", newest), [b"{not a manifest"])
    before = set(everything(destination))
    put("gcp", "rb-bad-src", "obj", b"version 3")
    with pytest.raises(BackupFailed, match=f"kept point {newest} cannot be read") as failed:
        run(policy, ledger, "r3", clock)
    report = failed.value.report
    assert report["previous_point"] == older and "cannot be read, compared with an older one" in report["warnings"][0]
    assert report["point_id"] in points_of(destination), "the new point is written"
    assert before <= set(everything(destination)), f"nothing was deleted, not even {older}, which has expired"


# ---- failures in the middle of a backup --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FlakyAws:
    """A moto server of its own (in this process: its state survives a stop) behind the connection ``aws_flaky``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.port = _free_port()
        monkeypatch.setenv("AIRFLOW_CONN_AWS_FLAKY", json.dumps({
            "conn_type": "aws", "login": "testing", "password": "testing",
            "extra": {"endpoint_url": f"http://127.0.0.1:{self.port}", "region_name": "us-east-1",
                      "config_kwargs": {"connect_timeout": 2, "retries": {"max_attempts": 2}}},
        }))
        self.target = Target.model_validate({"name": "aws-flaky", "cloud": "aws", "conn_id": "aws_flaky",
                                             "account": "123456789012", "regions": ["us-east-1"]})
        self.server: Any = None
        self.start()
        # moto keeps its state in this process (which is what lets it survive a stop): start from nothing.
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/moto-api/reset", method="POST"))

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def store(self) -> ObjectStore:
        found: ObjectStore = capability("object_store", self.target)
        return found


@pytest.mark.parametrize("stopped", ["destination", "source"])
def test_emulator_stopped_mid_backup_fails_cleanly_and_the_rerun_copies_only_what_is_missing(
    clean_clouds: Any, data_dir: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, stopped: str,
) -> None:
    flaky = FlakyAws(monkeypatch)
    try:
        from include.clouds.aws.clients import client_for

        client_for(flaky.target, "s3").create_bucket(Bucket="rb-flaky")
        other_cloud = "gcp" if stopped == "destination" else "azure"
        make_container(other_cloud, "rb-steady")
        content = {f"o/{i:02d}": os.urandom(200 * KIB + i) for i in range(12)}
        writer = store("gcp") if stopped == "destination" else flaky.store()
        for key, data in content.items():
            writer.write("rb-steady" if stopped == "destination" else "rb-flaky", key, [data])
        s3 = Place(flaky.store(), "rb-flaky", "", "aws-flaky:rb-flaky/")
        steady = Place(store(other_cloud), "rb-steady", "" if stopped == "destination" else "bk/",
                       f"{target(other_cloud).name}:rb-steady/")
        source, destination = (steady, s3) if stopped == "destination" else (s3, steady)
        policy = make_policy("flaky", ("gcp", "rb-steady", ""), ("azure", "rb-steady", ""), concurrency=2)
        copied: list[Outcome] = []

        def stop_after_three(outcome: Outcome) -> None:
            copied.append(outcome)
            if len(copied) == 3:
                flaky.stop()

        with pytest.raises(BackupFailed) as failed:
            back_up(policy, run_id="interrupted", dry_run=False, ledger=ledger, stores=(source, destination),
                    progress=stop_after_three)
        report = failed.value.report
        assert report["point_id"] is None and report["manifest"] is None
        assert {f["kind"] for f in report["failures"]} <= {"unreachable", "not_attempted"}
        assert report["totals"]["copied"] >= 3 and report["totals"]["not_attempted"] > 0
        assert read_run_report("flaky", "interrupted")["status"] == "failed"
        assert [h.status for h in read_history("flaky")] == ["failed"]

        flaky.start()
        assert points_of(destination) == [], "no manifest was written, also where the store was reachable"
        present = {key: destination.store.stat(destination.container, key) for key in blobs_under(destination)}
        for key, info in present.items():  # nothing half-written: every blob holds the bytes its name says
            assert key.endswith(f"{info.md5}-{info.size}") and md5(read(destination, key)) == info.md5

        rerun = back_up(policy, run_id="rerun", dry_run=False, ledger=ledger, stores=(source, destination))
        assert rerun["status"] == "succeeded", rerun["errors"]
        assert rerun["totals"]["deduplicated"] == len(present), "what verified before is reused, not copied"
        assert rerun["totals"]["copied"] == len(content) - len(present)
        assert rerun["totals"]["bytes_copied"] == sum(len(content[k]) for k in content) - sum(
            i.size for i in present.values())
        assert_restorable(destination, manifest_of(destination, rerun["point_id"]), content)
        assert len(blobs_under(destination)) == len(content)
    finally:
        flaky.stop()


class OverwritingStore:
    """The real source store; its read overwrites the object after the first chunk, ``times`` times."""

    def __init__(self, inner: ObjectStore, container: str, key: str, versions: Iterable[bytes]) -> None:
        self.inner, self.container, self.key = inner, container, key
        self.versions = list(versions)
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_objects(self, container: str, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list_objects(container, prefix)

    def stat(self, container: str, key: str, version: str | None = None) -> ObjectInfo:
        return self.inner.stat(container, key, version)

    def read(self, container: str, key: str, pin: Pin = None, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        chunks = self.inner.read(container, key, pin, chunk_size=64 * KIB)
        if key != self.key:
            return chunks
        self.reads += 1
        return _Overwriting(self, chunks)


class _Overwriting:
    """A read of the real store that overwrites its object after the first chunk; ``served`` as the real read's."""

    def __init__(self, store: OverwritingStore, chunks: Iterator[bytes]) -> None:
        self.store, self.chunks, self.started = store, chunks, False

    @property
    def served(self) -> Any:
        return getattr(self.chunks, "served", None)

    def __iter__(self) -> _Overwriting:
        return self

    def __next__(self) -> bytes:
        if self.started and self.store.versions:
            self.store.inner.write(self.store.container, self.store.key, [self.store.versions.pop(0)])
        self.started = True
        return next(self.chunks)


OVERWRITE_ROUTES = [("gcp", "azure"), ("aws", "gcp"), ("azure", "aws")]


@pytest.mark.parametrize(("src", "dst"), OVERWRITE_ROUTES, ids=[f"{s}->{d}" for s, d in OVERWRITE_ROUTES])
def test_an_object_overwritten_during_its_copy_is_copied_whole_at_its_new_version(
    clean_clouds: Any, data_dir: Path, ledger: Ledger, src: str, dst: str,
) -> None:
    make_container(src, "rb-race-src")
    make_container(dst, "rb-race-dst")
    first, second = os.urandom(5 * 64 * KIB + 3), os.urandom(5 * 64 * KIB + 3)  # same size: only the pin can tell
    put(src, "rb-race-src", "hot", first)
    put(src, "rb-race-src", "cold", b"cold")
    policy = make_policy("race", (src, "rb-race-src", ""), (dst, "rb-race-dst", ""))
    source, destination = places(policy)
    racing = OverwritingStore(source.store, "rb-race-src", "hot", [second])
    report = back_up(policy, run_id="race", dry_run=False, ledger=ledger,
                     stores=(Place(racing, source.container, "", source.label), destination))
    # S3 reads are one GET answered from the pinned (listed) version: the overwrite cannot reach it, the version
    # listed is copied whole at the first attempt. The other stores read in ranges, each checked against the pin:
    # the overwrite fails the read, and the copy is made again at the new version.
    expected, reads = (first, 1) if src == "aws" else (second, 2)
    assert report["status"] == "succeeded" and racing.reads == reads
    entry = manifest_of(destination, report["point_id"]).by_key["hot"]
    assert entry.md5 == md5(expected) and read(destination, entry.blob) == expected  # never a mix of the two
    assert len(blobs_under(destination)) == 2


def test_an_object_that_keeps_changing_fails_and_no_point_is_written(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    make_container("gcp", "rb-hot-src")
    make_container("azure", "hot-dst")
    put("gcp", "rb-hot-src", "hot", os.urandom(3 * 64 * KIB))
    policy = make_policy("hot", ("gcp", "rb-hot-src", ""), ("azure", "hot-dst", ""))
    source, destination = places(policy)
    racing = OverwritingStore(source.store, "rb-hot-src", "hot", [os.urandom(3 * 64 * KIB) for _ in range(2)])
    with pytest.raises(BackupFailed) as failed:
        back_up(policy, run_id="hot", dry_run=False, ledger=ledger,
                stores=(Place(racing, source.container, "", source.label), destination))
    assert failed.value.report["failures"] == [
        {"key": "hot", "status": "failed", "kind": "changed", "error": failed.value.report["failures"][0]["error"]}]
    assert "changed again while being copied" in failed.value.report["failures"][0]["error"]
    assert points_of(destination) == [] and blobs_under(destination) == {}


# ---- S3 specifics: objects without an MD5, deduplication, Object Lock -------------------------------------------
def _foreign_multipart(bucket: str, key: str, data: bytes) -> None:
    """An S3 object written by someone else in parts: its ETag is no MD5 and it carries none in metadata."""
    from include.clouds.aws.clients import client_for

    client = client_for(target("aws"), "s3")
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MIB), start=1):
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                  Body=data[start:start + 5 * MIB])["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def test_s3_objects_without_an_md5_are_hashed_in_transit_and_stored_once(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    from include.clouds.aws.clients import client_for

    make_container("aws", "rb-mp-src")
    make_container("gcp", "rb-mp-dst")
    big = os.urandom(6 * MIB + 17)
    _foreign_multipart("rb-mp-src", "parts.bin", big)
    client_for(target("aws"), "s3").put_object(Bucket="rb-mp-src", Key="twin-1", Body=b"same bytes")
    client_for(target("aws"), "s3").put_object(Bucket="rb-mp-src", Key="twin-2", Body=b"same bytes")
    assert store("aws").stat("rb-mp-src", "parts.bin").md5 is None
    policy = make_policy("mp", ("aws", "rb-mp-src", ""), ("gcp", "rb-mp-dst", ""))
    destination = places(policy)[1]
    clock = Clock()
    first = run(policy, ledger, "one", clock)
    assert first["totals"]["copied"] + first["totals"]["deduplicated"] == 3
    assert first["totals"]["copied"] == 2, "two keys with the same bytes: one blob"
    entries = manifest_of(destination, first["point_id"]).by_key
    assert entries["parts.bin"].md5 == md5(big) and "-" in str(entries["parts.bin"].source_etag)
    assert entries["twin-1"].blob == entries["twin-2"].blob and len(blobs_under(destination)) == 2

    clock.advance(hours=1)
    second = run(policy, ledger, "two", clock)
    assert (second["totals"]["reused"], second["totals"]["bytes_read"]) == (3, 0), "size + ETag: unchanged"

    client_for(target("aws"), "s3").put_object(Bucket="rb-mp-src", Key="parts.bin", Body=big)  # same bytes, new ETag
    clock.advance(hours=1)
    third = run(policy, ledger, "three", clock)
    assert (third["totals"]["deduplicated"], third["totals"]["copied"], third["totals"]["bytes_copied"]) == (1, 0, 0)
    assert manifest_of(destination, third["point_id"]).by_key["parts.bin"].blob == entries["parts.bin"].blob


def test_s3_single_part_objects_copy_without_a_head_and_kms_ones_fall_back_to_it(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    """A single-part ETag is taken for the MD5 once the read's own GET headers prove it (no HEAD per object); an
    SSE-KMS object's headers do not, so it is stat-ed and hashed; a versioned bucket's version read is recorded."""
    from include.clouds.aws.clients import client_for

    make_container("aws", "rb-nohead-src", versioned=True)
    make_container("gcp", "rb-nohead-dst")
    s3 = client_for(target("aws"), "s3")
    plain = {f"plain-{i}": os.urandom(1000 + i) for i in range(5)}
    for key, body in plain.items():
        s3.put_object(Bucket="rb-nohead-src", Key=key, Body=body)
    kms_key = client_for(target("aws"), "kms").create_key()["KeyMetadata"]["KeyId"]
    s3.put_object(Bucket="rb-nohead-src", Key="kms", Body=b"encrypted bytes", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=kms_key)
    policy = make_policy("nohead", ("aws", "rb-nohead-src", ""), ("gcp", "rb-nohead-dst", ""))
    source, destination = places(policy)
    heads: list[str] = []
    source.store.client.meta.events.register(  # type: ignore[attr-defined]
        "before-parameter-build.s3.HeadObject", lambda params, **_: heads.append(params["Key"]))

    report = run(policy, ledger, "nohead", Clock(), stores=(source, destination))
    assert report["status"] == "succeeded", report["errors"]
    assert report["totals"]["copied"] == len(plain) + 1
    assert heads == ["kms"], "only the object whose ETag its headers do not prove to be an MD5 is stat-ed"
    entries = manifest_of(destination, report["point_id"]).by_key
    for key, body in plain.items():
        version = s3.head_object(Bucket="rb-nohead-src", Key=key)["VersionId"]
        assert (entries[key].md5, entries[key].source_version) == (md5(body), version)
        assert read(destination, entries[key].blob) == body
    assert entries["kms"].md5 == md5(b"encrypted bytes") and read(destination, entries["kms"].blob) == b"encrypted bytes"


def test_a_run_that_changes_nothing_skips_the_blob_sweep(clean_clouds: Any, data_dir: Path, ledger: Ledger,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from include.clouds.azure.object_store import BlobObjectStore

    blob_listings: list[str] = []
    listing = BlobObjectStore.list_objects

    def counted(self: BlobObjectStore, container: str, prefix: str = "") -> Any:
        if prefix.endswith("blobs/"):
            blob_listings.append(prefix)
        return listing(self, container, prefix)

    monkeypatch.setattr(BlobObjectStore, "list_objects", counted)
    make_container("gcp", "rb-sweep-src")
    make_container("azure", "sweep-dst")
    put("gcp", "rb-sweep-src", "k", b"v1")
    policy = make_policy("sweep", ("gcp", "rb-sweep-src", ""), ("azure", "sweep-dst", ""),
                         retention={"hourly": 2, "daily": 0, "weekly": 0, "monthly": 0})
    destination = places(policy)[1]
    clock = Clock()
    first = run(policy, ledger, "s1", clock)
    assert first["retention"]["blobs_swept"] is True
    v1_blob = manifest_of(destination, first["point_id"]).by_key["k"].blob
    orphan = f"blobs/00/{'0' * 32}-1"  # left by an interrupted run: named like a blob, referenced by no point
    destination.store.write(destination.container, orphan, [b"x"])
    clock.advance(hours=1)
    quiet = run(policy, ledger, "s2", clock)
    assert quiet["totals"]["copied"] == 0 and quiet["retention"]["blobs_swept"] is False
    assert orphan in blobs_under(destination), "left for the next sweep"
    put("gcp", "rb-sweep-src", "k", b"v2")
    clock.advance(hours=1)
    blob_listings.clear()
    busy = run(policy, ledger, "s3", clock)
    assert busy["retention"]["blobs_swept"] is True and busy["retention"]["blobs_deleted"] == [orphan]
    assert blob_listings == ["blobs/"], "the sweep uses the copier's index of the blobs: one listing of them per run"
    assert busy["retention"]["points_deleted"] == [first["point_id"]] and v1_blob in blobs_under(destination)
    # A quiet run that expires a point deletes the blobs only that point named, from its manifest, without a listing.
    clock.advance(hours=1)
    quiet = run(policy, ledger, "s4", clock)
    assert quiet["retention"]["blobs_swept"] is False and quiet["retention"]["blobs_deleted"] == [v1_blob]
    assert set(blobs_under(destination)) == {manifest_of(destination, quiet["point_id"]).by_key["k"].blob}
    assert_restorable(destination, manifest_of(destination, quiet["point_id"]), {"k": b"v2"})


def test_immutable_backups_on_s3_object_lock_and_what_moto_enforces(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    from botocore.exceptions import ClientError

    from include.clouds.aws.clients import client_for

    s3 = client_for(target("aws"), "s3")
    make_container("gcp", "rb-lock-src")
    make_container("aws", "rb-locked", object_lock=True)
    make_container("aws", "rb-unlocked")
    put("gcp", "rb-lock-src", "small", b"small")
    put("gcp", "rb-lock-src", "large", os.urandom(CHUNK_SIZE + 1))  # a multipart upload at the destination
    policy = make_policy("locked", ("gcp", "rb-lock-src", ""), ("aws", "rb-locked", ""),
                         immutability={"mode": "governance", "days": 2})
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    report = run(policy, ledger, "locked", clock)
    assert report["status"] == "succeeded", report["errors"]
    destination = places(policy)[1]
    written = [*blobs_under(destination), point_key("", report["point_id"])]
    first_lock = clock.now + timedelta(days=3)  # 1.5 x days: reused blobs need extending only every day
    assert manifest_of(destination, report["point_id"]).stats["locked_until"] == first_lock.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    for key in written:
        head = s3.head_object(Bucket="rb-locked", Key=key)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        assert head["ObjectLockRetainUntilDate"] == first_lock, key
        # moto enforces the lock: the locked version cannot be deleted (AWS answers the same 403)...
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.delete_object(Bucket="rb-locked", Key=key, VersionId=head["VersionId"])

    # A later point reusing the blobs: each must stay locked `days` past that point. Within a day the first
    # lock (3 days) covers it; after that, the run extends the reused blobs' lock.
    blobs = sorted(blobs_under(destination))
    clock.advance(hours=20)
    run(policy, ledger, "within-a-day", clock)
    assert {s3.head_object(Bucket="rb-locked", Key=b)["ObjectLockRetainUntilDate"] for b in blobs} == {first_lock}
    clock.advance(hours=8)
    later = run(policy, ledger, "a-day-later", clock)
    assert later["totals"]["reused"] == 2
    for blob in blobs:
        assert s3.head_object(Bucket="rb-locked", Key=blob)["ObjectLockRetainUntilDate"] == clock.now + timedelta(days=3)

    # ...but a plain delete only adds a delete marker (as on AWS): the locked version stays restorable.
    s3.delete_object(Bucket="rb-locked", Key=written[0])
    versions = s3.list_object_versions(Bucket="rb-locked", Prefix=written[0])
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1

    # What moto 5.2.5 does NOT enforce (docs/backup.md says so): it drops the lock of a multipart upload
    # (the store sets it again with PutObjectRetention, checked above for the large blob) and lets a
    # COMPLIANCE retention be shortened (AWS refuses both).
    upload = s3.create_multipart_upload(Bucket="rb-locked", Key="probe", ObjectLockMode="COMPLIANCE",
                                        ObjectLockRetainUntilDate=clock.now + timedelta(days=1))
    part = s3.upload_part(Bucket="rb-locked", Key="probe", UploadId=upload["UploadId"], PartNumber=1, Body=b"x")
    s3.complete_multipart_upload(Bucket="rb-locked", Key="probe", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert "ObjectLockMode" not in s3.head_object(Bucket="rb-locked", Key="probe")
    locked = s3.put_object(Bucket="rb-locked", Key="probe2", Body=b"x", ObjectLockMode="COMPLIANCE",
                           ObjectLockRetainUntilDate=clock.now + timedelta(days=1))
    s3.put_object_retention(Bucket="rb-locked", Key="probe2", VersionId=locked["VersionId"],
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": clock.now})
    # moto also accepts a retain-until date in the past (AWS refuses it), lets GOVERNANCE be bypassed (as AWS
    # does, given s3:BypassGovernanceRetention) and refuses lock settings on a bucket without Object Lock (as AWS).
    s3.put_object(Bucket="rb-locked", Key="probe3", Body=b"x", ObjectLockMode="GOVERNANCE",
                  ObjectLockRetainUntilDate=clock.now - timedelta(days=1))
    governed = s3.put_object(Bucket="rb-locked", Key="probe4", Body=b"x", ObjectLockMode="GOVERNANCE",
                             ObjectLockRetainUntilDate=clock.now + timedelta(days=1))
    s3.delete_object(Bucket="rb-locked", Key="probe4", VersionId=governed["VersionId"], BypassGovernanceRetention=True)
    with pytest.raises(ClientError, match="InvalidRequest"):
        s3.put_object(Bucket="rb-unlocked", Key="probe", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=clock.now + timedelta(days=1))

    # A bucket without Object Lock: refused before anything is copied, naming the bucket.
    unlocked = make_policy("unlocked", ("gcp", "rb-lock-src", ""), ("aws", "rb-unlocked", ""),
                           immutability={"mode": "compliance", "days": 2})
    with pytest.raises(BackupConfigError, match="bucket rb-unlocked does not have S3 Object Lock enabled"):
        run(unlocked, ledger, "unlocked")
    assert s3.list_objects_v2(Bucket="rb-unlocked").get("KeyCount") == 0


# ---- planning and exclusion ---------------------------------------------------------------------------------
def test_a_dry_run_lists_what_would_travel_and_changes_nothing(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    make_container("gcp", "rb-dry-src")
    make_container("azure", "dry-dst")
    for i in range(4):
        put("gcp", "rb-dry-src", f"k{i}", f"v{i}".encode())
    policy = make_policy("dry", ("gcp", "rb-dry-src", ""), ("azure", "dry-dst", ""),
                         retention={"hourly": 1, "daily": 0, "weekly": 0, "monthly": 0})
    destination = places(policy)[1]
    clock = Clock()
    real = run(policy, ledger, "real", clock)
    put("gcp", "rb-dry-src", "k1", b"w1")  # same size: only the MD5 tells
    put("gcp", "rb-dry-src", "k9", b"new")
    before = everything(destination)
    clock.advance(hours=1)
    plan = run(policy, ledger, "plan", clock, dry_run=True)
    assert plan["status"] == "planned" and plan["dry_run"] is True
    assert plan["plan"] == ["copy k1 (2 bytes): changed (md5)", "copy k9 (3 bytes): new"]
    assert (plan["totals"]["to_copy"], plan["totals"]["reused"], plan["totals"]["bytes_to_copy"]) == (2, 3, 5)
    assert plan["retention"]["points_deleted"] == [real["point_id"]] and plan["retention"]["dry_run"] is True
    assert everything(destination) == before, "a dry run writes and deletes nothing"
    assert [h.run_id for h in read_history("dry")] == ["real"], "history charts real runs only"
    assert {(r.step, r.outcome, r.dry_run) for r in read_audit(run_id="plan")} == {("plan", "skipped", True)}


def test_two_runs_of_one_policy_never_overlap(clean_clouds: Any, data_dir: Path, ledger: Ledger) -> None:
    make_container("gcp", "rb-lease-src")
    make_container("azure", "lease-dst")
    put("gcp", "rb-lease-src", "k", b"v")
    policy = make_policy("leased", ("gcp", "rb-lease-src", ""), ("azure", "lease-dst", ""))
    ledger.acquire("backup:leased", "backup_object_stores:someone-else")
    with pytest.raises(BackupFailed, match="another run is applying changes for key 'backup:leased'"):
        run(policy, ledger, "second")
    assert everything(places(policy)[1]) == {}
    ledger.release("backup:leased", "backup_object_stores:someone-else")
    assert run(policy, ledger, "second")["status"] == "succeeded"


def test_deferred_validation_checks_the_stored_point_and_quarantines_a_bad_one(
    clean_clouds: Any, data_dir: Path, ledger: Ledger,
) -> None:
    """As the runbook runs it: the copy writes the point, great-expectations validates it afterwards (its own task);
    a stored manifest that fails a structural check is moved out of points/ and the validation fails loudly."""
    from include.backup.runner import quarantine_key, validate_point

    make_container("gcp", "rb-defer-src")
    make_container("azure", "defer-dst")
    for i in range(3):
        put("gcp", "rb-defer-src", f"k{i}", f"v{i}".encode())
    policy = make_policy("deferred", ("gcp", "rb-defer-src", ""), ("azure", "defer-dst", "bk/"))
    destination = places(policy)[1]
    clock = Clock()

    first = run(policy, ledger, "d1", clock, defer_validation=True)
    assert first["status"] == "succeeded" and first["validation_pending"] is True and first["validation"] is None
    assert points_of(destination) == [first["point_id"]]
    assert read_history("deferred") == [], "the history line waits for the verdict"
    validated = validate_point(policy, "d1", ledger=ledger, clock=clock)
    assert validated is not None and validated["validation"]["success"] is True
    assert read_run_report("deferred", "d1") == validated and validated["validation_pending"] is False
    assert [(h.run_id, h.validation_success) for h in read_history("deferred")] == [("d1", True)]
    assert validate_point(policy, "d1", ledger=ledger, clock=clock) is None, "validated once"

    # A second point whose stored manifest is damaged after it was written (a duplicate entry): caught and quarantined.
    put("gcp", "rb-defer-src", "k3", b"new")
    clock.advance(hours=1)
    second = run(policy, ledger, "d2", clock, defer_validation=True)
    stored = manifest_of(destination, second["point_id"])
    damaged = Manifest(**{**{f: getattr(stored, f) for f in stored.__dataclass_fields__},
                          "entries": (*stored.entries, stored.entries[0])})
    destination.store.write(destination.container, point_key("bk/", second["point_id"]), [damaged.to_json().encode()])
    with pytest.raises(BackupFailed, match="failed validation.*keys are unique"):
        validate_point(policy, "d2", ledger=ledger, clock=clock)
    report = read_run_report("deferred", "d2")
    assert report is not None and report["status"] == "failed" and report["manifest"] is None
    assert report["quarantined"] == quarantine_key("bk/", second["point_id"])
    assert points_of(destination) == [first["point_id"]], "a point that failed validation is never restored"
    assert read(destination, report["quarantined"]) == damaged.to_json().encode()
    assert [(h.run_id, h.status, h.validation_success) for h in read_history("deferred")] == [
        ("d1", "succeeded", True), ("d2", "failed", False)]
    assert ("validate", "quarantine invalid backup point", "changed") in {
        (r.step, r.action, r.outcome) for r in read_audit(run_id="d2")}


# ---- memory ----------------------------------------------------------------------------------------------------
LARGE = 64 * MIB + 1
MEMORY_LIMIT = 3 * CHUNK_SIZE  # the object store's own bound for one copy (tests/test_object_store.py)
_PROBE_MARK = "BACKUP-MEMORY "


def _memory_probe(routes: list[str]) -> None:
    """Back up ``large.bin`` along each route in this fresh process; print the resident peak growth per run."""
    from tests.test_object_store import _resident_peak_growth

    ledger = Ledger.from_url(f"sqlite:///{os.environ['PROBE_DIR']}/state.db")
    results = {}
    for route in routes:
        src, dst = route.split("->")
        container = "rb-mem-dst" if dst != "azure" else "mem-dst"
        # Warm up what every run pays once, outside the measurement: the clouds' clients (botocore parses the S3
        # service model on first use). As the runbook's copy task: great-expectations is left to validate_points.
        warm = make_policy(f"warm-{src}", (src, "rb-mem-warm", ""), (dst, container, f"warm-{src}/"))
        back_up(warm, run_id=f"warm-{src}", dry_run=False, ledger=ledger, defer_validation=True)
        policy = make_policy(f"mem-{src}", (src, "rb-mem-src", ""), (dst, container, f"{src}/"))
        with _resident_peak_growth() as measured:
            report = back_up(policy, run_id=f"mem-{src}", dry_run=False, ledger=ledger, defer_validation=True)
        results[route] = {"growth": measured["growth"], "status": report["status"],
                          "copied": report["totals"]["bytes_copied"],
                          "gx_imported": "great_expectations" in sys.modules}
    print(_PROBE_MARK + json.dumps(results), flush=True)


def test_a_large_object_is_backed_up_with_bounded_memory(clean_clouds: Any, data_dir: Path, tmp_path: Path) -> None:
    """64 MiB through the whole run (list, copy, verify, validate, manifest, prune) raises resident memory by
    at most 3 chunks; routes: GCS (MD5 known: streamed) -> Azure, and a foreign S3 multipart object (no MD5:
    hashed while spooled to disk) -> GCS."""
    from tests.test_object_store import _random_chunks

    for cloud in ("gcp", "aws"):
        make_container(cloud, "rb-mem-src")
        make_container(cloud, "rb-mem-warm")
        if cloud == "aws":
            _foreign_multipart("rb-mem-warm", "w", b"warm")  # the same path as large.bin: hashed in transit
        else:
            put(cloud, "rb-mem-warm", "w", b"warm")
    make_container("gcp", "rb-mem-dst")
    make_container("azure", "mem-dst")
    data = b"".join(_random_chunks(LARGE, seed=b"backup"))
    store("gcp").write("rb-mem-src", "large.bin", [data])
    _foreign_multipart("rb-mem-src", "large.bin", data)
    del data
    routes = ["gcp->azure", "aws->gcp"]
    probe = subprocess.run(
        [sys.executable, __file__, *routes], check=False, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PROBE_DIR": str(tmp_path)},
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    line = next(line for line in probe.stdout.splitlines() if line.startswith(_PROBE_MARK))
    results = json.loads(line.removeprefix(_PROBE_MARK))
    print("\nresident peak growth backing up 64 MiB: " + ", ".join(
        f"{route} +{r['growth'] / MIB:.1f} MiB" for route, r in results.items()))
    for route, result in results.items():
        assert (result["status"], result["copied"]) == ("succeeded", LARGE), route
        assert result["gx_imported"] is False, "the copying process never imports great_expectations"
        assert result["growth"] < MEMORY_LIMIT, f"{route}: resident memory rose {result['growth'] / MIB:.1f} MiB"


if __name__ == "__main__":  # the memory probe, run in a fresh interpreter by the test above
    _memory_probe(sys.argv[1:])



# ---- the runbook's task bodies, called as Airflow calls them ----------------------------------------------------
class _DagRun:
    """The parts of a DAG run the task bodies read."""

    def __init__(self, run_type: str, conf: dict[str, Any]) -> None:
        self.run_type, self.conf, self.triggering_user_name = run_type, conf, None


def _context(run_id: str, conf: dict[str, Any], run_type: str = "scheduled") -> dict[str, Any]:
    from types import SimpleNamespace

    declared = {"dry_run": None, "policies": None, "force": False}
    return {"run_id": run_id, "params": {**declared, **conf}, "dag_run": _DagRun(run_type, conf),
            "dag": SimpleNamespace(dag_id="backup_object_stores", params=declared)}


def test_task_bodies_skip_what_is_not_due_and_fail_listing_failures_and_rpo_breaches(
    clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from include.backup import runbook

    make_container("gcp", "rb-task-src")
    make_container("azure", "task-dst")
    put("gcp", "rb-task-src", "k", b"v")
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n"
        "  - {name: good, source: {target: gcp-prod, container: rb-task-src}, destination: {target: azure-prod,"
        " container: task-dst, prefix: good/}, schedule: '@yearly', rpo: 1h}\n"
        "  - {name: broken, source: {target: gcp-prod, container: rb-task-src}, destination: {target: azure-prod,"
        " container: no-such-container}, schedule: '@yearly', rpo: 1h}\n"
    )
    monkeypatch.setenv("RUNBOOKS_BACKUP_POLICIES", str(policies))

    first = _context("scheduled__1", {})
    assert runbook.select_policies(first) == ["good", "broken"]
    assert runbook.back_up_policy(first, "good")["status"] == "succeeded"  # scheduled, dry_run empty: applies
    with pytest.raises(BackupFailed):
        runbook.back_up_policy(first, "broken")
    with pytest.raises(AirflowFailException, match="good: point .* was written but great-expectations did not"):
        runbook.check_results(first, ["good", "broken"])  # the copy alone does not make a validated point
    validated = runbook.validate_points(first, ["good", "broken"])["policies"]
    assert validated["good"]["success"] is True and validated["broken"] == {"validated": False}
    with pytest.raises(AirflowFailException) as failed:
        runbook.check_results(first, ["good", "broken"])
    lines = str(failed.value).splitlines()[1:]
    assert len(lines) == 2 and all(line.startswith("broken: ") for line in lines)
    assert "ContainerNotFound" in lines[0] and "RPO breached: newest point - is no point" in lines[1]

    second = _context("scheduled__2", {})
    with pytest.raises(AirflowSkipException, match="good: not due: newest point"):
        runbook.back_up_policy(second, "good")
    assert runbook.check_results(_context("scheduled__2", {"policies": ["good"]}), ["good"])["policies"]["good"][
        "status"] == "skipped (not due)"

    by_hand = _context("manual__3", {"policies": ["good", "broken"]}, run_type="manual")  # by hand: plans
    assert runbook.back_up_policy(by_hand, "good")["status"] == "planned"
    with pytest.raises(BackupFailed, match="planning the backup of broken failed"):  # a plan that cannot read fails
        runbook.back_up_policy(by_hand, "broken")
    with pytest.raises(AirflowFailException) as failed:  # a dry run: the failure counts, the RPO breach does not
        runbook.check_results(by_hand, ["good", "broken"])
    assert [line.split(":")[0] for line in str(failed.value).splitlines()[1:]] == ["broken"]

    with pytest.raises(AirflowFailException, match="unknown parameter\\(s\\) 'polices'"):
        runbook.select_policies(_context("manual__4", {"polices": ["good"]}, run_type="manual"))
    with pytest.raises(AirflowFailException, match="unknown backup policy 'nope'; known: good, broken"):
        runbook.select_policies(_context("manual__5", {"policies": ["nope"]}, run_type="manual"))
    policies.write_text(policies.read_text().replace("rpo: 1h}\n  - {name: broken", "rpo: soon}\n  - {name: broken"))
    with pytest.raises(AirflowFailException, match="policy good: rpo: .*not a duration"):
        runbook.select_policies(_context("manual__6", {}, run_type="manual"))
