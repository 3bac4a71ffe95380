"""The restore_objects runbook: point selection, plan (written / overwritten / left alone), approval, apply,
ledger, verification, and the DAG, against the emulators through the provider hooks.

Points in time are made here by a small backup over the fixed contract of include/backup/manifest.py (blobs
at ``blob_key``, a manifest per point written last), through the same object stores the copier uses; the
contents the tests compare are read back through the providers' hooks directly, never through the restore
code. The policies are this file's own (``RUNBOOKS_BACKUP_POLICIES``): one per direction AWS -> GCS,
GCS -> Azure, Azure -> S3, so every cloud is a backup store and a restore destination once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from include.audit import read_audit
from include.backup.manifest import (
    Manifest,
    ManifestEntry,
    blob_key,
    new_point_id,
    write_manifest,
)
from include.backup.policies import BackupPolicy, load_policies
from include.backup.restore import (
    RESTORE,
    RESTORED_FROM_META,
    WORDING,
    RestoreError,
    RestoreRequest,
    checked_stream,
    resolve,
    resolve_request,
    store_for,
)
from include.changes import engine, report
from include.changes.runbook import ChangeSet
from include.targets import load_targets
from tests.dagrun import start_dag

PROJECT_ROOT = Path(__file__).resolve().parents[1]

POLICIES = """
policies:
  - name: rt-aws-to-gcp
    source: {target: aws-prod, container: rt-src-aws, prefix: data/}
    destination: {target: gcp-prod, container: rt-bk-gcp, prefix: aws/rt-src-aws/}
    rpo: 2h
  - name: rt-gcp-to-azure
    source: {target: gcp-prod, container: rt-src-gcp, prefix: app/}
    destination: {target: azure-prod, container: rt-bk-azure, prefix: gcp/rt-src-gcp/}
    rpo: 2h
  - name: rt-azure-to-aws
    source: {target: azure-prod, container: rt-src-azure}
    destination: {target: aws-prod, container: rt-bk-aws, prefix: azure/}
    rpo: 2h
