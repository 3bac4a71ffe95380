"""The restore_drill runbook: scratch prefixes, restore of the newest point, 100% checksum verification, RPO and
restore time, teardown after a failure, the history and its report, against the emulators.

Points in time come from tests/test_restore.py's small backup over the manifest contract, and once from the
real copier (include/backup/runner.py) to show that the drill restores what backup_object_stores writes.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from include.backup import drill
from include.backup.drill import DrillSpec, Scratch
from include.backup.restore import RestoreError
from include.charts import BAD
from tests.test_restore import SCRATCH, T0, Estate, FakeTI, make_estate, raw_keys, raw_put

PROJECT_ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("rt-aws-to-gcp", "rt-gcp-to-azure", "rt-azure-to-aws")
#: Objects per policy: a few small ones, one of two chunks' size boundary, one empty.
CONTENTS = {
    "rt-aws-to-gcp": {"data/a.csv": b"a,b\n" * 500, "data/deep/b.bin": bytes(range(256)) * 40, "data/empty": b""},
    "rt-gcp-to-azure": {"app/config.json": b'{"x": 1}', "app/blob.bin": bytes(range(7, 250)) * 300},
    "rt-azure-to-aws": {"reports/q1.txt": b"q1" * 1000, "reports/q2.txt": b"q2" * 10},
}


@pytest.fixture
def estate(clean_clouds: Any, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Estate:
    """tests/test_restore.py's policies on clean emulators (see its module docstring)."""
    return make_estate(tmp_path, monkeypatch)


def _fail_type() -> type[BaseException]:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException


def seed(estate: Estate, when: datetime) -> dict[str, Any]:
    """Each policy's source objects, and a point of them taken at ``when``."""
    points = {}
    for name, objects in CONTENTS.items():
        for key, body in objects.items():
            estate.put(name, key, body)
        points[name] = estate.backup(name, when, f"drill-seed-{when:%H%M%S}")
    return points


def context(run_id: str, params: dict[str, Any] | None = None, run_type: str = "scheduled") -> dict[str, Any]:
    declared = {"policies": None, "dry_run": None, "hash_sample_percent": 100, "scratch": None}
    return {"run_id": run_id, "ti": FakeTI(), "params": {**declared, **(params or {})},
            "dag": SimpleNamespace(dag_id="restore_drill", params=declared),
            "dag_run": SimpleNamespace(dag_id="restore_drill", run_id=run_id, conf=dict(params or {}), run_type=run_type)}


def run_drills(run_id: str, params: dict[str, Any] | None = None, run_type: str = "scheduled") -> dict[str, Any]:
    """The runbook's tasks in the DAG's order through the same functions; teardown runs whatever happened.

    Returns what each task gave (and raised) per policy, and the record task's outcome.
    """
    ctx = context(run_id, params, run_type)
    specs = drill.resolve_task(ctx)
    out: dict[str, Any] = {"specs": specs, "scratches": [], "verified": [], "restored": [], "removed": [], "errors": {}}
    for spec in specs:
        scratch = restored = verified = removed = None
        try:
            scratch = drill.setup_task(ctx, spec)
            restored = drill.restore_task(ctx, spec, scratch)
            ctx["ti"] = FakeTI()
            verified = drill.verify_task(ctx, spec, scratch, restored)
        except _fail_type() as exc:
            out["errors"][spec["policy"]] = str(exc)
            verified = ctx["ti"].pushed.get("drill")
        finally:
            if scratch is not None:
                out.setdefault("scratch", {})[spec["policy"]] = scratch
                out.setdefault("left_before_teardown", {})[spec["policy"]] = raw_keys(
                    _cloud(scratch["target"]), scratch["container"], scratch["prefix"])
                removed = drill.teardown_task(ctx, scratch)
        out["scratches"].append(scratch)
        out["verified"].append(verified)
        out["restored"].append(restored)
        out["removed"].append(removed)
    try:
        out["record"] = drill.record_task(ctx, specs, scratches=out["scratches"], results=out["verified"],
                                          restored=out["restored"], teardowns=out["removed"])
    except _fail_type() as exc:
        out["record_failed"] = str(exc)
    return out


