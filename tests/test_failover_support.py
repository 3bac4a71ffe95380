"""Shared by the failover tests: the local estate on this session's emulators, and the runbooks' tasks driven
in their DAG's order through the same functions the DAG calls (``include.failover.tasks``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from localdev.services import LocalServices

APPROVE = {"chosen_options": ["Approve"], "approved": True, "responded_by": "carol", "timed_out": False,
           "responded_at": "2026-11-30T00:00:00+00:00"}
REJECT = {"chosen_options": ["Reject"], "approved": False, "responded_by": "dave", "timed_out": False}
AWS = "aws_estate"


class FakeTI:
    """XCom push / pull of one run, as the tasks use it."""

    def __init__(self, store: dict[tuple[str, str], Any], task_id: str) -> None:
        self.store, self.task_id = store, task_id

    def xcom_push(self, key: str, value: Any) -> None:
        self.store[(self.task_id, key)] = json.loads(json.dumps(value))  # XCom is JSON: nothing else survives


def context(dag_id: str, run_id: str, params: dict[str, Any], store: dict[tuple[str, str], Any], task_id: str,
            declared: list[str], user: str = "tester") -> dict[str, Any]:
    defaults = {k: None for k in declared}
    return {
        "run_id": run_id, "ti": FakeTI(store, task_id), "params": {**defaults, **params},
        "dag": SimpleNamespace(dag_id=dag_id, params=defaults),
        "dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id, conf=dict(params), run_type="manual",
                                   triggering_user_name=user, run_after=datetime.now(UTC)),
    }


FAILOVER_PARAMS = ["service", "incident_id", "reason", "severity", "dry_run", "force", "incident_started_at"]


@dataclass
class Estate:
    services: LocalServices
    publisher: Any
    catalog_file: Path


def rds(region: str) -> Any:
    """The provider's RdsHook, through the project's one way of building AWS clients (a session per connection)."""
    from include.clouds.aws.clients import client_for

    return client_for(AWS, "rds", region)


def route53() -> Any:
    from include.clouds.aws.clients import client_for

    return client_for(AWS, "route53")


def db(identifier: str, region: str) -> dict[str, Any] | None:
    found = rds(region).describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [identifier]}])
    return found["DBInstances"][0] if found["DBInstances"] else None


def tags(identifier: str, region: str) -> dict[str, str]:
    arn = db(identifier, region)["DBInstanceArn"]  # type: ignore[index]
    return {t["Key"]: t["Value"] for t in rds(region).list_tags_for_resource(ResourceName=arn)["TagList"]}


def dns_records(name: str = "orders.example-runbooks.com.") -> dict[str, dict[str, Any]]:
    """Set identifier -> record (independent read, not through include/)."""
    zone = [z for z in route53().list_hosted_zones_by_name(DNSName="example-runbooks.com.")["HostedZones"]
            if z["Name"] == "example-runbooks.com."][0]["Id"]
    records = route53().list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return {r["SetIdentifier"]: r for r in records if r["Name"] == name and "SetIdentifier" in r}


def primary_answers() -> str:
    """Which side's record is PRIMARY (what Route 53 answers while its health check passes)."""
    (primary,) = [k for k, r in dns_records().items() if r.get("Failover") == "PRIMARY"]
    return primary


def start_estate(tmp: Path, **overrides: Any) -> Iterator[Estate]:
    """The local failover estate on free ports (catalog written to ``tmp``, RUNBOOKS_SERVICES_FILE set by the
    caller's monkeypatch through the returned file)."""
    from localdev.failover_estate import LagPublisher, local_catalog, seed_service, write_catalog

    services = LocalServices("orders", primary=("127.0.0.2", 0), standby=("127.0.0.3", 0),
                             control=("127.0.0.1", 0)).start()
    path = write_catalog(tmp / "services.yaml", local_catalog(services, **overrides))
    from include.failover.catalog import load_catalog

    catalog = load_catalog(path)
    seed_service(catalog.get("orders"))
    publisher = LagPublisher(catalog, interval=0.3).start()
    try:
        yield Estate(services, publisher, path)
    finally:
        publisher.stop()
        services.stop()


Runner = Callable[..., dict[str, Any]]