"""
#: A scratch bucket / container per cloud (for restores that must not touch the original location).
SCRATCH = {"aws": "rt-scratch-aws", "gcp": "rt-scratch-gcp", "azure": "rt-scratch-azure"}
T0 = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)


# ---- the clouds, through the providers' hooks (independent of the restore code) ---------------------------
def _conn(cloud: str) -> str:
    return load_targets().select(cloud=cloud)[0].conn_id


def _s3() -> Any:
    from include.clouds.aws.clients import client_for

    return client_for(_conn("aws"), "s3")


def _gcs() -> Any:
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    return GCSHook(gcp_conn_id=_conn("gcp")).get_conn()


def _blobs() -> Any:
    from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

    return WasbHook(wasb_conn_id=_conn("azure")).blob_service_client


def make_container(cloud: str, name: str) -> None:
    if cloud == "aws":
        _s3().create_bucket(Bucket=name)
    elif cloud == "gcp":
        _gcs().create_bucket(name, project=load_targets().select(cloud="gcp")[0].account)
    else:
        _blobs().create_container(name)


def raw_put(cloud: str, container: str, key: str, data: bytes) -> None:
    if cloud == "aws":
        _s3().put_object(Bucket=container, Key=key, Body=data)
    elif cloud == "gcp":
        _gcs().bucket(container).blob(key).upload_from_string(data)
    else:
        _blobs().get_blob_client(container, key).upload_blob(data, overwrite=True)


def raw_get(cloud: str, container: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        if cloud == "aws":
            return bytes(_s3().get_object(Bucket=container, Key=key)["Body"].read())
        if cloud == "gcp":
            blob = _gcs().bucket(container).get_blob(key)
            return None if blob is None else bytes(blob.download_as_bytes())
        return bytes(_blobs().get_blob_client(container, key).download_blob().readall())
    except Exception as exc:
        from include.clouds.errors import is_not_found

        if is_not_found(exc):
            return None
        raise


def raw_delete(cloud: str, container: str, key: str) -> None:
    if cloud == "aws":
        _s3().delete_object(Bucket=container, Key=key)
    elif cloud == "gcp":
        _gcs().bucket(container).blob(key).delete()
    else:
        _blobs().get_blob_client(container, key).delete_blob()


def raw_keys(cloud: str, container: str, prefix: str = "") -> list[str]:
    if cloud == "aws":
        pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=container, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
    if cloud == "gcp":
        return sorted(b.name for b in _gcs().list_blobs(container, prefix=prefix or None))
    return sorted(b.name for b in _blobs().get_container_client(container).list_blobs(name_starts_with=prefix or None))


def raw_metadata(cloud: str, container: str, key: str) -> dict[str, str]:
    if cloud == "aws":
        return dict(_s3().head_object(Bucket=container, Key=key).get("Metadata", {}))
    if cloud == "gcp":
        return dict(_gcs().bucket(container).get_blob(key).metadata or {})
    return dict(_blobs().get_blob_client(container, key).get_blob_properties().metadata or {})


# ---- policies, an estate, and points in time ----------------------------------------------------------------
@dataclass
class Estate:
    """This file's policies on clean emulators: source, backup store and scratch containers exist."""

    def policy(self, name: str) -> BackupPolicy:
        return load_policies().get(name)

    def cloud(self, target: str) -> str:
        return load_targets().get(target).cloud

    def put(self, policy: str, key: str, data: bytes) -> None:
        src = self.policy(policy).source
        raw_put(self.cloud(src.target), src.container, key, data)

    def get(self, policy: str, key: str) -> bytes | None:
        src = self.policy(policy).source
        return raw_get(self.cloud(src.target), src.container, key)

    def delete(self, policy: str, key: str) -> None:
        src = self.policy(policy).source
        raw_delete(self.cloud(src.target), src.container, key)

    def source_contents(self, policy: str) -> dict[str, bytes]:
        src = self.policy(policy).source
        cloud = self.cloud(src.target)
        return {k: raw_get(cloud, src.container, k) or b"" for k in raw_keys(cloud, src.container, src.prefix)}

    def backup(self, policy_name: str, when: datetime, run_id: str | None = None) -> Manifest:
        """A point in time of the source as it is now, over the backup-store contract (blobs, then the manifest)."""
        policy = self.policy(policy_name)
        targets = load_targets()
        src = store_for(targets.get(policy.source.target), policy.source.region)
        dst = store_for(targets.get(policy.destination.target), policy.destination.region)
        store = policy.destination
        entries = []
        for info in src.list_objects(policy.source.container, policy.source.prefix):
            data = b"".join(src.read(policy.source.container, info.key, pin=info))
            md5 = hashlib.md5(data).hexdigest()
            blob = blob_key(store.prefix, md5, len(data))
            try:
                dst.stat(store.container, blob)  # stored once, whatever its key
            except KeyError:
                assert dst.write(store.container, blob, [data]).md5 == md5
            entries.append(ManifestEntry(key=info.key, size=len(data), md5=md5, blob=blob,
                                         source_version=info.version, source_etag=info.etag,
                                         last_modified=info.last_modified))
        run_id = run_id or f"scheduled__{when:%Y%m%dT%H%M%S}"
        manifest = Manifest(
            policy=policy.name, point_id=new_point_id(when, run_id), run_id=run_id,
            started_at=when.strftime("%Y-%m-%dT%H:%M:%SZ"), finished_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            source=policy.source.model_dump(), destination=policy.destination.model_dump(), entries=tuple(entries),
            stats={"listed": len(entries)},
        )
        write_manifest(dst, store.container, store.prefix, manifest)
        return manifest

    def corrupt_blob(self, policy_name: str, manifest: Manifest, key: str, *, keep_recorded_md5: bool = False) -> str:
        """Overwrite the blob holding ``key`` directly in the backup store (bit rot when keep_recorded_md5)."""
        policy = self.policy(policy_name)
        store = policy.destination
        cloud = self.cloud(store.target)
        entry = manifest.by_key[key]
        original = raw_get(cloud, store.container, entry.blob)
        assert original is not None
        damaged = bytes([original[0] ^ 0xFF]) + original[1:]
        raw_put(cloud, store.container, entry.blob, damaged)
        if keep_recorded_md5:  # the cloud still claims the old MD5: only hashing the bytes can tell
            assert cloud == "azure", "only Azure lets a caller set a blob's recorded MD5"
            from azure.storage.blob import ContentSettings

            _blobs().get_blob_client(store.container, entry.blob).set_http_headers(
                content_settings=ContentSettings(content_md5=bytearray(bytes.fromhex(entry.md5))))
        return entry.blob


def make_estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Estate:
    """This file's policies (RUNBOOKS_BACKUP_POLICIES), their buckets / containers and the scratch ones."""
    path = tmp_path / "policies.yaml"
    path.write_text(POLICIES)
    monkeypatch.setenv("RUNBOOKS_BACKUP_POLICIES", str(path))
    made = Estate()
    for name in ("rt-aws-to-gcp", "rt-gcp-to-azure", "rt-azure-to-aws"):
        policy = made.policy(name)
        for location in (policy.source, policy.destination):
            make_container(made.cloud(location.target), location.container)
    for cloud, name in SCRATCH.items():
        make_container(cloud, name)
    return made


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Estate:
    return make_estate(tmp_path, monkeypatch)


# ---- the runbook's tasks, in the DAG's order, through the same functions ---------------------------------
class FakeTI:
    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


DECLARED = ("policy", "point", "prefix", "destination", "dry_run", "reason", "max_concurrency", "max_errors",
            "idempotency_key")
APPROVE = {"chosen_options": ["Approve"], "approved": True, "responded_by": "carol", "timed_out": False}


def unique(run_id: str) -> str:
    return f"{run_id}__{uuid.uuid4().hex[:8]}"


def task_context(run_id: str, params: dict[str, Any], conf: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "run_id": run_id, "ti": FakeTI(), "params": dict(params),
        "dag": SimpleNamespace(dag_id="restore_objects", params={k: None for k in DECLARED}),
        "dag_run": SimpleNamespace(dag_id="restore_objects", run_id=run_id, conf=dict(conf if conf is not None else params),
                                   run_type="manual", triggering_user_name="tester"),
    }