def _cloud(target: str) -> str:
    from include.targets import load_targets

    return load_targets().get(target).cloud


# ---- a drill that passes -------------------------------------------------------------------------------------
def test_drill_restores_the_newest_point_verifies_and_removes_its_scratch(estate: Estate, data_dir: Path) -> None:
    now = datetime.now(UTC)
    seed(estate, now - timedelta(hours=3))  # older points: the drill must take the newest
    points = seed(estate, now - timedelta(minutes=10))
    estate.put("rt-aws-to-gcp", "data/a.csv", b"changed before the newest point")
    points["rt-aws-to-gcp"] = estate.backup("rt-aws-to-gcp", now - timedelta(minutes=10), "newest-aws")
    out = run_drills("scheduled__drill-ok")
    assert out["errors"] == {} and "record_failed" not in out, out.get("record_failed")

    for spec, result, removed in zip(out["specs"], out["verified"], out["removed"], strict=True):
        name = spec["policy"]
        point = points[name]
        assert result["success"] is True and result["point_id"] == point.point_id
        assert result["objects"] == len(point.entries) == result["verified"] == result["hashed"]
        assert result["bytes"] == point.total_bytes and result["mismatch_count"] == 0
        assert 600 <= result["rpo_seconds"] <= 600 + 120 and result["rpo_objective_seconds"] == 7200
        assert result["restore_seconds"] > 0 and result["bytes_per_second"] > 0
        assert result["restored_objects"] == len(point.entries)
        # the scratch prefix was the drill's own, in the backup store's container; it held the restored
        # objects (bytes equal to the point's) and is empty now
        scratch = out["scratch"][name]
        store = estate.policy(name).destination
        assert (scratch["target"], scratch["container"]) == (store.target, store.container)
        assert scratch["prefix"] == f"restore-drills/scheduled__drill-ok/{name}/"
        held = out["left_before_teardown"][name]
        assert f"{scratch['prefix']}drill.json" in held
        assert sorted(k for k in held if k.startswith(f"{scratch['prefix']}data/")) == sorted(
            f"{scratch['prefix']}data/{e.key}" for e in point.entries)
        assert removed == {"removed": len(held), "scratch": Scratch.from_dict(scratch).describe(), "left": 0}
        assert raw_keys(_cloud(store.target), store.container, "restore-drills/") == []
    assert out["verified"][0]["point_id"].endswith("newest-aws")

    history = drill.read_history()
    assert [line["policy"] for line in history] == list(POLICIES)
    assert all(line["success"] and line["rpo_met"] and line["scratch_removed"] for line in history)
    assert set(history[0]) == set(drill.HISTORY_FIELDS)
    page = drill.report_path().read_text()
    assert page.count("<svg") == 2 and all(name in page for name in POLICIES)


def test_a_policy_without_a_point_and_an_rpo_beyond_its_objective_fail(estate: Estate, data_dir: Path) -> None:
    for key, body in CONTENTS["rt-gcp-to-azure"].items():
        estate.put("rt-gcp-to-azure", key, body)
    estate.backup("rt-gcp-to-azure", T0)  # weeks ago: the objective is 2 h
    out = run_drills("scheduled__drill-rpo", {"policies": ["rt-gcp-to-azure", "rt-aws-to-gcp"]})
    assert "no restorable point" in out["errors"]["rt-aws-to-gcp"]
    assert "rt-gcp-to-azure" not in out["errors"], "an old point still restores and verifies"
    message = out["record_failed"]
    assert "rt-aws-to-gcp: no restorable point" in message
    assert "rt-gcp-to-azure: RPO" in message and "beyond the objective 7200 s" in message
    lines = {line["policy"]: line for line in drill.read_history()}
    assert lines["rt-gcp-to-azure"]["success"] is True and lines["rt-gcp-to-azure"]["rpo_met"] is False
    assert lines["rt-aws-to-gcp"]["success"] is False and lines["rt-aws-to-gcp"]["point_id"] is None


