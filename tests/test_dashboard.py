"""The runbooks dashboard (include/dashboard/, plugins/runbooks_dashboard.py, docs/dashboard.md).

The data is written by the runbook modules' own writers into a private data directory; the page is fetched
through Airflow's real API app (``create_app``: the plugin mounted by Airflow's plugin manager, the simple
auth manager, Airflow's own ``get_user`` dependency) with FastAPI's TestClient. Pending approvals are rows
of Airflow's metadata DB, compared with what Airflow's REST API returns for them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from include.audit import AuditRecord, write_audit
from include.compliance.model import Finding, finding_id
from include.dashboard import data, page
from include.dashboard.registry import RUNBOOKS, SECTIONS, runbooks_of

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAG_IDS = {p.stem for p in (PROJECT_ROOT / "dags").glob("*.py") if not p.name.startswith("_")}
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


# ---- the registry --------------------------------------------------------------------------------------------
def test_every_runbook_has_a_dashboard_entry() -> None:
    missing, stale = sorted(DAG_IDS - set(RUNBOOKS)), sorted(set(RUNBOOKS) - DAG_IDS)
    assert not missing, f"runbook(s) without a dashboard entry (add them to include/dashboard/registry.py): {missing}"
    assert not stale, f"dashboard entries for runbooks that are not in dags/: {stale}"
    assert all(entry.section in SECTIONS and entry.shows for entry in RUNBOOKS.values())
    assert set(runbooks_of("audit")) == DAG_IDS  # every runbook writes the audit trail the section reads


def test_approvals_flag_matches_the_dags_approval_tasks() -> None:
    """A runbook is listed under pending approvals exactly when one of its tasks asks a human."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.standard.operators.hitl import HITLOperator

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors and set(bag.dags) == DAG_IDS
    asking = {dag_id for dag_id, dag in bag.dags.items() if any(isinstance(t, HITLOperator) for t in dag.tasks)}
    assert asking and set(runbooks_of("approvals")) == asking


# ---- data written by the runbooks' own writers ----------------------------------------------------------------
def _finding(cloud: str, rule: str, resource: str, status: str, severity: str = "high") -> Finding:
    target = f"{cloud}-prod"
    return Finding(
        finding_id=finding_id(rule, target, resource), rule_id=rule, title=rule, severity=severity,  # type: ignore[arg-type]
        status=status, cloud=cloud, target=target, account="acct", region="eu-west-1",  # type: ignore[arg-type]
        resource_type="bucket", resource_id=resource, resource_name=resource, detail="d", remediation="r",
        frameworks={}, waiver={"reason": "accepted", "owner": "o", "expires": "2027-01-01"} if status == "waived" else None,
    )


SCAN_1 = [
    _finding("aws", "versioning", "arn:aws:s3:::a", "fail", "critical"),
    _finding("aws", "encryption", "arn:aws:s3:::a", "fail", "high"),
    _finding("aws", "versioning", "arn:aws:s3:::b", "pass"),
    _finding("aws", "encryption", "arn:aws:s3:::b", "pass"),
    _finding("gcp", "uniform", "gs://c", "fail", "medium"),
    *[_finding("gcp", rule, "gs://c", "pass") for rule in ("versioning", "encryption", "public")],
]
#: The next day: one aws finding fixed, azure scanned for the first time (one waived).
SCAN_2 = [
    _finding("aws", "versioning", "arn:aws:s3:::a", "fail", "critical"),
    _finding("aws", "encryption", "arn:aws:s3:::a", "pass"),
    *SCAN_1[2:],
    _finding("azure", "https_only", "https://d.blob", "waived", "low"),
    _finding("azure", "tls", "https://d.blob", "pass"),
]


def write_compliance() -> None:
    from include.compliance.store import diff, load_latest_findings, save_scan

    for n, findings in enumerate((SCAN_1, SCAN_2)):
        at = T0 + timedelta(days=n)
        save_scan(diff(load_latest_findings(), findings, scanned_at=at), scanned_at=at, scan_id=f"scan{n}")