def run_restore(run_id: str, decision: dict[str, Any] | None = APPROVE, **params: Any) -> dict[str, Any]:
    """resolve -> plan -> (report_plan | [approve] -> apply -> verify -> report); the result document.

    The run id gets a unique suffix: the change ledger (one per test session) keys on it.
    """
    run_id = unique(run_id)
    ctx = task_context(run_id, {"dry_run": True, **params})
    planned = plan_task(ctx)
    change_set = ChangeSet.from_dict(planned)
    if not change_set.applies:
        RESTORE.report_plan(ctx, planned)
    else:
        given = decision if change_set.needs_approval else None
        applied = RESTORE.apply(ctx, planned, given)
        verified = RESTORE.verify(ctx, applied)
        try:
            RESTORE.report(ctx, planned=planned, decision=given, applied=applied, verified=verified)
        except _fail_type() as exc:  # the report task fails the run, after writing result.json
            failed = str(exc)
        else:
            failed = None
        result = dict(json.loads(report.result_path(WORDING, run_id).read_text()))
        assert (failed is not None) == (result["status"] == "failed"), failed
        return {**result, "report_failed": failed}
    return dict(json.loads(report.result_path(WORDING, run_id).read_text()))


def plan_task(ctx: dict[str, Any]) -> dict[str, Any]:
    """resolve_point then plan_restore, as the DAG chains them."""
    from include.backup.restore import plan_restore

    return plan_restore(ctx, resolve_request(ctx))


def _fail_type() -> type[BaseException]:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException


# ---- point in time -------------------------------------------------------------------------------------------
def test_point_in_time_restore_of_an_old_point_after_changes_and_deletes(estate: Estate) -> None:
    name = "rt-aws-to-gcp"
    for key, body in (("data/a.csv", b"a v1\n" * 100), ("data/b.csv", b"b v1\n" * 50), ("data/c.bin", os.urandom(3000))):
        estate.put(name, key, body)
    old = estate.source_contents(name)
    first = estate.backup(name, T0, "backup-1")
    estate.put(name, "data/a.csv", b"a v2, changed\n")  # changed
    estate.delete(name, "data/b.csv")  # deleted
    estate.put(name, "data/d.csv", b"new since the point\n")  # added
    estate.backup(name, T0 + timedelta(hours=1), "backup-2")

    dry = run_restore("pit-dry", policy=name, point="backup-1")
    assert dry["status"] == "dry_run" and dry["point"]["id"] == first.point_id
    assert dry["objects"] == {"written": ["data/b.csv"], "overwritten": ["data/a.csv"], "left_alone": ["data/c.bin"],
                              "plan_failed": []}
    assert dry["not_in_point"]["count"] == 1 and dry["not_in_point"]["keys"] == ["data/d.csv"]
    assert dry["approval"]["required"] is True

    done = run_restore("pit-real", policy=name, point="backup-1", dry_run=False, reason="INC-1")
    assert done["status"] == "restored", done["failed"]
    assert done["approver"] == "carol" and done["point"]["id"] == first.point_id
    assert done["totals"] == {**done["totals"], "changed": 2, "verified": 3, "failed": 0, "not_verified": 0}
    now = estate.source_contents(name)
    assert {k: now[k] for k in old} == old, "every object of the old point has exactly its old bytes"
    assert now["data/d.csv"] == b"new since the point\n", "an object the point does not hold is left alone"
    src = estate.policy(name).source
    assert raw_metadata("aws", src.container, "data/a.csv")[RESTORED_FROM_META] == first.point_id
    assert RESTORED_FROM_META not in raw_metadata("aws", src.container, "data/c.bin"), "identical: not rewritten"
    trail = read_audit(run_id=done["run_id"])
    applied = {r.resource: r.outcome for r in trail if r.step == "apply"}
    assert applied == {"s3://rt-src-aws/data/a.csv": "changed", "s3://rt-src-aws/data/b.csv": "changed",
                       "s3://rt-src-aws/data/c.bin": "unchanged"}
    assert all(r.approver == "carol" and r.actor == "tester" for r in trail if r.step != "plan")