# ---- corruption -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("keep_recorded_md5", [False, True], ids=["recorded-md5-differs", "bit-rot"])
def test_the_drill_catches_a_corrupted_object_in_the_backup_store(
    estate: Estate, data_dir: Path, keep_recorded_md5: bool,
) -> None:
    points = seed(estate, datetime.now(UTC) - timedelta(minutes=5))
    name = "rt-gcp-to-azure"  # backup store: Azure (it lets the test keep the recorded MD5 of the old bytes)
    blob = estate.corrupt_blob(name, points[name], "app/blob.bin", keep_recorded_md5=keep_recorded_md5)
    out = run_drills("scheduled__drill-corrupt")
    assert set(out["errors"]) == {name}
    assert "restore drill of rt-gcp-to-azure FAILED" in out["errors"][name]
    assert "- app/blob.bin: " in out["errors"][name] and blob in out["errors"][name]
    assert "corrupted in the backup store" in out["errors"][name]
    result = out["verified"][POLICIES.index(name)]
    assert result["success"] is False and result["mismatch_count"] == 1
    assert [m["key"] for m in result["mismatches"]] == ["app/blob.bin"]
    assert result["verified"] == 1, "the other object of the point verified"
    assert "rt-gcp-to-azure: 1 mismatch(es): app/blob.bin" in out["record_failed"]
    # the scratch prefix is gone although the drill failed, and the corrupted bytes were never written there
    assert all(r is not None and r["left"] == 0 for r in out["removed"])
    assert not any(k.endswith("data/app/blob.bin") for k in out["left_before_teardown"][name])
    lines = {line["policy"]: line for line in drill.read_history()}
    assert lines[name]["success"] is False and lines[name]["mismatched"] == ["app/blob.bin"]
    assert lines["rt-aws-to-gcp"]["success"] is True


def test_verification_reads_recorded_checksums_and_hashes_the_sample(estate: Estate, data_dir: Path) -> None:
    """A restored object damaged in the scratch location while the cloud keeps the old recorded MD5: only
    hashing the bytes can tell. 100% hashed catches it; 0% checks recorded size + MD5 only (and says so)."""
    from azure.storage.blob import ContentSettings

    from include.backup.restore import store_for
    from include.targets import load_targets
    from tests.test_restore import _blobs

    points = seed(estate, datetime.now(UTC) - timedelta(minutes=5))
    name = "rt-gcp-to-azure"
    spec = drill.plan_drills(run_id="manual__verify", dry_run=False, policies=[name])[0]
    scratch = Scratch.from_dict(drill.create_scratch(spec))
    restored = drill.restore_newest_point(spec, scratch)
    assert restored["restored_objects"] == 2 and restored["failures"] == []
    entry = points[name].by_key["app/blob.bin"]
    damaged_key = f"{scratch.data_prefix}app/blob.bin"
    raw_put("azure", scratch.container, damaged_key, b"X" * entry.size)
    _blobs().get_blob_client(scratch.container, damaged_key).set_http_headers(
        content_settings=ContentSettings(content_md5=bytearray(bytes.fromhex(entry.md5))))
    store = store_for(load_targets().get(scratch.target))
    assert store.stat(scratch.container, damaged_key).md5 == entry.md5, "the cloud still records the old MD5"

    everything = drill.verify_checksums(spec, scratch, restored)
    assert everything["success"] is False and everything["hashed"] == 2
    (mismatch,) = everything["mismatches"]
    assert mismatch["key"] == "app/blob.bin" and mismatch["problem"].startswith("bytes hash to md5")
    none_hashed = drill.verify_checksums(DrillSpec(**{**spec.to_dict(), "hash_sample_percent": 0}), scratch, restored)
    assert none_hashed["hashed"] == 0 and none_hashed["verified"] == 2 and none_hashed["success"] is True
    half = [k for k in ("a", "b", "c", "d", "e", "f", "g", "h") if drill.in_sample(k, 50)]
    assert half == [k for k in ("a", "b", "c", "d", "e", "f", "g", "h") if drill.in_sample(k, 50)]  # stable
    assert all(drill.in_sample(k, 100) for k in "abcdefgh") and not any(drill.in_sample(k, 0) for k in "abcdefgh")
    drill.remove_scratch(scratch.to_dict())