# ---- failover_service's tasks in the DAG's order ----------------------------------------------------------
def run_failover(run_id: str, *, approval: dict[str, Any] | None = None, fail_at: str | None = None,
                 user: str = "tester", **params: Any) -> dict[str, Any]:
    """resolve -> assess x2 -> decide -> [report_decision | approve -> fence -> promote -> switch -> verify]
    -> record_and_notify, as the DAG wires them (a failing task stops its successors; the final task always
    runs). ``approval``: the HITL answer when the policy does not approve. ``fail_at``: a task id whose body
    raises instead of running (a crash there). Returns {"result": result.json, "tasks": {task: state},
    "error": the final task's error}."""
    from include.failover import history, tasks

    store: dict[tuple[str, str], Any] = {}
    states: dict[str, str] = {}

    def ctx(task_id: str) -> dict[str, Any]:
        return context("failover_service", run_id, params, store, task_id, FAILOVER_PARAMS, user)

    def call(task_id: str, body: Callable[[], Any]) -> Any:
        if fail_at == task_id:
            states[task_id] = "failed"
            return None
        try:
            value = body()
        except Exception as exc:
            states[task_id] = "skipped" if type(exc).__name__ == "AirflowSkipException" else "failed"
            store[(task_id, "error")] = f"{type(exc).__name__}: {exc}"
            return None
        states[task_id] = "success"
        store[(task_id, "return_value")] = json.loads(json.dumps(value))
        return store[(task_id, "return_value")]

    resolved = call("resolve_request", lambda: tasks.resolve(ctx("resolve_request")))
    if resolved is None:
        return {"tasks": states, "error": store.get(("resolve_request", "error")), "result": None}
    primary = call("assess_primary", lambda: tasks.assess(resolved, "primary"))
    standby = call("assess_standby", lambda: tasks.assess(resolved, "standby"))
    decision = call("decide", lambda: tasks.decide(ctx("decide"), resolved, primary, standby))
    assert decision is not None, store.get(("decide", "error"))
    path = {"human": "approve_failover", "policy": "approve_by_policy", "resumed": "approve_by_policy"}.get(
        decision.get("approval") or "", "report_decision")
    if path == "report_decision":
        call("report_decision", lambda: tasks.report_decision(ctx("report_decision"), resolved, primary, standby,
                                                              decision))
        error = store.get(("report_decision", "error"))
    else:
        policy = call("approve_by_policy", lambda: tasks.approve_by_policy(ctx("approve_by_policy"), decision)) \
            if path == "approve_by_policy" else None
        human = approval if path == "approve_failover" else None
        steps: list[Any] = []
        ok = bool(policy or (human and human.get("approved")))
        for task_id, step in (("fence_primary", "failover.fence"), ("promote_standby", "failover.promote"),
                              ("switch_dns", "failover.switch_dns")):
            if not ok:
                states[task_id] = "skipped"
                continue

            def body(task_id: str = task_id, step: str = step) -> Any:
                recorded = tasks.record_human_approval(ctx(task_id), decision, human)
                return tasks.apply(ctx(task_id), decision, step, tasks.approval_from(policy, recorded), task=task_id)

            steps.append(call(task_id, body))
            ok = states[task_id] == "success"
        steps += [store.get((t, tasks.DUPLICATE_KEY)) for t in ("fence_primary", "promote_standby", "switch_dns")]
        if ok:
            call("verify", lambda: tasks.verify(ctx("verify"), decision, "standby"))
        call("record_and_notify", lambda: tasks.record_and_notify(
            ctx("record_and_notify"), resolved, primary, standby, decision, policy or human, steps,
            store.get(("verify", tasks.CHECKS_KEY))))
        error = store.get(("record_and_notify", "error"))
    result_file = history.result_path(run_id)
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return {"tasks": states, "error": error, "result": result, "decision": decision}


FAILBACK_PARAMS = ["service", "incident_id", "reason", "dry_run"]


class _Runner:
    """One run of a runbook's tasks: XCom store, task states, and ``call`` = run a task body as Airflow would."""

    def __init__(self, dag_id: str, run_id: str, params: dict[str, Any], declared: list[str], user: str) -> None:
        self.dag_id, self.run_id, self.params, self.declared, self.user = dag_id, run_id, params, declared, user
        self.store: dict[tuple[str, str], Any] = {}
        self.states: dict[str, str] = {}

    def ctx(self, task_id: str) -> dict[str, Any]:
        return context(self.dag_id, self.run_id, self.params, self.store, task_id, self.declared, self.user)

    def call(self, task_id: str, body: Callable[[], Any]) -> Any:
        try:
            value = body()
        except Exception as exc:
            self.states[task_id] = "skipped" if type(exc).__name__ == "AirflowSkipException" else "failed"
            self.store[(task_id, "error")] = f"{type(exc).__name__}: {exc}"
            return None
        self.states[task_id] = "success"
        self.store[(task_id, "return_value")] = json.loads(json.dumps(value))
        return self.store[(task_id, "return_value")]

    def ok(self, task_id: str) -> bool:
        return self.states.get(task_id) == "success"