def test_point_selection_newest_at_or_before_a_time_and_refusals(estate: Estate) -> None:
    name = "rt-gcp-to-azure"
    points = []
    for n in range(3):
        estate.put(name, "app/state.json", json.dumps({"version": n}).encode())
        points.append(estate.backup(name, T0 + timedelta(hours=n), f"run-{n}"))

    def chosen(at: str | None) -> str:
        return resolve(RestoreRequest(policy=name, point=at)).manifest.point_id

    assert chosen(None) == points[2].point_id  # newest
    assert chosen("2026-11-01T07:30:00Z") == points[1].point_id  # newest at or before
    assert chosen("2026-11-01T07:00:00+00:00") == points[1].point_id  # exactly at
    assert chosen("2026-11-01T08:00:00") == points[2].point_id  # no zone: UTC
    assert chosen("run-0") == points[0].point_id  # a backup run id
    assert chosen(points[1].point_id) == points[1].point_id  # a point id
    with pytest.raises(RestoreError, match="no point at or before 2026-11-01T05:00:00Z; the oldest is"):
        chosen("2026-11-01T05:00:00Z")
    with pytest.raises(RestoreError, match=f"no point with id or run id 'run-9'; points: .*{points[2].point_id}"):
        chosen("run-9")

    # restore the point of 07:30 into a scratch location: the bytes of run-1
    done = run_restore("pit-ts", policy=name, point="2026-11-01T07:30:00Z",
                       destination=f"gcp-prod:{SCRATCH['gcp']}/restores/ts/", dry_run=False, reason="INC-2")
    assert done["status"] == "restored" and done["point"]["id"] == points[1].point_id
    assert raw_get("gcp", SCRATCH["gcp"], "restores/ts/app/state.json") == b'{"version": 1}'
    assert done["approver"] is None and done["approval"]["required"] is False  # only new objects: no approval
    assert estate.get(name, "app/state.json") == b'{"version": 2}', "the original location is untouched"


def test_prefix_filter_restores_only_matching_keys(estate: Estate) -> None:
    name = "rt-azure-to-aws"
    for key in ("logs/1.txt", "logs/2.txt", "reports/q1.txt", "reports/q2.txt"):
        estate.put(name, key, key.encode() * 10)
    estate.backup(name, T0)
    done = run_restore("prefix", policy=name, prefix="reports/", destination=f"azure-prod:{SCRATCH['azure']}/p/",
                       dry_run=False, reason="INC-3")
    assert done["status"] == "restored" and done["totals"]["resources"] == 2
    assert raw_keys("azure", SCRATCH["azure"]) == ["p/reports/q1.txt", "p/reports/q2.txt"]
    assert raw_get("azure", SCRATCH["azure"], "p/reports/q2.txt") == b"reports/q2.txt" * 10
    with pytest.raises(RestoreError, match="no object of point .* has a key starting with 'nothing/'"):
        resolve(RestoreRequest(policy=name, prefix="nothing/"))


@pytest.mark.parametrize("name", ["rt-aws-to-gcp", "rt-gcp-to-azure", "rt-azure-to-aws"])
def test_an_object_of_several_chunks_restores_on_every_cloud(estate: Estate, name: str) -> None:
    """More than one read range and a multipart / block / resumable write, hashed across all of them."""
    from include.capabilities.object_store import CHUNK_SIZE

    prefix = estate.policy(name).source.prefix
    big = os.urandom(CHUNK_SIZE + 1024 * 1024 + 7)
    estate.put(name, f"{prefix}big.bin", big)
    estate.backup(name, T0)
    estate.delete(name, f"{prefix}big.bin")
    done = run_restore("big", policy=name, dry_run=False, reason="INC-9")
    assert done["status"] == "restored" and done["totals"]["changed"] == 1
    assert hashlib.md5(estate.get(name, f"{prefix}big.bin") or b"").hexdigest() == hashlib.md5(big).hexdigest()


# ---- dry run, approval, the ledger --------------------------------------------------------------------------
def test_dry_run_lists_each_object_and_changes_nothing(estate: Estate) -> None:
    name = "rt-azure-to-aws"
    for key in ("keep.txt", "change.txt", "gone.txt"):
        estate.put(name, key, f"{key} at the point".encode())
    estate.backup(name, T0)
    estate.put(name, "change.txt", b"changed later")
    estate.delete(name, "gone.txt")
    estate.put(name, "extra.txt", b"not in the point")
    before = estate.source_contents(name)

    dry = run_restore("dry", policy=name)  # dry_run defaults to true
    assert dry["status"] == "dry_run" and dry["dry_run"] is True
    assert dry["objects"] == {"written": ["gone.txt"], "overwritten": ["change.txt"], "left_alone": ["keep.txt"],
                              "plan_failed": []}
    assert dry["not_in_point"] == {**dry["not_in_point"], "count": 1, "keys": ["extra.txt"]}
    lines = "\n".join(dry["plan"])
    assert "change.txt: OVERWRITE" in lines and "[DESTRUCTIVE]" in lines
    assert "gone.txt: write (absent at the destination)" in lines
    assert "keep.txt: identical to the point, left alone" in lines
    assert estate.source_contents(name) == before, "a dry run writes nothing"
    trail = read_audit(run_id=dry["run_id"])
    assert {r.outcome for r in trail} == {"skipped", "unchanged"} and {r.step for r in trail} == {"plan"}