# ---- refusals, dry run ------------------------------------------------------------------------------------------
def test_bad_requests_and_unusable_scratch_locations(estate: Estate, data_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fail = _fail_type()
    with pytest.raises(fail, match="unknown policy nope; known: rt-aws-to-gcp, rt-gcp-to-azure, rt-azure-to-aws"):
        drill.resolve_task(context("r", {"policies": ["nope"]}))
    with pytest.raises(fail, match="scratch names policy not drilled: rt-azure-to-aws"):
        drill.resolve_task(context("r", {"policies": ["rt-aws-to-gcp"], "scratch": {"rt-azure-to-aws": "aws-prod:x/"}}))
    typo = context("r")
    typo["dag_run"] = SimpleNamespace(dag_id="restore_drill", run_id="r", conf={"polices": []}, run_type="manual")
    with pytest.raises(fail, match=r"unknown parameter\(s\) 'polices'"):
        drill.resolve_task(typo)
    with pytest.raises(RestoreError, match="hash_sample_percent must be 0..100"):
        drill.plan_drills(run_id="r", dry_run=False, hash_sample_percent=101)
    # a policy whose scratch cannot work fails alone (at create_scratch), the others still run
    bad = drill.plan_drills(run_id="r", dry_run=False, scratch={"rt-aws-to-gcp": "aws-prod:rt-src-aws/data/"})
    by_name = {s.policy: s for s in bad}
    assert "lies inside the policy's source" in (by_name["rt-aws-to-gcp"].problem or "")
    assert by_name["rt-gcp-to-azure"].problem is None
    with pytest.raises(drill.DrillError, match="lies inside"):
        drill.create_scratch(by_name["rt-aws-to-gcp"])
    out = run_drills("scheduled__bad-scratch", {"policies": ["rt-aws-to-gcp"],
                                                 "scratch": {"rt-aws-to-gcp": "aws-prod:rt-src-aws/data/"}})
    assert "lies inside" in out["errors"]["rt-aws-to-gcp"] and out["scratches"] == [None]
    assert "rt-aws-to-gcp: scratch aws-prod:rt-src-aws/data/restore-drills/" in out["record_failed"]
    assert "not removed" not in out["record_failed"], "nothing was created, so nothing is left behind"
    assert raw_keys("aws", "rt-src-aws") == []
    # a store with Object Lock needs a scratch location elsewhere
    locked = tmp_path / "locked.yaml"
    locked.write_text(Path(os.environ["RUNBOOKS_BACKUP_POLICIES"]).read_text().replace(
        "destination: {target: aws-prod, container: rt-bk-aws, prefix: azure/}",
        "destination: {target: aws-prod, container: rt-bk-aws, prefix: azure/}\n    immutability: {days: 30}"))
    monkeypatch.setenv("RUNBOOKS_BACKUP_POLICIES", str(locked))
    (spec,) = drill.plan_drills(run_id="r", dry_run=False, policies=["rt-azure-to-aws"])
    assert "Object Lock" in (spec.problem or "") and "scratch" in (spec.problem or "")
    (moved,) = drill.plan_drills(run_id="r", dry_run=False, policies=["rt-azure-to-aws"],
                                 scratch={"rt-azure-to-aws": f"aws-prod:{SCRATCH['aws']}/drills"})
    assert moved.problem is None and moved.scratch is not None
    assert moved.scratch["container"] == SCRATCH["aws"] and moved.scratch["prefix"] == "drills/restore-drills/r/rt-azure-to-aws/"
    # a scratch prefix that is not empty is never used
    raw_put("aws", SCRATCH["aws"], "drills/restore-drills/r/rt-azure-to-aws/someone-elses", b"x")
    with pytest.raises(drill.DrillError, match="is not empty"):
        drill.create_scratch(moved)


def test_a_dry_run_checks_the_blobs_and_writes_nothing(estate: Estate, data_dir: Path) -> None:
    points = seed(estate, datetime.now(UTC) - timedelta(minutes=5))
    name = "rt-azure-to-aws"
    gone = points[name].by_key["reports/q2.txt"].blob
    store = estate.policy(name).destination
    from tests.test_restore import raw_delete

    raw_delete("aws", store.container, gone)
    out = run_drills("manual__drill-dry", run_type="manual")  # by hand without dry_run: a dry run
    assert all(spec["dry_run"] for spec in out["specs"])
    assert set(out["errors"]) == {name} and "reports/q2.txt" in out["errors"][name]
    assert f"blob {gone} is missing from the backup store" in out["errors"][name]
    for spec in out["specs"]:
        scratch = out["scratch"][spec["policy"]]
        assert scratch["created"] is False and out["left_before_teardown"][spec["policy"]] == []
    assert all(r["removed"] == 0 for r in out["removed"])
    assert not drill.history_path().exists(), "a dry run adds no history line"
    assert "rt-azure-to-aws" in out["record_failed"]


# ---- the report ---------------------------------------------------------------------------------------------------
def test_report_charts_rpo_and_restore_time_per_policy(data_dir: Path) -> None:
    start = datetime(2026, 11, 2, 4, tzinfo=UTC)
    for week in range(4):
        for n, policy in enumerate(("alpha", "beta")):
            drill.append_history({
                "time": (start + timedelta(weeks=week)).strftime("%Y-%m-%dT%H:%M:%SZ"), "policy": policy,
                "run_id": f"w{week}", "point_id": f"p{week}", "rpo_seconds": 1800.0 * (week + 1) + n,
                "rpo_objective_seconds": 7200.0, "rpo_met": week < 3, "restore_seconds": 10.0 + week * n,
                "objects": 5, "bytes": 1000, "bytes_per_second": 100.0, "mismatches": int(week == 2 and n == 1),
                "mismatched": ["a/<b>.txt"] if week == 2 and n == 1 else [], "scratch_removed": True,
                "success": not (week == 2 and n == 1), "error": "bad <script>" if week == 2 and n == 1 else None,
            })
    with drill.history_path().open("a") as handle:
        handle.write("not json\n")  # a damaged line is skipped, the page still renders
    page = drill.write_report().read_text()
    assert "<script>" not in page and "bad &lt;script&gt;" in page
    svgs = [page[i: page.index("</svg>", i) + 6] for i in range(len(page)) if page.startswith("<svg", i)]
    assert len(svgs) == 2
    rpo, restore = (ET.fromstring(svg) for svg in svgs)  # well-formed inline SVG
    ns = "{http://www.w3.org/2000/svg}"
    assert len(rpo.findall(f"{ns}polyline")) == 2 and len(restore.findall(f"{ns}polyline")) == 2
    assert len(rpo.findall(f"{ns}circle")) == 8
    assert any(line.get("stroke-dasharray") for line in rpo.findall(f"{ns}line")), "the RPO objective is drawn"
    failed = [c for c in rpo.findall(f"{ns}circle") if c.get("stroke") == BAD]
    assert len(failed) == 1 and "FAILED" in (failed[0].findtext(f"{ns}title") or "")
    # the newest RPO of beta is the highest point: y grows downwards in SVG
    beta = rpo.findall(f"{ns}polyline")[1].get("points", "").split()
    assert float(beta[-1].split(",")[1]) < float(beta[0].split(",")[1])
    assert "8 drill(s) recorded; 1 failed" in page
    empty = drill.svg_chart("nothing", "s", [], "restore_seconds")
    assert "no drills recorded yet" in empty and ET.fromstring(empty) is not None


# ---- the real copier --------------------------------------------------------------------------------------------
def test_the_drill_restores_what_the_copier_wrote(estate: Estate, data_dir: Path) -> None:
    from include.backup.policies import load_policies
    from include.backup.runner import back_up

    name = "rt-aws-to-gcp"
    for key, body in CONTENTS[name].items():
        estate.put(name, key, body)
    report = back_up(load_policies().get(name), run_id="manual__copier", dry_run=False, validate=False)
    assert report["status"] == "succeeded", report["errors"]
    out = run_drills("scheduled__drill-copier", {"policies": [name]})
    assert out["errors"] == {} and "record_failed" not in out, out
    (result,) = out["verified"]
    assert result["point_id"] == report["point_id"] and result["verified"] == result["objects"] == 3


# ---- the DAG ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "restore_drill.py"))
    assert not bag.import_errors
    return bag.dags["restore_drill"]


def test_dag_wiring_setup_and_teardown(dag: Any) -> None:
    assert dag.dag_id == "restore_drill" and dag.schedule == "0 4 * * 1"  # weekly
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"resolve_drills", "drill.create_scratch", "drill.restore_newest_point",
                          "drill.verify_checksums", "drill.remove_scratch", "record_drills"}
    assert tasks["drill.create_scratch"].is_setup and tasks["drill.remove_scratch"].is_teardown
    assert tasks["drill.remove_scratch"].upstream_task_ids == {"drill.create_scratch", "drill.verify_checksums"}
    assert tasks["record_drills"].upstream_task_ids == {"drill.remove_scratch"}
    assert str(tasks["record_drills"].trigger_rule).endswith(("all_done", "ALL_DONE"))
    assert dag.params["dry_run"] is None and dag.params["hash_sample_percent"] == 100
    schema = {k: dag.params.get_param(k).schema for k in dag.params}
    assert schema["policies"]["type"] == ["null", "array"] and schema["scratch"]["type"] == ["null", "object"]
    assert schema["scratch"]["additionalProperties"]["pattern"] == drill.SCRATCH_PATTERN