def _backup_line(policy: str, hours: int, *, rpo_age: float, rpo: float, status: str = "succeeded") -> Any:
    from include.backup.report import HistoryLine

    return HistoryLine(
        time=(T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"), policy=policy, run_id=f"run{hours}",
        status=status, point_id=f"p{hours}", objects=10, copied=4, reused=6, deduplicated=0, failed=0,
        bytes_copied=4096, bytes_total=10240, seconds=3.5, rpo_age_seconds=rpo_age, rpo_seconds=rpo,
        rpo_breached=rpo_age > rpo, validation_success=True)


def write_backups(policies: list[Any]) -> None:
    """Two runs of the first policy, none of the second; one passed and one failed drill of the first."""
    from include.backup import drill, report

    first = policies[0]
    objective = first.rpo.total_seconds()
    report.append_history(_backup_line(first.name, 1, rpo_age=objective * 3, rpo=objective, status="failed"))
    report.append_history(_backup_line(first.name, 2, rpo_age=objective / 4, rpo=objective))
    for hours, ok in ((3, False), (4, True)):
        result = {"policy": first.name, "point_id": "p2", "rpo_seconds": objective / 2,
                  "rpo_objective_seconds": objective, "restore_seconds": 7.25, "objects": 10, "bytes": 10240,
                  "success": ok, "mismatch_count": 0 if ok else 1,
                  "mismatches": [] if ok else [{"key": "k", "problem": "md5"}]}
        spec = drill.DrillSpec(policy=first.name, run_id=f"drill{hours}", dry_run=False)
        drill.append_history(drill.history_line(spec, result, {"left": 0}, T0 + timedelta(hours=hours),
                                                {"created": True}))


FAILOVERS = [
    {"runbook": "failover_drill", "run_id": "drill1", "service": "orders", "status": "passed", "dry_run": False,
     "written_at": "2026-11-20T08:00:00.000000Z", "rto_seconds": 12.5, "our_steps_seconds": 4.25,
     "approver": "admin"},
    {"runbook": "failover_service", "run_id": "fo1", "service": "orders", "status": "dry_run", "dry_run": True,
     "written_at": "2026-11-20T09:00:00.000000Z", "rto_seconds": None, "approver": None},
    {"runbook": "failback_service", "run_id": "fb1", "service": "orders", "status": "failed_back", "dry_run": False,
     "written_at": "2026-11-20T07:00:00.000000Z", "rto_seconds": 30.0, "our_steps_seconds": 20.0,
     "approver": "ops"},
]


def write_failovers() -> None:
    from include.failover.history import append_history

    for entry in FAILOVERS:
        append_history(entry)


def _audit(runbook: str, day: int, resource: str | None, outcome: str, *, dry_run: bool = False,
           step: str = "apply") -> AuditRecord:
    return AuditRecord(runbook=runbook, run_id=f"{runbook}-{day}", actor="admin", step=step, action="s3:PutX",
                       outcome=outcome, dry_run=dry_run, resource=resource,  # type: ignore[arg-type]
                       time=(T0 + timedelta(days=day)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


AUDIT = [
    _audit("remediate_findings", 0, "arn:aws:s3:::legacy-logs", "changed"),
    _audit("remediate_findings", 0, "arn:aws:s3:::legacy-logs", "skipped", dry_run=True, step="plan"),
    _audit("remediate_findings", 1, "arn:aws:s3:::orders-data", "failed"),
    _audit("provision_environment", 1, "staging/bucket.assets", "changed"),
    _audit("backup_object_stores", 2, "gs://rb-gcp-backups/points/p2", "changed"),
    _audit("compliance_scan", 2, None, "unchanged", step="record"),
]


def write_audit_trail() -> None:
    for record in AUDIT:
        write_audit(record)


@pytest.fixture
def estate_data(data_dir: Path) -> dict[str, Any]:
    """Every section's data, written by the runbooks' own writers into a private data directory."""
    from include.backup.policies import load_policies

    policies = list(load_policies().policies)
    assert len(policies) >= 2
    write_compliance()
    write_backups(policies)
    write_failovers()
    write_audit_trail()
    return {"policies": policies, "dir": data_dir}


# ---- aggregation -----------------------------------------------------------------------------------------------
def _counts(findings: list[Finding], cloud: str) -> dict[str, int]:
    mine = [f.status for f in findings if f.cloud == cloud]
    return {status: mine.count(status) for status in ("pass", "fail", "waived")}


def test_compliance_posture_per_cloud_and_trend(estate_data: dict[str, Any]) -> None:
    view = data.compliance()
    assert view["scan_id"] == "scan1" and view["totals"]["findings"] == len(SCAN_2)
    by_cloud = {row["cloud"]: row for row in view["clouds"]}
    assert set(by_cloud) == {"aws", "gcp", "azure"}
    for cloud, row in by_cloud.items():
        counts = _counts(SCAN_2, cloud)
        assert {k: row[k] for k in counts} == counts
        assert row["posture"] == round(100 * counts["pass"] / sum(counts.values()), 1)
    assert by_cloud["aws"]["fail_by_severity"] == {"critical": 1}
    assert by_cloud["azure"]["posture"] == 50.0  # a waived check is not a passing one
    assert by_cloud["aws"]["new"] == 0  # the critical one was already failing in the first scan
    trend = view["trend"]
    assert [point["scan_id"] for point in trend] == ["scan0", "scan1"]
    assert trend[0]["posture"]["aws"] < trend[1]["posture"]["aws"]  # a fix raised aws's posture
    assert "azure" not in trend[0]["posture"] and trend[1]["posture"]["azure"] == 50.0


def test_backup_policies_with_rpo_and_last_drill(estate_data: dict[str, Any]) -> None:
    first, second = estate_data["policies"][:2]
    rows = {row["policy"]: row for row in data.backups()["policies"]}
    assert set(rows) == {p.name for p in estate_data["policies"]}
    mine = rows[first.name]
    assert mine["rpo_objective_seconds"] == first.rpo.total_seconds() and mine["runs"] == 2
    assert mine["last_backup"]["point_id"] == "p2"
    assert mine["last_backup"]["status"] == "succeeded" and mine["last_backup"]["rpo_breached"] is False
    assert mine["last_drill"]["run_id"] == "drill4" and mine["last_drill"]["success"] is True
    assert mine["last_drill"]["rpo_met"] is True and mine["last_drill"]["restore_seconds"] == 7.25
    assert rows[second.name]["last_backup"] is None and rows[second.name]["last_drill"] is None


def test_failover_history_newest_first_and_only_readable_runbooks(estate_data: dict[str, Any]) -> None:
    runs = data.failovers()["runs"]
    assert [r["run_id"] for r in runs] == ["fo1", "drill1", "fb1"]
    assert runs[1]["rto_seconds"] == 12.5 and runs[1]["status"] == "passed"
    only = data.failovers({"failover_drill"})["runs"]
    assert [r["run_id"] for r in only] == ["drill1"]


def test_audit_filters(estate_data: dict[str, Any]) -> None:
    def ids(**selection: Any) -> list[tuple[str, str | None, str]]:
        view = data.audit(data.AuditFilter(**selection))
        assert view["matched"] == len(view["rows"])
        return [(r["runbook"], r["resource"], r["outcome"]) for r in view["rows"]]

    mutations = [(r.runbook, r.resource, r.outcome) for r in reversed(AUDIT) if r.outcome in ("changed", "failed")]
    assert ids() == mutations  # newest first, mutations only by default
    assert len(ids(everything=True)) == len(AUDIT)
    assert ids(resource="LEGACY") == [("remediate_findings", "arn:aws:s3:::legacy-logs", "changed")]
    assert ids(resource="legacy", everything=True) == [
        ("remediate_findings", "arn:aws:s3:::legacy-logs", "skipped"),
        ("remediate_findings", "arn:aws:s3:::legacy-logs", "changed")]
    assert {r[0] for r in ids(runbook="remediate_findings")} == {"remediate_findings"}
    day1 = (T0 + timedelta(days=1)).date().isoformat()
    assert ids(since=day1, until=day1) == [("provision_environment", "staging/bucket.assets", "changed"),
                                          ("remediate_findings", "arn:aws:s3:::orders-data", "failed")]
    assert ids(runbook="remediate_findings", since=day1) == [("remediate_findings", "arn:aws:s3:::orders-data",
                                                             "failed")]
    limited = data.audit(data.AuditFilter(everything=True), {"remediate_findings"}, limit=2)
    assert limited["matched"] == 3 and len(limited["rows"]) == 2
    with pytest.raises(ValueError):
        data.AuditFilter(since="yesterday")


def test_sections_follow_what_the_user_may_read(estate_data: dict[str, Any]) -> None:
    def nobody(_: Any) -> list[dict[str, Any]]:
        return []

    view = page.gather({"compliance_scan"}, data.AuditFilter(everything=True), nobody)
    assert view["sections"] == ["compliance", "audit"] and "backup" not in view and "failover" not in view
    assert [r["runbook"] for r in view["audit"]["rows"]] == ["compliance_scan"]
    assert page.gather(set(), data.AuditFilter(), nobody)["sections"] == []
    assert page.gather(None, data.AuditFilter(), nobody)["sections"] == list(SECTIONS)


# ---- the app inside Airflow's API server ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def airflow_app(airflow_db: Path) -> Any:
    """Airflow's API app as the API server builds it: plugins mounted, the simple auth manager in place."""
    from airflow.api_fastapi.app import create_app, purge_cached_app

    app = create_app("core")
    yield app
    purge_cached_app()


def token(user: str = "viewer1", role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=user, role=role)))


@pytest.fixture
def client(airflow_app: Any) -> Iterator[Any]:
    """A browser signed in as a viewer: the UI's ``_token`` cookie."""
    from fastapi.testclient import TestClient

    browser = TestClient(airflow_app)
    browser.cookies.set("_token", token())
    yield browser


def test_anonymous_requests_are_refused(airflow_app: Any) -> None:
    from fastapi.testclient import TestClient

    anonymous = TestClient(airflow_app)
    page_view = anonymous.get("/runbooks-dashboard/?runbook=restore_drill", headers={"accept": "text/html"},
                              follow_redirects=False)
    assert page_view.status_code == 303  # a browser goes to the login page, then comes back here
    assert page_view.headers["location"].startswith("/auth/login?next=")
    assert "next=%2Frunbooks-dashboard%2F%3Frunbook%3Drestore_drill" in page_view.headers["location"]
    assert "Runbooks dashboard" not in page_view.text
    assert anonymous.get("/runbooks-dashboard/data.json").status_code == 401
    assert anonymous.get("/runbooks-dashboard/", headers={"accept": "application/json"}).status_code == 401
    forged = TestClient(airflow_app)
    forged.cookies.set("_token", token()[:-4] + "AAAA")
    assert forged.get("/runbooks-dashboard/data.json").status_code in (401, 403)
    bearer = anonymous.get("/runbooks-dashboard/data.json", headers={"Authorization": f"Bearer {token()}"})
    assert bearer.status_code == 200  # an API client with a token from POST /auth/token


def test_plugin_adds_a_nav_entry_to_the_mounted_page(client: Any) -> None:
    from include.dashboard.app import MOUNT
    from plugins.runbooks_dashboard import MOUNT as PLUGIN_MOUNT

    assert PLUGIN_MOUNT == MOUNT
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token()}"}).json()["plugins"]
    mine = next(p for p in plugins if p["name"] == "runbooks_dashboard")
    assert mine["fastapi_apps"][0]["url_prefix"] == MOUNT
    [view] = mine["external_views"]
    assert view["destination"] == "nav" and view["href"] == f"{MOUNT}/" and view["url_route"] == "runbooks-dashboard"
    assert view["nav_top_level"] is True  # a top-level entry of the navigation, not hidden in a menu