def test_overwrites_need_approval_new_objects_do_not(estate: Estate) -> None:
    name = "rt-aws-to-gcp"
    estate.put(name, "data/x.txt", b"x at the point")
    estate.put(name, "data/y.txt", b"y at the point")
    estate.backup(name, T0)
    estate.delete(name, "data/y.txt")

    # only an absent object: no approval needed, applied without a decision
    ctx = task_context(unique("new-only"), {"policy": name, "dry_run": False, "reason": "INC-4"})
    planned = plan_task(ctx)
    assert ChangeSet.from_dict(planned).needs_approval is False
    assert "Apply 1 object restore on aws-prod?" == ctx["ti"].pushed["approval_subject"]
    RESTORE.apply(ctx, planned, None)
    assert estate.get(name, "data/y.txt") == b"y at the point"

    # an overwrite: apply refuses without an Approve, also when the change set claims otherwise
    estate.put(name, "data/x.txt", b"x changed")
    ctx = task_context(unique("overwrite"), {"policy": name, "dry_run": False, "reason": "INC-4"})
    planned = plan_task(ctx)
    assert ChangeSet.from_dict(planned).needs_approval is True
    assert ctx["ti"].pushed["approval_subject"] == "Apply 1 object restore on aws-prod? (1 destructive)"
    assert "OVERWRITE" in ctx["ti"].pushed["approval_body"] and "s3:PutObject" in ctx["ti"].pushed["approval_body"]
    for decision in (None, {**APPROVE, "chosen_options": ["Reject"], "approved": False}):
        with pytest.raises(_fail_type(), match="no approval recorded|not approved"):
            RESTORE.apply(ctx, planned, decision)
    forged = {**planned, "approval_required": False}
    with pytest.raises(_fail_type(), match="no approval recorded"):
        RESTORE.apply(ctx, forged, None)
    assert estate.get(name, "data/x.txt") == b"x changed"
    # a dry-run change set never applies
    with pytest.raises(_fail_type(), match="a dry run never applies"):
        RESTORE.apply(ctx, {**planned, "dry_run": True}, APPROVE)


def test_a_rerun_with_the_same_key_restores_nothing_twice(estate: Estate) -> None:
    name = "rt-gcp-to-azure"
    for n in range(3):
        estate.put(name, f"app/{n}.txt", f"object {n}".encode())
    estate.backup(name, T0)
    for n in range(3):
        estate.delete(name, f"app/{n}.txt")
    key = f"INC-{uuid.uuid4().hex[:8]}"
    first = run_restore("key-1", policy=name, dry_run=False, reason="r", idempotency_key=key)
    assert first["status"] == "restored" and first["totals"]["changed"] == 3

    # after the restore the application wrote app/0.txt again and someone deleted app/1.txt: the same key
    # does not write either again (done earlier), so the application's new bytes stay
    estate.put(name, "app/0.txt", b"written by the application after the restore")
    estate.delete(name, "app/1.txt")
    again = run_restore("key-2", policy=name, dry_run=False, reason="r", idempotency_key=key)
    outcomes = {i["record"]["name"]: i["outcome"] for i in again["items"]}
    assert outcomes == {"app/0.txt": "done_earlier", "app/1.txt": "done_earlier", "app/2.txt": "unchanged"}
    assert estate.get(name, "app/0.txt") == b"written by the application after the restore"
    assert estate.get(name, "app/1.txt") is None
    # and says so: those two are not as the point recorded
    assert again["status"] == "failed" and {r["resource_id"] for r in again["not_verified"]} == {
        "gs://rt-src-gcp/app/0.txt", "gs://rt-src-gcp/app/1.txt"}
    assert "gs://rt-src-gcp/app/0.txt" in again["report_failed"]

    # a new key is a new restore: it writes what differs (after approval: app/0.txt is an overwrite)
    fresh = run_restore("key-3", policy=name, dry_run=False, reason="r", idempotency_key=f"{key}-b")
    assert fresh["status"] == "restored" and fresh["totals"]["changed"] == 2
    assert estate.get(name, "app/0.txt") == b"object 0"


def test_an_object_changed_after_the_plan_is_not_overwritten(estate: Estate) -> None:
    name = "rt-aws-to-gcp"
    estate.put(name, "data/late.txt", b"at the point")
    estate.put(name, "data/other.txt", b"other")
    estate.backup(name, T0)
    estate.delete(name, "data/late.txt")
    estate.delete(name, "data/other.txt")
    ctx = task_context(unique("late"), {"policy": name, "dry_run": False, "reason": "INC-5"})
    planned = plan_task(ctx)
    assert ChangeSet.from_dict(planned).needs_approval is False  # two absent objects
    estate.put(name, "data/late.txt", b"written between the plan and apply")
    applied = ChangeSet.from_dict(RESTORE.apply(ctx, planned, None))
    by_key = {i.record.name: i for i in applied.items}
    assert by_key["data/other.txt"].outcome == "changed"
    assert by_key["data/late.txt"].outcome == "failed"
    assert "changed since the plan" in (by_key["data/late.txt"].apply_error or "")
    assert estate.get(name, "data/late.txt") == b"written between the plan and apply"


