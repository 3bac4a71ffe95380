"""Failback of one service to its primary side, as plain functions (the Airflow tasks and the drill call these).

    decide -> rebuild replication (a new replica of the promoted standby under the primary's catalog name,
    the fenced old primary renamed out of the way) -> wait until it is available and caught up (bounded)
    -> approve -> fence the standby -> promote the new primary -> switch DNS back -> verify
    -> restore the standby (a new replica of the new primary under the standby's catalog name) -> record

At the end the topology is the catalog's again: the primary's database is the writer, the standby's is its
read replica, DNS answers the primary. Nothing is deleted: the databases that held the catalog's names are
renamed ``<name>-retired-<hash>`` and listed in the result for a person to review and remove.

Once per key (the ``incident_id`` whose failover this reverts), with the same ledger, leases and audit as
failover: a second run for the key changes nothing, a rerun after a failure resumes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from include.changes import engine
from include.changes.engine import Item, from_dicts, to_dicts
from include.changes.ledger import Ledger
from include.changes.model import ChangeError
from include.changes.rate import RateControl
from include.changes.report import Wording, approval_text, plan_lines
from include.changes.waiting import WaitTimeout, poll_until
from include.failover import core, history
from include.failover.catalog import Service, database_ref, record_set_ref
from include.failover.core import Request, RunInfo, Timer
from include.failover.steps import (
    STEPS,
    FenceDatabase,
    PromoteReplica,
    RebuildReplica,
    SwitchDns,
    db_record,
    dns_record,
    resolver,
    retired_identifier,
)
from include.targets import TargetsConfig, load_targets

WORDING = Wording(title="Fail a service back to its primary", results_dir=history.RESULTS_DIR,
                  noun="failback step", done_status="failed_back", nothing_status="nothing_to_do",
                  in_state="already done")
REPORT_OUTCOMES = {"dry_run": False, "refused": True, "done_earlier": False, "in_progress": False,
                   "nothing_to_do": False}
#: Task -> (step, which side's database / the DNS record) in the order they run.
STEP_ORDER = (("rebuild_replication", RebuildReplica.id, "primary"), ("fence_standby", FenceDatabase.id, "standby"),
              ("promote_primary", PromoteReplica.id, "primary"), ("switch_dns", SwitchDns.id, "dns"),
              ("restore_standby", RebuildReplica.id, "standby"))


def items(service: Service, targets: TargetsConfig | None = None) -> dict[str, Item]:
    """The failback's items by task (unplanned: each is planned when its turn comes)."""
    out = {}
    for task, step, where in STEP_ORDER:
        record = dns_record(record_set_ref(service, targets)) if where == "dns" else \
            db_record(database_ref(service.side(where).database, targets))
        out[task] = Item(step=step, record=record, labels={"task": task})
    return out


def options(service: Service, request: Request, runbook: str) -> dict[str, Any]:
    return core.step_options(service, core.ledger_key(runbook, request), "primary")


def in_catalog_topology(primary: Mapping[str, Any], standby: Mapping[str, Any]) -> bool:
    """DNS answers the primary, the primary's database is a writer and the standby's a replica."""
    p, s = primary.get("database") or {}, standby.get("database") or {}
    return bool((primary.get("dns") or {}).get("active") == "primary" and p.get("exists") and not p.get("is_replica")
                and s.get("exists") and s.get("is_replica"))


