"""The webhook receiver against Airflow's own metadata database: runs are really created (or not).

The FastAPI app of ``include/intake`` runs in a test client; a new incident is answered once it is in the
outbox, and its DAG run is created by the drainer through ``SerializedDAG.create_dagrun`` into this
session's migrated SQLite DB, where ``airflow dags reserialize`` (the dag-processor's code path) put the
project's runbooks. Here the tests drain when they choose (:func:`drained`), so every assertion on a run
follows a known drain; the background drainers (thread, start-up after a crash) have their own tests.
Secrets come from ``AIRFLOW_CONN_*`` connections, as in production.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from fastapi.testclient import TestClient

from include.audit import read_audit
from include.intake import outbox
from include.intake.app import create_app
from include.intake.credentials import SecretStore
from include.intake.routing import RouteStore, known_runbooks
from include.intake.runs import AirflowLauncher, ConfRejected, ParamCheck
from include.intake.service import MAX_BODY_BYTES, Intake
from tests.test_intake_payloads import (
    ALL_SECRETS,
    AM_TOKEN_NEXT,
    GENERIC_SECRET,
    PD_SECRET_OLD,
    am_alert,
    am_headers,
    am_payload,
    body_of,
    connection_env,
    generic_headers,
    generic_payload,
    pd_headers,
    pd_payload,
    public_bucket_alert,
    signed,
    unique,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DAGS = PROJECT_ROOT / "dags"
FINDING = "aws_s3_bucket_versioning:0123456789abcdef"


@pytest.fixture(scope="module")
def intake_db(airflow_db: Path) -> Iterator[Path]:
    """The migrated DB with the project's runbooks serialized; the intake connections in the environment."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in connection_env().items():
            patch.setenv(key, value)
        subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, env=dict(os.environ),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        yield airflow_db


def runs_of(dag_id: str, run_id: str | None = None, prefix: str | None = None) -> list[Any]:
    """DAG runs in the metadata DB (by id, or by run id prefix)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(DagRun).where(DagRun.dag_id == dag_id)
    if run_id is not None:
        query = query.where(DagRun.run_id == run_id)
    if prefix is not None:
        query = query.where(DagRun.run_id.startswith(prefix))
    with create_session() as session:
        found = list(session.scalars(query))
        for run in found:
            session.expunge(run)
    return found


def task_count(dag_id: str, run_id: str) -> int:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return int(session.scalar(select(func.count()).select_from(TaskInstance).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)) or 0)


def outbox_rows(dag_id: str | None = None) -> int:
    """Rows in the intake outbox (every accepted incident has one), optionally of one runbook."""
    from sqlalchemy import func, select

    query = select(func.count()).select_from(outbox.OUTBOX)
    if dag_id is not None:
        query = query.where(outbox.OUTBOX.c.dag_id == dag_id)
    with outbox.ensure_table().connect() as conn:
        return int(conn.execute(query).scalar_one())


def outbox_status(dag_id: str, run_id: str) -> tuple[str, str | None] | None:
    from sqlalchemy import select

    with outbox.ensure_table().connect() as conn:
        row = conn.execute(select(outbox.OUTBOX.c.status, outbox.OUTBOX.c.error).where(
            outbox.OUTBOX.c.dag_id == dag_id, outbox.OUTBOX.c.run_id == run_id)).first()
    return None if row is None else (row[0], row[1])


def drained(client: TestClient) -> int:
    """Create the accepted runs now, as the receiver's drainer does right after each answer."""
    created: int = client.app.state.intake.launcher.drain()
    return created


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.05)
    return value


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(intake_db: Path, tmp_path: Path) -> Iterator[ClientFactory]:
    clients: list[TestClient] = []

    def make(routes: Path | None = None, runbooks: set[str] | None = None, clock: Callable[[], float] | None = None,
             max_body: int = MAX_BODY_BYTES) -> TestClient:
        launcher = AirflowLauncher(audit_base=tmp_path / "data")  # no background drainer: tests call drained()
        intake = Intake(RouteStore(routes, runbooks), SecretStore(), launcher, audit_base=tmp_path / "data",
                        max_body=max_body, **({"clock": clock} if clock else {}))
        client = TestClient(create_app(intake))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


def audit(tmp_path: Path) -> list[Any]:
    return [r for r in read_audit(base=tmp_path / "data") if r.step == "intake"]