def test_plugin_file_stays_thin() -> None:
    """Every Airflow process imports plugins/: the dashboard (FastAPI, Airflow's API) loads on the first request."""
    import subprocess
    import sys

    code = ("import sys; import plugins.runbooks_dashboard; "
            "print(sorted(m for m in sys.modules if m.startswith(('include.dashboard', 'fastapi'))))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            check=True, timeout=120).stdout.strip().splitlines()[-1]
    assert loaded == "[]"


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def _section(html: str, name: str) -> str:
    match = re.search(rf'<section id="{name}" data-section="{name}">(.*?)</section>', html, re.S)
    assert match, f"no {name} section"
    return match.group(1)


def test_page_renders_each_section(client: Any, estate_data: dict[str, Any]) -> None:
    response = client.get("/runbooks-dashboard/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "Signed in as viewer1" in html and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from elsewhere
    compliance = _section(html, "compliance")
    for row in data.compliance()["clouds"]:
        assert re.search(rf'<tr data-cloud="{row["cloud"]}"><td>{row["cloud"]}</td><td class="num \w+">'
                         rf'{row["posture"]}%</td>', compliance), row
    assert compliance.count("<svg") == 2 and "Posture per cloud over the saved scans" in compliance
    backup = _section(html, "backup")
    first = estate_data["policies"][0]
    row = re.search(rf'<tr data-policy="{first.name}">(.*?)</tr>', backup)
    assert row and "passed" in row[1] and page.duration(first.rpo.total_seconds()) in row[1]
    assert page.duration(7.25) in row[1]  # the last drill's restore time
    assert "<svg" in backup
    failover = _section(html, "failover")
    assert "drill1" in failover and page.duration(12.5) in failover and "<svg" in failover
    assert "Nothing is waiting for an approval." in _section(html, "approvals")
    audit = _text(_section(html, "audit"))
    assert "arn:aws:s3:::orders-data" in audit and "staging/bucket.assets" in audit
    assert f"{sum(r.outcome in data.MUTATIONS for r in AUDIT)} record(s) match" in audit
    index = _section(html, "runbooks")
    assert all(f'data-runbook="{name}"' in index for name in DAG_IDS)


def test_the_audit_filter_form_filters(client: Any, estate_data: dict[str, Any]) -> None:
    html = client.get("/runbooks-dashboard/", params={"resource": "orders", "runbook": "remediate_findings"}).text
    audit = _section(html, "audit")
    assert "arn:aws:s3:::orders-data" in audit and "legacy-logs" not in audit and "staging/" not in audit
    assert "1 record(s) match" in _text(audit)
    assert 'value="orders"' in audit and '<option value="remediate_findings" selected>' in audit  # the form keeps them
    day0 = T0.date().isoformat()
    dated = _section(client.get("/runbooks-dashboard/", params={"until": day0, "everything": "on"}).text, "audit")
    assert "legacy-logs" in dated and "orders-data" not in dated and "skipped" in dated
    assert client.get("/runbooks-dashboard/", params={"since": "last week"}).status_code == 422


# ---- pending approvals: rows of Airflow's metadata DB ----------------------------------------------------------
@pytest.fixture
def waiting_approval(airflow_db: Path) -> Iterator[dict[str, str]]:
    """The rows an approval task leaves while it waits: its DAG, dag run, task instance and HITL detail."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete, insert

    run_id = f"manual__{uuid.uuid4().hex[:8]}"
    ti_id = uuid.uuid4()
    with create_session() as session:
        if session.get(DagBundleModel, "dags-folder") is None:
            session.add(DagBundleModel(name="dags-folder"))
            session.flush()
        made_dag = session.get(DagModel, "remediate_findings") is None
        if made_dag:
            session.add(DagModel(dag_id="remediate_findings", bundle_name="dags-folder"))
        session.flush()
        session.add(DagRun(dag_id="remediate_findings", run_id=run_id, run_type="manual", state="running",
                           run_after=datetime.now(UTC)))
        session.flush()
        session.execute(insert(TaskInstance.__table__).values(
            id=ti_id, dag_id="remediate_findings", run_id=run_id, task_id="approve_changes", map_index=-1,
            try_number=1, state="awaiting_input", pool="default_pool", pool_slots=1, queue="default",
            priority_weight=1, custom_operator_name="RecordingApprovalOperator"))
        session.add(HITLDetail(ti_id=ti_id, options=["Approve", "Reject"], subject="Apply 2 compliance fixes?",
                               params={}, assignees=[{"id": "ops", "name": "ops"}]))
    yield {"run_id": run_id}
    with create_session() as session:
        session.execute(delete(HITLDetail).where(HITLDetail.ti_id == ti_id))
        session.execute(delete(TaskInstance).where(TaskInstance.id == ti_id))
        session.execute(delete(DagRun).where(DagRun.run_id == run_id))
        if made_dag:
            session.execute(delete(DagModel).where(DagModel.dag_id == "remediate_findings"))


def test_pending_approvals_link_to_their_required_actions_page(
    client: Any, waiting_approval: dict[str, str], data_dir: Path
) -> None:
    run_id = waiting_approval["run_id"]
    figures = client.get("/runbooks-dashboard/data.json").json()
    [pending] = [p for p in figures["approvals"] if p["run_id"] == run_id]
    assert pending["subject"] == "Apply 2 compliance fixes?" and pending["assignees"] == ["ops"]
    assert pending["url"] == f"/dags/remediate_findings/runs/{run_id}/tasks/approve_changes/required_actions"
    section = _section(client.get("/runbooks-dashboard/").text, "approvals")
    assert f'<a href="{pending["url"]}">answer</a>' in section
    assert '<a href="/required_actions?response_received=false">' in section  # the UI's list of all of them
    # the same requests Airflow's REST API lists as unanswered
    api = client.get("/api/v2/dags/~/dagRuns/~/hitlDetails", params={"response_received": "false"},
                     headers={"Authorization": f"Bearer {token()}"})
    assert api.status_code == 200, api.text
    listed = {(d["task_instance"]["dag_id"], d["task_instance"]["dag_run_id"], d["task_instance"]["task_id"])
              for d in api.json()["hitl_details"]}
    assert {(p["dag_id"], p["run_id"], p["task_id"]) for p in figures["approvals"]} == listed