def decide_failback(run: RunInfo, request: Request, primary: Mapping[str, Any], standby: Mapping[str, Any], *,
                    ledger: Ledger, targets: TargetsConfig | None = None) -> dict[str, Any]:
    timer = Timer("decide")
    service = core.service_spec(request.service)
    key = core.ledger_key(run.runbook, request)
    by_task = items(service, targets)
    keys = core.item_keys(list(by_task.values()))
    entries = ledger.entries(key)
    done = {k for k, e in entries.items() if e.done}
    resume = bool(done & set(keys))
    holder = ledger.lease_holder(core.incident_lease_key(run.runbook, request))
    reasons: list[str] = []
    outcome = "fail_back"
    if keys and set(keys) <= done:
        outcome, reasons = "done_earlier", [f"{request.key}: every failback step was applied earlier"]
    elif holder and holder[0] != run.holder:
        outcome, reasons = "in_progress", [f"{request.key} is being failed back by {holder[0]}: this run changes nothing"]
    elif not resume and in_catalog_topology(primary, standby):
        outcome, reasons = "nothing_to_do", [f"{service.name} already runs on its primary as the catalog describes"]
    elif not resume:
        reasons = _refusals(service, primary, standby)
        outcome = "refused" if reasons else outcome
    first: list[Item] = [by_task["rebuild_replication"]]
    if outcome == "fail_back":
        first = engine.plan_items(first, resolver(options(service, request, run.runbook), targets),
                                  audit=run.audit(dry_run=request.dry_run, key=key))
        if engine.plan_errors(first):
            outcome = "refused"
            reasons += [f"cannot plan {i.step} on {i.record.name}: {i.plan_error}" for i in engine.plan_errors(first)]
    if outcome == "fail_back" and request.dry_run:
        outcome = "dry_run"
    retired = [retired_identifier(service.primary.database.identifier, key),
               retired_identifier(service.standby.database.identifier, key)]
    steps_text = [
        f"rebuild_replication: {service.primary.database.identifier} ({service.primary.database.region}) becomes a "
        f"read replica of {service.standby.database.identifier}; what holds that name now is renamed {retired[0]}",
        "wait_for_replica: until it is available and lags at most "
        f"{service.replication.max_lag_seconds:.0f}s (at most {service.replication.replica_timeout_seconds:.0f}s)",
        "approve, then fence_standby -> promote_primary -> switch_dns (to the primary) -> verify",
        f"restore_standby: {service.standby.database.identifier} becomes a read replica of the new primary "
        f"(the current one is renamed {retired[1]})",
    ]
    decision = {"outcome": outcome, "reasons": reasons, "notes": [], "resume": resume, "approval": None,
                "items": to_dicts(first),
                "plan": plan_lines(first, WORDING) + steps_text, "request": request.to_dict(), "ledger_key": key,
                "dns_to": "primary", "retired": retired, "timing": timer.done()}
    core._audit_decision(run, request, key, decision)
    return decision


def _refusals(service: Service, primary: Mapping[str, Any], standby: Mapping[str, Any]) -> list[str]:
    reasons = []
    if (primary.get("dns") or {}).get("active") != "standby":
        reasons.append(f"DNS does not answer the standby ({(primary.get('dns') or {}).get('answer')}): "
                       f"{service.name} is not failed over")
    s = standby.get("database") or {}
    if not s.get("exists") or s.get("is_replica"):
        reasons.append(f"the standby database {service.standby.database.identifier} is not a writer "
                       f"({standby.get('database_error') or ('a replica' if s.get('is_replica') else 'missing')})")
    if primary["health"] != "healthy":
        reasons.append(f"the primary side's endpoints are {primary['health']} ({primary['probe_summary']}): "
                       "fail back once they are healthy")
    if primary.get("dns_error"):
        reasons.append(f"the DNS record set could not be read: {primary['dns_error']}")
    return reasons


def apply_task(run: RunInfo, decision: Mapping[str, Any], task: str, approver: str | None, *, ledger: Ledger,
               targets: TargetsConfig | None = None) -> dict[str, Any]:
    """Plan and apply one failback step now (its plan depends on the steps before it)."""
    timer = Timer(task)
    request = Request.from_dict(decision["request"])
    service = core.service_spec(request.service)
    other = core.take_run_leases(run, request, ledger=ledger)
    if other:
        return {"step": task, "duplicate_of": other, "timing": timer.done()}
    key = decision["ledger_key"]
    item = items(service, targets)[task]
    if item.step == FenceDatabase.id and not _fence_planned(service, targets):
        return {"step": task, "skipped": f"fence: off (policy.fence {service.policy.fence}, standby.fence "
                                         f"{service.standby.fence.security_group})", "timing": timer.done()}
    resolve = resolver(options(service, request, run.runbook), targets)
    audit = run.audit(dry_run=False, key=key, approver=approver)
    planned = engine.plan_items([item], resolve, audit=audit)
    (done,) = engine.apply_items(planned, resolve, rate=RateControl.stop_on_first_error(), ledger=ledger,
                                 ledger_key=key, holder=run.holder, audit=audit)
    out = {"step": task, "item": done.to_dict(), "outcome": done.outcome, "timing": timer.done()}
    if done.plan_error or done.outcome in ("failed", "not_attempted"):
        raise ChangeError(f"{task} on {done.record.name}: {done.plan_error or done.apply_error or done.note}")
    return out


def _fence_planned(service: Service, targets: TargetsConfig | None) -> bool:
    if service.policy.fence == "none":
        return False
    cloud = (targets or load_targets()).get(service.standby.database.target).cloud
    return cloud != "aws" or bool(service.standby.fence.security_group)