def post(client: TestClient, source: str, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    body, signed_headers = signed(source, payload)
    return client.post(f"/hooks/{source}", content=body, headers=signed_headers if headers is None else headers)


# ---- Alertmanager ----------------------------------------------------------------------------------------
def test_alertmanager_firing_starts_the_route_once_then_resolved_starts_nothing(client: TestClient, tmp_path: Path) -> None:
    group = unique("g")
    firing = public_bucket_alert(group, ["rb-prod-public-website", "rb-prod-legacy-assets"])
    first = post(client, "alertmanager", firing)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert answer["decision"] == "started" and answer["dag_id"] == "remediate_findings"
    run_id = answer["run_id"]
    assert run_id.startswith("intake__alertmanager__PublicBucket__") and answer["idempotency_key"] == run_id
    assert answer["route"] == "public-bucket" and answer["dry_run"] is True and answer["state"] == "pending"
    assert outbox_status("remediate_findings", run_id) == ("pending", None)  # durable before the answer
    assert not runs_of("remediate_findings", run_id)

    drained(client)
    assert outbox_status("remediate_findings", run_id) == ("created", None)
    [run] = runs_of("remediate_findings", run_id)
    assert run.conf == {
        "dry_run": True, "rule": "aws_s3_bucket_not_public",
        "resources": ["rb-prod-legacy-assets", "rb-prod-public-website"],  # $labels: sorted, distinct
        "reason": "Alertmanager PublicBucket: S3 bucket is public",
        "idempotency_key": run_id,  # the change ledger's key is the incident's key
    }
    assert run.triggering_user_name == "intake:alertmanager" and str(run.run_type) in ("manual", "DagRunType.MANUAL")
    assert task_count("remediate_findings", run_id) == 8  # the whole run exists: run and task instances

    # Alertmanager re-sends the same notification (repeat_interval, a retry): same run, nothing started
    accepted = outbox_rows("remediate_findings")
    again = post(client, "alertmanager", firing)
    assert again.status_code == 202 and again.json()["decision"] == "duplicate" and again.json()["run_id"] == run_id
    assert again.json()["state"] == "queued" and outbox_rows("remediate_findings") == accepted
    # the alerts resolve: accepted, ignored, nothing started
    resolved = public_bucket_alert(group, ["rb-prod-public-website", "rb-prod-legacy-assets"], status="resolved")
    done = post(client, "alertmanager", resolved)
    assert done.status_code == 202 and done.json()["decision"] == "ignored" and done.json()["run_id"] is None
    assert "resolved" in done.json()["reason"]
    assert [r.run_id for r in runs_of("remediate_findings", prefix="intake__alertmanager__")].count(run_id) == 1

    trail = audit(tmp_path)
    assert [(r.action, r.outcome, r.run_id) for r in trail] == [
        ("started", "changed", run_id), ("duplicate", "unchanged", run_id), ("ignored", "skipped", "")]
    assert {r.actor for r in trail} == {"intake:alertmanager"}
    assert trail[0].idempotency_key == run_id and trail[0].params["rule"] == "aws_s3_bucket_not_public"
    assert trail[2].after["reason"].startswith("resolved") and trail[2].after["event_status"] == "resolved"


def test_service_down_fails_the_service_over_once_per_incident(client: TestClient, tmp_path: Path) -> None:
    """The shipped failover route: ServiceDown (critical) -> failover_service, keyed by the incident."""
    group = unique("g")
    labels = {"alertname": "ServiceDown", "service": "orders", "severity": "critical"}
    firing = am_payload(group, [am_alert(unique("f")[:16], labels, summary="orders does not answer")],
                        alertname="ServiceDown", summary="orders does not answer")
    first = post(client, "alertmanager", firing)
    assert first.status_code == 202, first.text
    answer = first.json()
    assert (answer["decision"], answer["dag_id"], answer["route"]) == ("started", "failover_service", "service-down-failover")
    run_id = answer["run_id"]
    assert run_id.startswith("intake__alertmanager__ServiceDown__") and answer["dry_run"] is False
    drained(client)
    [run] = runs_of("failover_service", run_id)
    assert run.conf == {
        "service": "orders", "incident_id": run_id, "severity": "critical", "dry_run": False,
        "reason": "Alertmanager ServiceDown for orders: orders does not answer",
    }
    # a re-sent alert is the same run; the alert resolving starts nothing (never a failover on "resolved")
    assert post(client, "alertmanager", firing).json() == {**answer, "decision": "duplicate", "state": ANY}
    resolved = am_payload(group, [dict(firing["alerts"][0], status="resolved")], alertname="ServiceDown")
    assert post(client, "alertmanager", resolved).json()["decision"] == "ignored"
    # a warning is not an incident that fails anything over
    warning = am_payload(unique("g"), [am_alert(unique("f")[:16], {**labels, "severity": "warning"})],
                         alertname="ServiceDown")
    ignored = post(client, "alertmanager", warning).json()
    assert ignored["decision"] == "ignored" and "severity is 'warning', not critical" in ignored["reason"]
    assert len(runs_of("failover_service", prefix="intake__alertmanager__ServiceDown__")) >= 1
    assert [r.run_id for r in runs_of("failover_service", prefix="intake__")].count(run_id) == 1


def test_alertmanager_key_is_group_plus_firing_fingerprints(client: TestClient) -> None:
    group = unique("g")
    one = post(client, "alertmanager", public_bucket_alert(group, ["rb-a"])).json()
    # the same firing set with a resolved alert beside it, in another order: the same incident
    mixed = public_bucket_alert(group, ["rb-gone", "rb-a"])
    mixed["alerts"][0]["status"] = "resolved"
    same = post(client, "alertmanager", mixed).json()
    assert same["decision"] == "duplicate" and same["run_id"] == one["run_id"]
    # a new alert joins the group while firing: a new firing set, a new incident key, a new run
    grown = post(client, "alertmanager", public_bucket_alert(group, ["rb-a", "rb-b"])).json()
    assert grown["decision"] == "started" and grown["run_id"] != one["run_id"]
    # the key never depends on the body's bytes: other timestamps and annotations, same incident
    resent = public_bucket_alert(group, ["rb-a"])
    resent["alerts"][0]["startsAt"] = "2026-11-30T09:59:59Z"
    resent["commonAnnotations"] = {"summary": "still public"}
    assert post(client, "alertmanager", resent).json()["run_id"] == one["run_id"]


def test_twenty_concurrent_identical_deliveries_start_one_run(client: TestClient) -> None:
    payload = public_bucket_alert(unique("g"), ["rb-prod-public-website"])
    body, headers = signed("alertmanager", payload)

    async def deliver_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            return list(await asyncio.gather(*[
                http.post("/hooks/alertmanager", content=body, headers=headers) for _ in range(20)]))

    answers = asyncio.run(deliver_all())
    assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers if a.status_code != 202]
    decisions = [a.json()["decision"] for a in answers]
    assert decisions.count("started") == 1 and decisions.count("duplicate") == 19
    run_ids = {a.json()["run_id"] for a in answers}
    assert len(run_ids) == 1
    [run_id] = run_ids
    assert outbox_status("remediate_findings", run_id) == ("pending", None)
    drained(client)
    assert len(runs_of("remediate_findings", run_id)) == 1