@pytest.mark.parametrize("keep_recorded_md5", [False, True], ids=["recorded-md5-differs", "bit-rot"])
def test_a_corrupted_blob_is_never_written(estate: Estate, keep_recorded_md5: bool) -> None:
    name = "rt-gcp-to-azure"  # the backup store is Azure: it lets the test keep the old recorded MD5
    estate.put(name, "app/good.txt", b"good bytes" * 100)
    estate.put(name, "app/bad.txt", b"precious bytes" * 100)
    point = estate.backup(name, T0)
    blob = estate.corrupt_blob(name, point, "app/bad.txt", keep_recorded_md5=keep_recorded_md5)
    estate.put(name, "app/bad.txt", b"current bytes")
    estate.delete(name, "app/good.txt")
    done = run_restore("corrupt", policy=name, dry_run=False, reason="INC-6")
    assert done["status"] == "failed"
    (failure,) = done["failed"]
    assert failure["resource_id"] == "gs://rt-src-gcp/app/bad.txt" and blob in failure["error"]
    assert "corrupted in the backup store" in failure["error"] and blob in done["report_failed"]
    assert estate.get(name, "app/bad.txt") == b"current bytes", "the destination keeps its bytes"
    assert estate.get(name, "app/good.txt") == b"good bytes" * 100, "the other objects are restored"


def test_checked_stream_passes_good_bytes_and_stops_bad_ones() -> None:
    good = [b"abc", b"def"]
    md5 = hashlib.md5(b"abcdef").hexdigest()
    assert list(checked_stream(good, md5=md5, size=6, what="blob")) == good
    with pytest.raises(Exception, match="hash to md5 .* the manifest says"):
        list(checked_stream([b"abc", b"deX"], md5=md5, size=6, what="blob"))
    stream = checked_stream([b"abc", b"defg"], md5=md5, size=6, what="blob")
    assert next(stream) == b"abc"
    with pytest.raises(Exception, match="more than the manifest's 6 bytes"):
        next(stream)


# ---- bad requests -------------------------------------------------------------------------------------------
def test_bad_requests_are_refused_before_anything_is_read_or_written(estate: Estate) -> None:
    name = "rt-aws-to-gcp"
    estate.put(name, "data/a.txt", b"a")
    estate.backup(name, T0)
    fail = _fail_type()
    cases = {
        "unknown parameter(s) 'destnation'": ({"policy": name}, {"policy": name, "destnation": "original"}),
        "unknown backup policy 'nope'; known: rt-aws-to-gcp, rt-gcp-to-azure, rt-azure-to-aws": ({"policy": "nope"}, None),
        "policy is required; known: rt-aws-to-gcp, rt-gcp-to-azure, rt-azure-to-aws": ({}, None),
        "reason is required": ({"policy": name, "dry_run": False}, None),
        "destination: unknown target 'aws-nope'; known: aws-prod, gcp-prod, azure-prod": (
            {"policy": name, "destination": "aws-nope:bucket/x/"}, None),
        "lies inside the policy's source": ({"policy": name, "destination": "aws-prod:rt-src-aws/data/old/"}, None),
        "overlaps the backup store": ({"policy": name, "destination": "gcp-prod:rt-bk-gcp/aws/rt-src-aws/x/"}, None),
        "the bucket / container does not exist": ({"policy": name, "destination": "gcp-prod:rt-no-such-bucket/x/"}, None),
        "no point with id or run id 'nope'": ({"policy": name, "point": "nope"}, None),
        "max_concurrency must be a whole number": ({"policy": name, "max_concurrency": "lots"}, None),
    }
    for message, (params, conf) in cases.items():
        with pytest.raises(fail, match=message.replace("(", r"\(").replace(")", r"\)")):
            resolve_request(task_context("bad", params, conf))
    assert raw_keys("gcp", SCRATCH["gcp"]) == [] and raw_keys("aws", "rt-src-aws") == ["data/a.txt"]
    assert not report.result_path(WORDING, "bad").exists()


# ---- the DAG ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "restore_objects.py"))
    assert not bag.import_errors
    return bag.dags["restore_objects"]


def test_dag_wiring_and_approval_gate(dag: Any) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    assert dag.dag_id == "restore_objects" and type(dag.timetable).__name__ == "NullTimetable"
    down = {t.task_id: set(t.downstream_task_ids) for t in dag.tasks}
    assert down["resolve_point"] == {"plan_restore"}
    assert down["choose_path"] == {"report_plan", "approve_overwrites", "apply_restore"}
    assert down["approve_overwrites"] == {"apply_restore"}  # Reject skips exactly apply_restore (and so the rest)
    assert down["apply_restore"] == {"verify_restore"} and down["verify_restore"] == {"report"}
    approve = dag.get_task("approve_overwrites")
    assert isinstance(approve, ApprovalOperator) and approve.defaults == ["Reject"] and approve.retries >= 1
    assert str(dag.get_task("apply_restore").trigger_rule).endswith(("none_failed_min_one_success",
                                                                     "NONE_FAILED_MIN_ONE_SUCCESS"))
    assert str(dag.get_task("report").trigger_rule).endswith(("all_done", "ALL_DONE"))
    schema = {k: dag.params.get_param(k).schema for k in dag.params}
    assert schema["policy"]["type"] == ["null", "string"], "required, but refused by the first task, not the form"
    for optional in ("point", "prefix", "destination", "reason", "idempotency_key"):
        assert "null" in schema[optional]["type"], optional
    assert dag.params["dry_run"] is True and dag.params["max_concurrency"] == "8"
    import re

    from include.backup.policies import POLICY_NAME_PATTERN
    from include.backup.restore import DESTINATION_PATTERN

    assert schema["policy"]["pattern"] == POLICY_NAME_PATTERN and schema["destination"]["pattern"] == DESTINATION_PATTERN
    assert re.match(DESTINATION_PATTERN, "gcp-prod:rt-scratch/restores/x/") and re.match(DESTINATION_PATTERN, "original")
    assert not re.match(DESTINATION_PATTERN, "s3://bucket/key")