def wait_caught_up(run: RunInfo, request: Request, side: str, *, targets: TargetsConfig | None = None,
                   sleep: Any = None) -> dict[str, Any]:
    """Wait (bounded) until ``side``'s database is an available replica with a known lag within the limit."""
    from include.capabilities.database_failover import database_failover

    timer = Timer(f"wait_for_{side}_replica")
    service = core.service_spec(request.service)
    config = targets or load_targets()
    ref = database_ref(service.side(side).database, config)
    cap = database_failover(config.get(ref.target))

    def problems() -> list[str]:
        status = cap.status(ref)
        if not (status.exists and status.is_replica and status.available):
            return [f"{ref.identifier}: exists={status.exists} replica={status.is_replica} state={status.state}"]
        return core.lag_problems(service, status)

    kwargs: dict[str, Any] = {"sleep": sleep} if sleep else {}
    try:
        poll_until(problems, lambda p: not p, timeout=service.replication.replica_timeout_seconds,
                   interval=service.replication.poll_interval_seconds,
                   what=f"replica {ref.identifier} to be available and caught up", **kwargs)
    except WaitTimeout as exc:
        raise ChangeError(str(exc)) from None
    status = cap.status(ref)
    return {"replica": ref.identifier, "lag_seconds": status.lag_seconds, "timing": timer.done()}


def remaining_plan(run: RunInfo, decision: Mapping[str, Any], *, targets: TargetsConfig | None = None
                   ) -> dict[str, Any]:
    """Plan the steps after the approval now that the new replica exists (reads only): the approval request."""
    request = Request.from_dict(decision["request"])
    service = core.service_spec(request.service)
    by_task = items(service, targets)
    chosen = [by_task[t] for t, _, _ in STEP_ORDER[1:] if t != "fence_standby" or _fence_planned(service, targets)]
    resolve = resolver(options(service, request, run.runbook), targets)
    planned = engine.plan_items(chosen, resolve)
    subject, body = approval_text(planned, WORDING, reason=request.reason, run_id=run.run_id,
                                  permissions=engine.permissions(planned, resolve))
    subject = f"Fail {service.name} back to its primary ({request.key})? " + subject
    approval = "policy" if service.policy.failback_auto_approve else "human"
    return {"plan": plan_lines(planned, WORDING), "subject": subject, "body": body, "approval": approval,
            "policy_approver": f"policy: failback_auto_approve ({service.name})" if approval == "policy" else None,
            "items": to_dicts(planned), "permissions": engine.permissions(planned, resolve)}


def permissions(cloud: str) -> list[str]:
    """Every permission the failback's steps declare for ``cloud`` (for a least-privilege policy)."""
    from include.failover.steps import step_class

    return sorted({p for step in STEPS for p in step_class(step, cloud).permissions})


def failback_result(run: RunInfo, request: Request, *, primary: Mapping[str, Any] | None,
                    standby: Mapping[str, Any] | None, decision: Mapping[str, Any] | None,
                    wait: Mapping[str, Any] | None, approval: Mapping[str, Any] | None,
                    steps: Sequence[Mapping[str, Any] | None], verify: Mapping[str, Any] | None,
                    resolved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    outcome = (decision or {}).get("outcome")
    ran = [s for s in steps if s]
    duplicate = next((s["duplicate_of"] for s in ran if s.get("duplicate_of")), None)
    restored = any(s.get("step") == "restore_standby" and not s.get("duplicate_of") for s in ran)
    if outcome in REPORT_OUTCOMES:
        status = str(outcome)
    elif duplicate:
        status = "duplicate"
    elif approval is not None and not approval.get("approved"):
        status = "rejected"
    elif verify and verify.get("verified") and restored:
        status = "failed_back"
    else:
        status = "failed"
    steps_done = core.timeline(resolved, primary, standby, decision, wait, *ran, verify)
    return {
        "status": status, "reasons": list((decision or {}).get("reasons") or []), "duplicate_of": duplicate,
        "approval": (approval or {}).get("path"), "approver": (approval or {}).get("responded_by"),
        "error": None if status != "failed" else (verify or {}).get("error") or "a step did not finish (a rerun "
                                                                                 "with the same incident id resumes)",
        "assessment": {"primary": primary, "standby": standby}, "plan": (decision or {}).get("plan"),
        "retired": (decision or {}).get("retired"), "wait_for_replica": wait,
        "steps": {s["step"]: {k: v for k, v in s.items() if k != "timing"} for s in ran},
        "verification": verify, "timeline": steps_done,
        "rto": core.rto(request, run, steps_done, verify, approval) if status == "failed_back" else None,
    }


def chosen_items(decision: Mapping[str, Any]) -> list[Item]:
    return from_dicts(decision.get("items") or [])