def test_a_lost_race_to_the_insert_answers_with_the_winners_run(intake_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two api-server workers both see no incident and both insert: the outbox's primary key decides."""
    first_worker, second_worker = AirflowLauncher(), AirflowLauncher()
    run_id = f"intake__generic__{unique('race')}"
    conf = {"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-x"]}
    first = first_worker.launch("remediate_findings", run_id, conf, actor="intake:generic")
    assert first.created is True and first.state == "pending"
    looked: list[str] = []
    original = second_worker.existing

    def blind(dag_id: str, run: str) -> Any:
        looked.append(run)  # the lookup before the insert misses the winner's row
        return None if len(looked) == 1 else original(dag_id, run)

    monkeypatch.setattr(second_worker, "existing", blind)
    second = second_worker.launch("remediate_findings", run_id, conf, actor="intake:generic")
    # the insert hit the primary key; the answer is the row found after it
    assert second.created is False and second.run_id == run_id and second.state == "pending" and len(looked) == 2
    # both workers' drainers run: one creates the run, the other finds it (dag_run's unique key) and settles
    first_worker.drain()
    second_worker.drain()
    assert len(runs_of("remediate_findings", run_id)) == 1
    assert outbox_status("remediate_findings", run_id) == ("created", None)


def test_two_drainers_racing_for_one_row_create_one_run(intake_db: Path) -> None:
    """Each drainer saw the row pending; the second one's insert hits dag_run's unique (dag_id, run_id)."""
    one, other = AirflowLauncher(), AirflowLauncher()
    run_id = f"intake__generic__{unique('drainers')}"
    conf = {"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-y"]}
    assert one.launch("remediate_findings", run_id, conf, actor="intake:generic").created
    [(dag_id, row_run, row_conf, actor)] = [r for r in outbox.pending(one.engine) if r[1] == run_id]
    one._create(one.runbook(dag_id), row_run, row_conf, actor)
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        other._create(other.runbook(dag_id), row_run, row_conf, actor)
    assert other._drain_one(other.runbook(dag_id), dag_id, row_run, row_conf, actor) == "exists"
    assert len(runs_of("remediate_findings", run_id)) == 1
    assert outbox_status("remediate_findings", run_id) == ("created", None)