def test_permissions_are_declared_per_destination_cloud(estate: Estate) -> None:
    from include.backup.restore import BACKUP_STORE_PERMISSIONS, STEPS, resolver

    name = "rt-gcp-to-azure"
    estate.put(name, "app/a", b"a")
    estate.backup(name, T0)
    estate.delete(name, "app/a")
    resolved = resolve(RestoreRequest(policy=name))
    resolve_step = resolver(resolved.change_set().request["resolved"])
    items = engine.plan_items(resolved.items, resolve_step)
    assert engine.permissions(items, resolve_step) == {"gcp": sorted(STEPS["gcp"].permissions)}
    assert set(STEPS) == set(BACKUP_STORE_PERMISSIONS) == {"aws", "gcp", "azure"}
    text = (PROJECT_ROOT / "docs" / "restore.md").read_text()
    for cloud, step in STEPS.items():
        assert step.permissions and step.resource_types
        for permission in (*step.permissions, *BACKUP_STORE_PERMISSIONS[cloud]):
            assert f"`{permission}`" in text, f"docs/restore.md: list {permission} ({cloud})"


# ---- end to end through Airflow (dag.test in a child process, killed on timeout) -----------------------------
def _wait_for_approval_request(deadline: float) -> str:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    while time.monotonic() < deadline:
        with create_session() as session:
            ti = session.scalar(select(TaskInstance).where(
                TaskInstance.dag_id == "restore_objects", TaskInstance.task_id == "approve_overwrites",
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT))
            if ti is not None:
                return str(ti.run_id)
        time.sleep(0.5)
    raise AssertionError("approve_overwrites never reached awaiting_input")