def run_failback(run_id: str, *, approval: dict[str, Any] | None = APPROVE, user: str = "tester",
                 **params: Any) -> dict[str, Any]:
    """failback_service's tasks in its DAG's order (see run_failover)."""
    from include.failover import history, tasks

    r = _Runner("failback_service", run_id, params, FAILBACK_PARAMS, user)
    resolved = r.call("resolve_request", lambda: tasks.resolve(r.ctx("resolve_request")))
    if resolved is None:
        return {"tasks": r.states, "error": r.store.get(("resolve_request", "error")), "result": None}
    primary = r.call("assess_primary", lambda: tasks.assess(resolved, "primary"))
    standby = r.call("assess_standby", lambda: tasks.assess(resolved, "standby"))
    decision = r.call("decide", lambda: tasks.decide_failback(r.ctx("decide"), resolved, primary, standby))
    assert decision is not None, r.store.get(("decide", "error"))
    if decision["outcome"] != "fail_back":
        r.call("report_decision", lambda: tasks.report_failback_decision(r.ctx("report_decision"), resolved, primary,
                                                                         standby, decision))
        error = r.store.get(("report_decision", "error"))
    else:
        _failback_path(r, resolved, primary, standby, decision, approval)
        error = r.store.get(("record_and_notify", "error"))
    result_file = history.result_path(run_id)
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return {"tasks": r.states, "error": error, "result": result, "decision": decision}


def _failback_path(r: _Runner, resolved: Any, primary: Any, standby: Any, decision: Any,
                   approval: dict[str, Any] | None) -> None:
    """rebuild -> wait -> approve -> fence -> promote -> switch -> verify -> restore -> record."""
    from include.failover import tasks

    steps = [r.call("rebuild_replication", lambda: tasks.failback_step(r.ctx("rebuild_replication"), decision,
                                                                         "rebuild_replication", None))]
    waited = r.call("wait_for_replica", lambda: tasks.wait_for_replica(r.ctx("wait_for_replica"), decision)) \
        if r.ok("rebuild_replication") else None
    policy = human = None
    if waited and waited["approval"] == "policy":
        policy = r.call("approve_by_policy", lambda: tasks.approve_failback_by_policy(
            r.ctx("approve_by_policy"), decision, waited))
    elif waited:
        human = approval
    go = bool(policy or (human and human.get("approved")))
    for task_id in ("fence_standby", "promote_primary", "switch_dns"):
        if go:
            def body(task_id: str = task_id) -> Any:
                recorded = tasks.record_human_approval(r.ctx(task_id), decision, human) \
                    if task_id == "fence_standby" else human
                return tasks.failback_step(r.ctx(task_id), decision, task_id, tasks.approval_from(policy, recorded))

            steps.append(r.call(task_id, body))
            go = r.ok(task_id)
    if go:
        r.call("verify", lambda: tasks.verify(r.ctx("verify"), decision, "primary"))
    if go and r.ok("verify"):
        steps.append(r.call("restore_standby", lambda: tasks.failback_step(
            r.ctx("restore_standby"), decision, "restore_standby", tasks.approval_from(policy, human))))
        if r.ok("restore_standby"):
            tasks.wait_for_replica(r.ctx("restore_standby"), decision, side="standby")
    steps += [r.store.get((t, tasks.DUPLICATE_KEY)) for t in ("rebuild_replication", "fence_standby",
                                                                "promote_primary", "switch_dns", "restore_standby")]
    r.call("record_and_notify", lambda: tasks.record_failback(
        r.ctx("record_and_notify"), resolved, primary, standby, decision, waited, policy or human, steps,
        r.store.get(("verify", tasks.CHECKS_KEY))))


DRILL_PARAMS = ["service", "reason", "dry_run"]


def run_drill(run_id: str, *, run_type: str = "manual", **params: Any) -> dict[str, Any]:
    """failover_drill's tasks in its DAG's order (auto-approved by the catalog's drill policy)."""
    from include.failover import history, tasks

    store: dict[tuple[str, str], Any] = {}
    ctx = context("failover_drill", run_id, params, store, "t", DRILL_PARAMS)
    ctx["dag_run"].run_type = run_type
    resolved = tasks.drill_resolve(ctx)
    ready = tasks.drill_check_ready(ctx, resolved)
    parts: dict[str, Any] = {"ready": ready, "approval": None, "outage": None, "failover": None, "restored": None,
                             "failback_part": None}
    errors: dict[str, str] = {}
    if ready["outcome"] == "drill":
        parts["approval"] = {"approved": True, "responded_by": "policy: drill.auto_approve"}
        try:
            parts["outage"] = tasks.drill_stage(resolved, "start_outage")
            parts["failover"] = tasks.drill_stage(resolved, "fail_over", outage=parts["outage"],
                                                  approval=parts["approval"])
        except Exception as exc:
            errors["fail_over"] = str(exc)
        parts["restored"] = tasks.drill_stage(resolved, "end_outage")
        if not errors:
            parts["failback_part"] = tasks.drill_stage(resolved, "fail_back", approval=parts["approval"])
    error = None
    try:
        tasks.drill_report(ctx, resolved, errors=errors, **parts)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    return {"result": json.loads(history.result_path(run_id).read_text()), "error": error}