def test_the_background_drainer_creates_the_answered_run(intake_db: Path, tmp_path: Path) -> None:
    launcher = AirflowLauncher("thread", audit_base=tmp_path / "data")
    try:
        intake = Intake(RouteStore(), SecretStore(), launcher, audit_base=tmp_path / "data")
        with TestClient(create_app(intake)) as client:
            answer = post(client, "alertmanager", public_bucket_alert(unique("bg"), ["rb-bg"])).json()
            assert answer["decision"] == "started"
            [run] = wait_for("the drainer to create the run", lambda: runs_of("remediate_findings", answer["run_id"]))
            assert run.conf["resources"] == ["rb-bg"] and run.conf["idempotency_key"] == answer["run_id"]
            assert outbox_status("remediate_findings", answer["run_id"]) == ("created", None)
    finally:
        launcher.close()


def test_an_accepted_incident_outlives_a_crash_before_its_run_is_created(intake_db: Path, tmp_path: Path) -> None:
    """Accepted (202), then the worker dies before its drainer ran: the next receiver creates that run at start."""
    crashed = AirflowLauncher()
    run_id = f"intake__generic__{unique('crash')}"
    conf = {"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-crash"], "reason": "before the crash"}
    accepted = crashed.launch("remediate_findings", run_id, conf, actor="intake:generic")
    assert accepted.created and outbox_status("remediate_findings", run_id) == ("pending", None)
    del crashed  # nothing of it survives but the row
    restarted = AirflowLauncher("thread", audit_base=tmp_path / "data")
    try:
        [run] = wait_for("the restarted drainer to create the run", lambda: runs_of("remediate_findings", run_id))
    finally:
        restarted.close()
    assert run.run_id == accepted.run_id and run.conf == {**conf, "idempotency_key": run_id}
    assert run.triggering_user_name == "intake:generic"
    assert outbox_status("remediate_findings", run_id) == ("created", None)


def test_a_run_airflow_refuses_after_the_answer_is_failed_and_recorded(intake_db: Path, tmp_path: Path) -> None:
    """The runbook's params changed between the 202 and the drain: no run, the row failed, the audit trail says so."""
    launcher = AirflowLauncher(audit_base=tmp_path / "data")
    run_id = f"intake__generic__{unique('changed')}"
    bad = {"rule": "aws_rds_backup_retention", "resources": ["db-1"], "retention_days": 99}  # maximum is 35
    assert outbox.accept(launcher.engine, "remediate_findings", run_id, bad, "intake:generic")
    launcher.drain()
    assert not runs_of("remediate_findings", run_id)
    status, error = outbox_status("remediate_findings", run_id) or ("", "")
    assert status == "failed" and error and "retention_days" in error and "99 is greater than the maximum of 35" in error
    [record] = [r for r in read_audit(base=tmp_path / "data") if r.run_id == run_id]
    assert (record.step, record.action, record.outcome, record.idempotency_key) == ("intake", "failed", "failed", run_id)
    # a re-delivery is the same incident: answered with the failed state, nothing started
    again = launcher.launch("remediate_findings", run_id, {"rule": "aws_rds_backup_retention", "resources": ["db-1"]},
                            actor="intake:generic")
    assert again.created is False and again.state == "failed" and again.warning
    assert not runs_of("remediate_findings", run_id)


@pytest.mark.parametrize("conf", [
    {},
    {"dry_run": True, "rule": "aws_s3_bucket_versioning", "resources": ["rb-a"]},
    {"retention_days": 99},
    {"retention_days": "7"},
    {"retention_days": 7, "rule": "aws_rds_backup_retention"},
    {"dry_run": "yes"},
    {"resources": "rb-a"},
    {"resources": [1, 2]},
    {"max_concurrency": "ten"},
    {"max_concurrency": "10%", "max_errors": "0"},
    {"reason": "x" * 501},
    {"finding_ids": ["aws_s3_bucket_versioning:0123456789abcdef"], "dry_run": None},
    {"tag_values": {"owner": ""}},
    {"finding_ids": ["not a finding"]},
])
def test_the_cached_params_check_decides_as_airflows_create_dagrun(intake_db: Path, conf: dict[str, Any]) -> None:
    """The answer's params check (validators built once per DAG version) accepts and refuses exactly what
    Airflow's own ``params.deep_merge(conf).validate()`` (the first step of create_dagrun) does, same message."""
    from airflow.exceptions import ParamValidationError

    dag = AirflowLauncher().runbook("remediate_findings").dag
    check = ParamCheck(dag)
    merged = {k: v for k, v in conf.items() if k in dag.params}
    try:
        dag.params.deep_merge(merged).validate()
        airflow_says = None
    except ParamValidationError as exc:
        airflow_says = str(exc)
    try:
        check.conf_with_key(merged, "intake__generic__check")
        ours = None
    except ConfRejected as exc:
        ours = str(exc).removeprefix("runbook remediate_findings refuses the conf: ")
    assert ours == airflow_says