@pytest.mark.slow
def test_dag_drills_then_fails_on_corruption_and_still_removes_its_scratch(
    estate: Estate, data_dir: Path, airflow_db: Path,
) -> None:
    from tests.dagrun import run_dag

    points = seed(estate, datetime.now(UTC) - timedelta(minutes=5))
    ok = run_dag("restore_drill", {"dry_run": False}, timeout=300)
    assert ok["state"] == "success", ok["output"][-4000:]
    assert all(ok["tasks"][f"drill.{t}[{n}]"] == "success" for t in ("create_scratch", "restore_newest_point",
               "verify_checksums", "remove_scratch") for n in range(3))
    assert [line["success"] for line in drill.read_history()] == [True, True, True]

    blob = estate.corrupt_blob("rt-aws-to-gcp", points["rt-aws-to-gcp"], "data/deep/b.bin")
    bad = run_dag("restore_drill", {"dry_run": False, "policies": ["rt-aws-to-gcp"]}, timeout=300)
    assert bad["state"] == "failed"
    assert bad["tasks"]["drill.verify_checksums[0]"] == "failed"
    assert bad["tasks"]["drill.remove_scratch[0]"] == "success", "the teardown runs after the failure"
    assert bad["tasks"]["record_drills"] == "failed"
    assert "data/deep/b.bin" in bad["output"] and blob in bad["output"]
    store = estate.policy("rt-aws-to-gcp").destination
    assert raw_keys("gcp", store.container, "restore-drills/") == [], "no scratch object is left"
    history = drill.read_history()
    assert len(history) == 4 and history[-1]["success"] is False and history[-1]["mismatched"] == ["data/deep/b.bin"]
    page = drill.report_path().read_text()
    assert page.count("<svg") == 2 and "data/deep/b.bin" in page
    print(json.dumps({k: history[0][k] for k in ("policy", "restore_seconds", "bytes", "bytes_per_second")}))