def _answer_approval(run_id: str, option: str, user: str) -> None:
    """Answer through the REST API's own handler (PATCH .../hitlDetails), as a signed-in user would."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    time.sleep(2.5)  # Airflow 3.3.2: an answer within ~1 s of waiting can fail the task
    with create_session() as session:
        update_hitl_detail(
            dag_id="restore_objects", dag_run_id=run_id, task_id="approve_overwrites",
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option], params_input={}),
            user=SimpleAuthManagerUser(username=user, role="user"), session=session, map_index=-1,
        )


@pytest.mark.slow
def test_dag_restore_into_the_original_location_after_approval(estate: Estate, airflow_db: Path) -> None:
    name = "rt-azure-to-aws"
    for key in ("same.txt", "changed.txt", "deleted.txt"):
        estate.put(name, key, f"{key} at the point".encode() * 20)
    point = estate.backup(name, T0)
    estate.put(name, "changed.txt", b"changed later")
    estate.delete(name, "deleted.txt")
    wanted = {k: f"{k} at the point".encode() * 20 for k in ("same.txt", "changed.txt", "deleted.txt")}

    started = time.monotonic()
    proc = start_dag("restore_objects", {"policy": name, "dry_run": False, "reason": "INC-7 restore", "idempotency_key": "INC-7"})
    try:
        run_id = _wait_for_approval_request(deadline=time.monotonic() + 240)
        assert estate.get(name, "changed.txt") == b"changed later", "nothing is written before the approval"
        _answer_approval(run_id, "Approve", "approver")
    except BaseException:
        proc.kill()
        raise
    result = proc.finish(timeout=240)
    print(f"restore_objects with approval, dag.test: {time.monotonic() - started:.1f}s")
    assert result["state"] == "success", result["output"][-4000:]
    tasks = result["tasks"]
    assert tasks["report_plan"] == "skipped" and tasks["approve_overwrites"] == "success"
    assert tasks["apply_restore"] == tasks["verify_restore"] == tasks["report"] == "success"
    assert estate.source_contents(name) == wanted
    src = estate.policy(name).source
    assert RESTORED_FROM_META not in raw_metadata("azure", src.container, "same.txt"), "identical: left alone"
    assert raw_metadata("azure", src.container, "changed.txt")[RESTORED_FROM_META] == point.point_id
    saved = json.loads(report.result_path(WORDING, run_id).read_text())
    assert saved["status"] == "restored" and saved["approver"] == "approver"
    assert saved["point"]["id"] == point.point_id
    assert saved["objects"]["overwritten"] == ["changed.txt"] and saved["objects"]["written"] == ["deleted.txt"]


@pytest.mark.slow
def test_dag_dry_run_then_scratch_restore_without_approval(estate: Estate, airflow_db: Path) -> None:
    from tests.dagrun import run_dag

    name = "rt-aws-to-gcp"
    estate.put(name, "data/one.txt", b"one")
    estate.put(name, "data/two.txt", b"two" * 1000)
    estate.backup(name, T0)
    estate.put(name, "data/one.txt", b"one, changed")
    dry = run_dag("restore_objects", {"policy": name}, timeout=240)
    assert dry["state"] == "success", dry["output"][-4000:]
    assert dry["tasks"]["report_plan"] == "success"
    assert {dry["tasks"][t] for t in ("approve_overwrites", "apply_restore", "verify_restore", "report")} == {"skipped"}
    assert json.loads(report.result_path(WORDING, dry["run_id"]).read_text())["objects"]["overwritten"] == ["data/one.txt"]
    assert estate.get(name, "data/one.txt") == b"one, changed"

    scratch = run_dag("restore_objects", {"policy": name, "destination": f"aws-prod:{SCRATCH['aws']}/r/",
                                          "dry_run": False, "reason": "check the old bytes"}, timeout=240)
    assert scratch["state"] == "success", scratch["output"][-4000:]
    assert scratch["tasks"]["approve_overwrites"] == "skipped" and scratch["tasks"]["apply_restore"] == "success"
    assert raw_get("aws", SCRATCH["aws"], "r/data/one.txt") == b"one"
    assert raw_get("aws", SCRATCH["aws"], "r/data/two.txt") == b"two" * 1000
    saved = json.loads(report.result_path(WORDING, scratch["run_id"]).read_text())
    assert saved["status"] == "restored" and saved["approver"] is None and saved["totals"]["verified"] == 2


# ---- the change-engine additions this runbook needs (an approval rule, runbook data in the result) ---------------
def test_a_rejected_restore_writes_nothing_and_says_so(estate: Estate) -> None:
    name = "rt-aws-to-gcp"
    estate.put(name, "data/x.txt", b"at the point")
    estate.backup(name, T0)
    estate.put(name, "data/x.txt", b"newer bytes")
    ctx = task_context(unique("reject"), {"policy": name, "dry_run": False, "reason": "INC-8"})
    planned = plan_task(ctx)
    reject = {"chosen_options": ["Reject"], "approved": False, "responded_by": "dave", "timed_out": False}
    # the approval task skips apply on Reject; the report records the rejection and ends green
    result = RESTORE.report(ctx, planned=planned, decision=reject, applied=None, verified=None)
    assert result["status"] == "rejected" and result["approver"] == "dave"
    saved = json.loads(report.result_path(WORDING, ctx["run_id"]).read_text())
    assert saved["decision"]["chosen_options"] == ["Reject"] and saved["point"]["objects"] == 1
    assert estate.get(name, "data/x.txt") == b"newer bytes"
    # without any decision where one is needed, the report fails instead of pretending
    with pytest.raises(_fail_type(), match="approval task did not complete"):
        RESTORE.report(ctx, planned=planned, decision=None, applied=None, verified=None)


def test_engine_approval_rule_and_result_extra() -> None:
    from include.changes.engine import Item, destructive_changes, needs_approval
    from include.changes.model import Change
    from include.records import ResourceRecord

    def item(key: str, destructive: bool | None) -> Item:
        record = ResourceRecord(cloud="aws", target="aws-prod", account="1", region="us-east-1", service="s3",
                                resource_type="aws.s3.object", resource_id=f"s3://b/{key}", name=key)
        change = None if destructive is None else Change(
            step="s", operation="action", resource={"resource_id": record.resource_id, "target": "aws-prod"},
            action="a", request={}, before=None, after={}, summary=key, destructive=destructive)
        return Item(step="s", record=record, change=change)

    new_only, overwrite, nothing = [item("a", False)], [item("a", False), item("b", True)], [item("c", None)]
    assert needs_approval(new_only, dry_run=False) is True, "without a rule every change asks (remediation)"
    assert needs_approval(new_only, dry_run=False, rule=destructive_changes) is False
    assert needs_approval(overwrite, dry_run=False, rule=destructive_changes) is True
    assert needs_approval(overwrite, dry_run=True, rule=destructive_changes) is False
    assert needs_approval(nothing, dry_run=False) is False
    for items, required in ((new_only, False), (overwrite, True)):
        change_set = ChangeSet(request={}, items=tuple(items), dry_run=False, approval_required=required)
        again = ChangeSet.from_dict(json.loads(json.dumps(change_set.to_dict())))
        assert again.approval_required is required and again.needs_approval is required and again.applies
    legacy = ChangeSet.from_dict({"request": {}, "items": [], "dry_run": False})  # written before the field existed
    assert legacy.approval_required is None
    doc = report.summarise(overwrite, WORDING, status="dry_run", run_id="r", dry_run=True, request={},
                           extra={"point": {"id": "p"}})
    assert doc["point"] == {"id": "p"}
    with pytest.raises(ValueError, match=r"extra result keys \['status'\]"):
        report.summarise(overwrite, WORDING, status="dry_run", run_id="r", dry_run=True, request={},
                         extra={"status": "mine"})