def test_bearer_token_checks(client: TestClient) -> None:
    payload = public_bucket_alert(unique("g"), ["rb-a"])
    assert post(client, "alertmanager", payload, headers={}).status_code == 401
    wrong = post(client, "alertmanager", payload, headers=am_headers("not-the-token-0123456789"))
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    basic = post(client, "alertmanager", payload, headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["detail"]
    # rotation: the connection holds two tokens, both are accepted
    rotated = post(client, "alertmanager", payload, headers=am_headers(AM_TOKEN_NEXT))
    assert rotated.status_code == 202 and rotated.json()["decision"] == "started"
    assert not runs_of("remediate_findings", prefix="intake__alertmanager__missing")


# ---- PagerDuty ---------------------------------------------------------------------------------------------
def test_pagerduty_incident_lifecycle_is_one_run(client: TestClient) -> None:
    incident = unique("Q").upper()
    triggered = pd_payload("incident.triggered", incident, incident_key=FINDING)
    first = post(client, "pagerduty", triggered)
    assert first.status_code == 202 and first.json()["decision"] == "started", first.text
    run_id = first.json()["run_id"]
    assert run_id == f"intake__pagerduty__{incident}"
    drained(client)
    [run] = runs_of("remediate_findings", run_id)
    assert run.conf["finding_ids"] == [FINDING] and run.conf["dry_run"] is True
    assert run.conf["reason"] == f"PagerDuty incident {incident}: Public bucket"
    # PagerDuty re-delivers the same event (new X-Webhook-Id, same event id): the same run
    assert post(client, "pagerduty", triggered).json()["decision"] == "duplicate"
    # acknowledged: an update of a live incident, the route starts on firing only
    ack = post(client, "pagerduty", pd_payload("incident.acknowledged", incident, incident_key=FINDING)).json()
    assert ack["decision"] == "ignored" and "starts on firing, the event is updated" in ack["reason"]
    # reopened: the same incident is firing again -> its run, not a second one
    reopened = post(client, "pagerduty", pd_payload("incident.reopened", incident, incident_key=FINDING)).json()
    assert reopened["decision"] == "duplicate" and reopened["run_id"] == run_id
    resolved = post(client, "pagerduty", pd_payload("incident.resolved", incident, incident_key=FINDING)).json()
    assert resolved["decision"] == "ignored" and resolved["reason"].startswith("resolved")
    assert len(runs_of("remediate_findings", prefix=f"intake__pagerduty__{incident}")) == 1


def test_pagerduty_signatures_good_bad_and_rotated(client: TestClient) -> None:
    payload = pd_payload("incident.triggered", unique("P").upper(), incident_key=FINDING)
    body = body_of(payload)
    assert client.post("/hooks/pagerduty", content=body, headers={}).status_code == 401
    bad = client.post("/hooks/pagerduty", content=body, headers=pd_headers(body, "some-other-secret-0123456789"))
    assert bad.status_code == 401 and bad.json()["detail"] == "X-PagerDuty-Signature does not match the body"
    tampered = client.post("/hooks/pagerduty", content=body.replace(b"Public bucket", b"Public bucker"),
                           headers=pd_headers(body))
    assert tampered.status_code == 401
    garbage = client.post("/hooks/pagerduty", content=body, headers={"X-PagerDuty-Signature": "v1=zz,v2=abc"})
    assert garbage.status_code == 401 and "no v1=" in garbage.json()["detail"]
    # PagerDuty rotating its secret sends two signatures; only the second is ours: accepted
    both = client.post("/hooks/pagerduty", content=body,
                       headers=pd_headers(body, "pagerduty-new-secret-0123456", PD_SECRET_OLD))
    assert both.status_code == 202 and both.json()["decision"] == "started"
    # our side rotating: the connection holds the new and the old secret, either signs
    again = client.post("/hooks/pagerduty", content=body, headers=pd_headers(body, PD_SECRET_OLD))
    assert again.status_code == 202 and again.json()["decision"] == "duplicate"


def test_pagerduty_event_about_no_incident_is_ignored(client: TestClient) -> None:
    service_event = {"event": {"id": unique("E"), "event_type": "service.updated", "resource_type": "service",
                               "occurred_at": "2026-11-30T08:00:00Z", "agent": None, "client": None,
                               "data": {"id": "PF9KMXH", "type": "service", "summary": "svc"}}}
    answer = post(client, "pagerduty", service_event)
    assert answer.status_code == 202 and answer.json()["decision"] == "ignored"
    assert answer.json()["reason"] == "not an incident event (service.updated)"


# ---- generic -----------------------------------------------------------------------------------------------
def test_generic_signature_good_bad_stale_and_replayed(make_client: ClientFactory) -> None:
    now = [1_900_000_000.0]
    client = make_client(clock=lambda: now[0])
    event_id = unique("evt-")
    payload = generic_payload(event_id, type="compliance.finding", summary="versioning off",
                              labels={"rule": "aws_s3_bucket_versioning", "resource": "rb-prod-scratch-eu"})
    body = body_of(payload)
    stamp = int(now[0])
    good = client.post("/hooks/generic", content=body, headers=generic_headers(body, timestamp=stamp))
    assert good.status_code == 202 and good.json()["decision"] == "started", good.text
    run_id = good.json()["run_id"]
    assert run_id == f"intake__generic__{event_id}"
    drained(client)
    [run] = runs_of("remediate_findings", run_id)
    assert run.conf["rule"] == "aws_s3_bucket_versioning" and run.conf["resources"] == ["rb-prod-scratch-eu"]
    # replayed within the window: authentic, and the event id makes it the same run
    replay = client.post("/hooks/generic", content=body, headers=generic_headers(body, timestamp=stamp))
    assert replay.json()["decision"] == "duplicate"
    # replayed after the window (or sent with a clock far off): refused
    now[0] += 301
    stale = client.post("/hooks/generic", content=body, headers=generic_headers(body, timestamp=stamp))
    assert stale.status_code == 401 and stale.json()["detail"].startswith("stale timestamp")
    future = client.post("/hooks/generic", content=body, headers=generic_headers(body, timestamp=int(now[0]) + 301))
    assert future.status_code == 401
    # a signature over another timestamp, or with the wrong secret, or none at all
    moved = generic_headers(body, timestamp=int(now[0]))
    moved["X-Runbooks-Timestamp"] = str(int(now[0]) - 1)
    assert client.post("/hooks/generic", content=body, headers=moved).status_code == 401
    wrong = generic_headers(body, secret="not-the-generic-secret-000", timestamp=int(now[0]))
    assert client.post("/hooks/generic", content=body, headers=wrong).status_code == 401
    assert client.post("/hooks/generic", content=body).status_code == 401
    assert len(runs_of("remediate_findings", prefix="intake__generic__" + event_id)) == 1


def test_generic_payload_errors_are_400_naming_the_field(client: TestClient) -> None:
    cases = {
        "event_id": generic_payload("has space"),
        "..": generic_payload("a..b"),
        "Extra inputs are not permitted": generic_payload(unique(), severty="high"),
        "labels.rule": generic_payload(unique(), labels={"rule": 5}),
        "status": generic_payload(unique(), status="exploded"),
    }
    for expected, payload in cases.items():
        answer = post(client, "generic", payload)
        assert answer.status_code == 400 and expected in answer.json()["detail"], (expected, answer.text)


# ---- malformed input, sizes, routes -------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["alertmanager", "pagerduty", "generic"])
def test_malformed_bodies_are_400_and_start_nothing(client: TestClient, source: str) -> None:
    before, accepted = len(runs_of("remediate_findings")), outbox_rows()
    bodies = [b"", b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe\xfa", b'{"a": NaN}',
              b"[" * 100_000 + b"]" * 100_000, b"null"]
    for body in bodies:
        answer = post(client, source, body)
        assert answer.status_code == 400, (body[:20], answer.status_code, answer.text[:300])
        assert answer.json()["decision"] == "rejected"
    assert len(runs_of("remediate_findings")) == before and outbox_rows() == accepted


def test_wrong_types_are_400_naming_the_field(client: TestClient) -> None:
    good = public_bucket_alert(unique("g"), ["rb-a"])
    cases: list[tuple[str, dict[str, Any]]] = [
        ("version", {**good, "version": 4}),
        ("version", {**good, "version": "3"}),
        ("alerts", {**good, "alerts": {"0": good["alerts"][0]}}),
        ("alerts", {**good, "alerts": []}),
        ("alerts.0.labels.bucket", {**good, "alerts": [{**good["alerts"][0], "labels": {"bucket": 7}}]}),
        ("alerts.0.fingerprint", {**good, "alerts": [{k: v for k, v in good["alerts"][0].items() if k != "fingerprint"}]}),
        ("groupKey", {k: v for k, v in good.items() if k != "groupKey"}),
        ("status", {**good, "status": True}),
    ]
    for field, payload in cases:
        answer = post(client, "alertmanager", payload)
        assert answer.status_code == 400 and field in answer.json()["detail"], (field, answer.text)
    pd_bad = pd_payload("incident.triggered", "PX1")
    pd_bad["event"]["data"]["service"] = "a string"
    answer = post(client, "pagerduty", pd_bad)
    assert answer.status_code == 400 and "event.data.service" in answer.json()["detail"]


def test_oversized_bodies_are_413_before_parsing(client: TestClient, tmp_path: Path) -> None:
    huge = b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for source in ("alertmanager", "pagerduty", "generic"):
        body, headers = signed(source, huge)
        assert client.post(f"/hooks/{source}", content=body, headers=headers).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read, refused once over the limit
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    answer = client.post("/hooks/alertmanager", content=chunks(), headers=am_headers())
    assert answer.status_code == 413 and answer.json()["decision"] == "too_large"
    # the limit is inclusive: a body of exactly the limit is read (and here refused as malformed, not too large)
    exact = b" " * MAX_BODY_BYTES
    assert client.post("/hooks/alertmanager", content=exact, headers=am_headers()).status_code == 400
    assert {r.action for r in audit(tmp_path)} == {"too_large", "rejected"}


def test_unknown_source_is_404(client: TestClient, tmp_path: Path) -> None:
    answer = client.post("/hooks/nagios", content=b"{}")
    assert answer.status_code == 404 and "known: alertmanager, pagerduty, generic" in answer.json()["detail"]
    assert client.post("/hooks/", content=b"{}").status_code == 404
    assert [(r.action, r.actor) for r in audit(tmp_path)] == [("unknown_source", "intake:nagios")]


def test_no_matching_route_is_accepted_and_ignored_with_the_reason(client: TestClient, tmp_path: Path) -> None:
    alerts = [am_alert(unique("f")[:16], {"alertname": "DiskFull", "instance": "db-1"})]
    answer = post(client, "alertmanager", am_payload(unique("g"), alerts, alertname="DiskFull"))
    assert answer.status_code == 202 and answer.json()["decision"] == "ignored"
    assert answer.json()["reason"] == ("no route matches (public-bucket: label alertname is 'DiskFull', not PublicBucket; "
                                       "service-down-failover: severity is None, not critical)")
    [record] = audit(tmp_path)
    assert record.action == "ignored" and record.after["reason"] == answer.json()["reason"]
    assert record.idempotency_key and record.idempotency_key.startswith("intake__alertmanager__DiskFull__")
    pd_other = pd_payload("incident.triggered", unique("Q"), service="Payments")
    reason = post(client, "pagerduty", pd_other).json()["reason"]
    assert reason == "no route matches (pagerduty-compliance-finding: service is 'Payments', not Cloud compliance)"


def test_a_template_the_event_cannot_fill_is_400(client: TestClient) -> None:
    alert = am_alert(unique("f")[:16], {"alertname": "PublicBucket", "severity": "critical"})  # no `bucket` label
    answer = post(client, "alertmanager", am_payload(unique("g"), [alert]))
    assert answer.status_code == 400
    assert answer.json()["detail"] == "route public-bucket: conf needs label 'bucket' is missing on 1 of 1 alerts"


ROUTES_WITH_BAD_CONF = """
version: 1
routes:
  - name: retention
    source: generic
    match: {event_type: retention}
    runbook: remediate_findings
    conf: {rule: aws_rds_backup_retention, resources: [db-1], retention_days: {$label: days}}
  - name: typo
    source: generic
    match: {event_type: typo}
    runbook: remediate_findings
    conf: {finding_id: [x]}
  - name: ghost
    source: generic
    match: {event_type: ghost}
    runbook: ghost_runbook
"""


def test_a_conf_the_runbook_refuses_is_400_and_starts_nothing(make_client: ClientFactory, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_WITH_BAD_CONF)
    client = make_client(routes, runbooks=known_runbooks(DAGS) | {"ghost_runbook"})
    before, accepted = len(runs_of("remediate_findings")), outbox_rows()
    days = post(client, "generic", generic_payload(unique(), type="retention", labels={"days": "99"}))
    assert days.status_code == 400, days.text
    assert "retention_days" in days.json()["detail"] and "is not of type 'integer'" in days.json()["detail"]
    typo = post(client, "generic", generic_payload(unique(), type="typo"))
    assert typo.status_code == 400 and "has no parameter(s) finding_id; allowed:" in typo.json()["detail"]
    assert len(runs_of("remediate_findings")) == before and outbox_rows() == accepted  # nothing accepted
    # a runbook the routing file names but Airflow has not loaded: the sender is asked to retry later
    ghost = post(client, "generic", generic_payload(unique(), type="ghost"))
    assert ghost.status_code == 503 and ghost.headers["Retry-After"] == "30"
    assert "runbook ghost_runbook is not loaded in Airflow" in ghost.json()["detail"]


def test_an_invalid_routing_file_is_503_until_fixed(make_client: ClientFactory, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("version: 1\nroutes:\n  - name: x\n    runbook: no_such_runbook\n")
    client = make_client(routes)
    payload = generic_payload(unique(), type="compliance.finding",
                              labels={"rule": "aws_s3_bucket_versioning", "resource": "rb-a"})
    broken = post(client, "generic", payload)
    assert broken.status_code == 503 and "no_such_runbook' does not exist in dags/" in broken.json()["detail"]
    health = client.get("/health")  # unauthenticated: the state, never the error text or a path
    assert health.status_code == 503 and health.json() == {"routing": {"ok": False, "routes": 0}, "sources": {
        s: {"configured": True} for s in ("alertmanager", "pagerduty", "generic")}}
    stranger = client.post("/hooks/generic", content=body_of(payload))  # authentication comes before routing
    assert stranger.status_code == 401 and "no_such_runbook" not in stranger.text
    routes.write_text((PROJECT_ROOT / "config" / "intake" / "routes.yaml").read_text() + "\n# fixed\n")
    fixed = post(client, "generic", payload)
    assert fixed.status_code == 202 and fixed.json()["decision"] == "started"
    assert client.get("/health").status_code == 200
    health = client.get("/health").json()
    assert health["routing"] == {"ok": True, "routes": 4}
    assert health["sources"] == {s: {"configured": True} for s in ("alertmanager", "pagerduty", "generic")}


def test_a_missing_connection_refuses_its_source_only(make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RUNBOOKS_INTAKE_GENERIC")
    client = make_client()
    body = body_of(generic_payload(unique()))
    answer = client.post("/hooks/generic", content=body, headers=generic_headers(body, secret=GENERIC_SECRET))
    assert answer.status_code == 401 and answer.json()["detail"] == "this source has no usable secret configured"
    assert client.get("/health").json()["sources"]["generic"] == {"configured": False}
    assert post(client, "alertmanager", public_bucket_alert(unique("g"), ["rb-a"])).status_code == 202


def test_secrets_and_signatures_never_reach_the_audit_trail_or_the_logs(
    client: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    body = body_of(pd_payload("incident.triggered", unique("S"), incident_key=FINDING))
    headers = pd_headers(body)
    client.post("/hooks/pagerduty", content=body, headers=headers)
    client.post("/hooks/pagerduty", content=body, headers=pd_headers(body, "a-wrong-secret-0123456789"))
    client.post("/hooks/alertmanager", content=body_of(public_bucket_alert(unique("g"), ["rb-a"])), headers=am_headers())
    client.post("/hooks/alertmanager", content=b"{}", headers=am_headers("guessed-token-0123456789"))
    written = "\n".join(p.read_text() for p in (tmp_path / "data" / "audit").glob("*.jsonl"))
    logged = caplog.text
    assert len(audit(tmp_path)) == 4
    for secret in (*ALL_SECRETS, headers["X-PagerDuty-Signature"].removeprefix("v1="), "guessed-token-0123456789"):
        assert secret not in written and secret not in logged


def test_a_delivery_that_cannot_get_the_sqlite_writer_in_time_is_503(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overload sheds instead of queueing past the sender's timeout: 503 + Retry-After, nothing started."""
    from include.intake import runs

    monkeypatch.setattr(runs, "WRITE_WAIT_S", 0.2)
    launcher = client.app.state.intake.launcher
    payload = public_bucket_alert(unique("busy"), ["rb-a"])
    with launcher._write_lock:  # another delivery is inserting its run
        busy = post(client, "alertmanager", payload)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "30", busy.text
    assert "too many new incidents at once" in busy.json()["detail"]
    retried = post(client, "alertmanager", payload)  # the sender's retry
    assert retried.status_code == 202 and retried.json()["decision"] == "started"
    drained(client)
    assert len(runs_of("remediate_findings", retried.json()["run_id"])) == 1


def test_a_long_title_is_cut_to_the_runbooks_limit_instead_of_refusing_the_alert(client: TestClient) -> None:
    incident = unique("L").upper()
    answer = post(client, "pagerduty", pd_payload("incident.triggered", incident, incident_key=FINDING, title="x" * 2000))
    assert answer.status_code == 202 and answer.json()["decision"] == "started", answer.text
    drained(client)
    [run] = runs_of("remediate_findings", answer.json()["run_id"])
    assert len(run.conf["reason"]) == 500 and run.conf["reason"].endswith("x...")
