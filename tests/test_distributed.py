"""The distributed engine, run for real (`make test-distributed`): the docker-compose topology without Docker.

PostgreSQL and Redis (the local servers when they answer, else private ones), and Airflow with the
CeleryExecutor as separate processes - api-server, scheduler, dag-processor, triggerer and two Celery
workers - each in its own folder (localdev/distributed.py). The runbooks' data root is a URL on the S3
emulator and the change ledger lives in the metadata database, so no two processes share a data directory.

On it, in order (one topology for the module; each test leaves it whole for the next):
- inventory -> compliance scan -> a remediation approved through the REST API, end to end, applied in the
  cloud, with tasks spread over both workers;
- a backup of both demo policies and the restore drill of the points it made, their records in the bucket;
- a worker killed in the middle of a task (SIGKILL to it and everything below it): the task is retried on
  the other worker and the run completes;
- the scheduler killed in the middle of a run and started again: the run completes;
- an emulator (Azurite) stopped in the middle of a run: the run fails and says why, the inventory it
  published is recorded as incomplete with the cause (never as a complete one), and after the emulator is
  back a rerun completes.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from localdev import emulators as emu
from localdev.distributed import Distributed, distributed
from localdev.stack import Api, LocalError, run_runbook, wait_for

pytestmark = pytest.mark.distributed
DATA_BUCKET = "runbooks-data"
TAGS = {"owner": "platform-team", "cost-center": "cc-42", "data-classification": "internal"}


@dataclass
class Cluster:
    stack: Distributed
    emulators: emu.Emulators
    home: Path
    data_root: str

    @property
    def api(self) -> Api:
        return self.stack.api


def data_root_for(emulators: emu.Emulators) -> str:
    """The data root every component uses: a prefix of a bucket on the S3 emulator (include.paths.data_root)."""
    return f"s3://{emu.AWS_CONN_ID}@{DATA_BUCKET}/distributed"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("distributed")
    emulators = emu.start(log_dir=home / "logs")
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emulators.environment().items():
                mp.setenv(key, value)
            data_root = data_root_for(emulators)
            mp.setenv("RUNBOOKS_DATA_DIR", data_root)
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            from localdev.seed import seed_estate

            seed_estate()
            S3Hook(aws_conn_id=emu.AWS_CONN_ID).create_bucket(DATA_BUCKET)
            extra = {**emulators.environment(), "RUNBOOKS_DATA_DIR": data_root}
            with distributed(home / "airflow", workers=2, extra_env=extra) as stack:
                yield Cluster(stack, emulators, home, data_root)
    finally:
        emu.stop(emulators)


# ---- helpers -------------------------------------------------------------------------------------------
def trigger(api: Api, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
    def parsed() -> bool:
        try:
            api.get(f"/api/v2/dags/{dag_id}")
            return True
        except urllib.error.URLError:
            return False

    wait_for(f"{dag_id} to be parsed", parsed, timeout=180)
    api.trigger(dag_id, run_id, conf)


def run_state(api: Api, dag_id: str, run_id: str) -> str:
    return str(api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])


def wait_end(api: Api, dag_id: str, run_id: str, timeout: float = 600) -> str:
    return str(wait_for(f"{dag_id} run {run_id} to end",
                        lambda: (s if (s := run_state(api, dag_id, run_id)) in ("success", "failed") else None),
                        timeout=timeout))


def task_instances(api: Api, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])


def tries(api: Api, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[dict[str, Any]]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/tries"
    return sorted(api.get(path)["task_instances"], key=lambda t: t["try_number"])


def worker_of(ti: dict[str, Any]) -> str:
    """The worker that ran one try (the topology records each component's name as its hostname)."""
    return str(ti.get("hostname") or "").split(".", 1)[0]


def first_running(api: Api, dag_id: str, run_id: str, task_ids: set[str], timeout: float = 300
                  ) -> dict[str, Any]:
    """The first of ``task_ids`` seen running on a worker (polled often: a task lasts seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in task_instances(api, dag_id, run_id):
            if ti["task_id"] in task_ids and ti["state"] == "running" and worker_of(ti).startswith("worker-"):
                return ti
        if run_state(api, dag_id, run_id) in ("success", "failed"):
            raise LocalError(f"{dag_id} run {run_id} ended before any of {sorted(task_ids)} was seen running")
        time.sleep(0.2)
    raise LocalError(f"none of {sorted(task_ids)} started within {timeout:.0f}s")


def states(api: Api, dag_id: str, run_id: str) -> dict[str, str]:
    return {f"{ti['task_id']}[{ti['map_index']}]": ti["state"] for ti in task_instances(api, dag_id, run_id)}


def latest_inventory() -> dict[str, Any]:
    from include.inventory.store import latest

    return latest()


def inventory_summary(pointer: dict[str, Any]) -> dict[str, Any]:
    """The summary written beside the inventory version ``pointer`` names (under the data root)."""
    from include.paths import as_data_path

    return dict(json.loads((as_data_path(pointer["path"]).parent / "summary.json").read_text()))


def objects_under(prefix: str) -> list[str]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return list(S3Hook(aws_conn_id=emu.AWS_CONN_ID).list_keys(DATA_BUCKET, prefix=prefix))


# ---- the runbooks end to end ---------------------------------------------------------------------------
def test_inventory_compliance_and_an_approved_remediation_on_celery_workers(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    api = cluster.api
    for key, value in {**cluster.emulators.environment(), "RUNBOOKS_DATA_DIR": cluster.data_root}.items():
        monkeypatch.setenv(key, value)
    inventory = run_runbook(api, "inventory_estate", {})
    assert inventory["state"] == "success"
    assert latest_inventory()["run_id"] == inventory["dag_run_id"] and latest_inventory()["complete"]
    # The seeded estate is deliberately non-compliant: the policy fails the scan's last task, and only it.
    scan = run_runbook(api, "compliance_scan", {}, may_fail=frozenset({"enforce_policy"}))
    assert scan["failed_tasks"] == ["enforce_policy"]

    from include.compliance.store import load_latest_findings

    ids = sorted(f.finding_id for f in load_latest_findings()
                 if f.rule_id == "aws_required_tags" and f.status == "fail" and f.fixer)[:2]
    assert ids, "the seeded estate has untagged AWS resources"
    run_id = "dist__remediate"
    trigger(api, "remediate_findings", run_id, {"dry_run": False, "finding_ids": ids, "tag_values": TAGS,
                                                "reason": "CHG-11 distributed end to end"})
    approval = f"/api/v2/dags/remediate_findings/dagRuns/{run_id}/taskInstances/approve_changes/-1/hitlDetails"

    def waiting() -> bool:
        ti = api.get(f"/api/v2/dags/remediate_findings/dagRuns/{run_id}/taskInstances/approve_changes")
        if ti["state"] in ("failed", "upstream_failed", "skipped"):
            raise LocalError(f"approve_changes ended {ti['state']}: {states(api, 'remediate_findings', run_id)}")
        return bool(ti["state"] == "awaiting_input")

    wait_for("the remediation to ask for approval", waiting, timeout=300)
    time.sleep(3)  # Airflow 3.3.2 can fail a HITL task answered within ~1 s of it starting to wait
    api.patch(approval, {"chosen_options": ["Approve"], "params_input": {}})
    assert wait_end(api, "remediate_findings", run_id) == "success", states(api, "remediate_findings", run_id)

    from include.audit import read_audit

    applied = [r for r in read_audit(run_id=run_id) if r.step == "apply"]
    assert len(applied) == len(ids) and {r.outcome for r in applied} == {"changed"}, applied
    assert {r.approver for r in applied} == {"admin"}  # who approved, through the API, on every applied change
    # Both workers took tasks: the runs were spread over the Celery workers, not pinned to one.
    workers = {worker_of(ti) for dag_id, rid in (("inventory_estate", inventory["dag_run_id"]),
                                                 ("compliance_scan", scan["dag_run_id"]),
                                                 ("remediate_findings", run_id))
               for ti in task_instances(api, dag_id, rid) if ti["state"] == "success"}
    assert {"worker-1", "worker-2"} <= workers, workers
    # Everything the runs recorded is in the object store, none of it on this machine's disk.
    assert objects_under("distributed/inventory/") and objects_under("distributed/compliance/")
    assert objects_under("distributed/audit/") or read_audit(run_id=run_id)
    for component in cluster.stack.procs:
        assert not list((cluster.stack.home / "procs" / component).glob("**/inventory.jsonl")), component


def test_a_backup_and_its_restore_drill_keep_their_records_in_the_object_store(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other runbooks write through the same data root: a backup of both demo policies, then the drill that
    restores the points just made, on the Celery workers; reports and drill history land in the bucket."""
    api = cluster.api
    for key, value in {**cluster.emulators.environment(), "RUNBOOKS_DATA_DIR": cluster.data_root}.items():
        monkeypatch.setenv(key, value)
    from include.backup.drill import read_history
    from include.backup.policies import load_policies
    from include.backup.report import read_run_report
    from localdev.stack import BACKUP_CONF, DRILL_CONF

    policies = [p.name for p in load_policies().policies]
    backup = run_runbook(api, "backup_object_stores", BACKUP_CONF)
    assert backup["state"] == "success"
    for name in policies:
        report = read_run_report(name, backup["dag_run_id"])
        assert report is not None and report["point_id"] and not report["errors"], (name, report)
        assert report["totals"]["copied"] > 0 and report["totals"]["failed"] == 0, report["totals"]
    drill = run_runbook(api, "restore_drill", DRILL_CONF)
    assert drill["state"] == "success"
    lines = [d for d in read_history() if d.get("run_id") == drill["dag_run_id"]]
    assert sorted(d["policy"] for d in lines) == sorted(policies)
    assert all(d["success"] and d["mismatches"] == 0 and d["scratch_removed"] for d in lines), lines
    assert objects_under("distributed/backup/")


# ---- faults --------------------------------------------------------------------------------------------
def test_a_worker_killed_mid_task_is_replaced_by_the_other_worker(cluster: Cluster) -> None:
    api, stack = cluster.api, cluster.stack
    run_id = "dist__worker_killed"
    trigger(api, "inventory_estate", run_id, {})
    ti = first_running(api, "inventory_estate", run_id, {"collect_target"})
    victim = worker_of(ti)
    stack.crash(victim)
    try:
        assert wait_end(api, "inventory_estate", run_id, timeout=900) == "success", states(
            api, "inventory_estate", run_id)
        history = tries(api, "inventory_estate", run_id, ti["task_id"], ti["map_index"])
        assert [worker_of(t) for t in history][0] == victim and history[-1]["state"] == "success", history
        survivor = {"worker-1": "worker-2", "worker-2": "worker-1"}[victim]
        assert worker_of(history[-1]) == survivor and len(history) >= 2, history
    finally:
        stack.start(victim)


def test_the_scheduler_killed_mid_run_and_restarted_the_run_completes(cluster: Cluster) -> None:
    api, stack = cluster.api, cluster.stack
    run_id = "dist__scheduler_killed"
    trigger(api, "inventory_estate", run_id, {})
    first_running(api, "inventory_estate", run_id, {"select_targets", "collect_target"})
    stack.crash("scheduler")
    time.sleep(5)
    stack.start("scheduler")
    assert wait_end(api, "inventory_estate", run_id, timeout=900) == "success", states(
        api, "inventory_estate", run_id)
    assert all(state == "success" for state in states(api, "inventory_estate", run_id).values())


def test_an_emulator_stopped_mid_run_fails_the_run_with_its_cause_and_a_rerun_completes(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    api = cluster.api
    for key, value in {**cluster.emulators.environment(), "RUNBOOKS_DATA_DIR": cluster.data_root}.items():
        monkeypatch.setenv(key, value)
    before = latest_inventory()
    run_id = "dist__azure_down"
    trigger(api, "inventory_estate", run_id, {})
    first_running(api, "inventory_estate", run_id, {"select_targets", "collect_target"})
    emu.stop_one(cluster.emulators, "azure")
    try:
        assert wait_end(api, "inventory_estate", run_id) == "failed"
        failed = {k: v for k, v in states(api, "inventory_estate", run_id).items() if v != "success"}
        assert failed == {"check_complete[-1]": "failed"}, failed
        # What was published says it is incomplete and why; nothing claims a complete inventory.
        pointer = latest_inventory()
        assert pointer["run_id"] == run_id and pointer["complete"] is False and before["complete"] is True
        summary = inventory_summary(pointer)
        assert summary["errors"] and {e["target"] for e in summary["errors"]} == {"azure-prod"}, summary["errors"]
        assert all("azure" in e["cloud"] for e in summary["errors"])
    finally:
        emu.start_one(cluster.emulators, "azure", log_dir=cluster.home / "logs")
    from localdev.seed import seed_estate

    seed_estate(clouds=("azure",))  # Azurite keeps its data in memory: the restarted one starts empty
    rerun = run_runbook(api, "inventory_estate", {})
    assert rerun["state"] == "success" and latest_inventory()["complete"] is True
