"""The failover drill: stop the primary's endpoint for real, fail over, bring it back, fail back, report the RTO.

The drill runs the same functions as ``failover_service`` and ``failback_service`` (assess, decide, the
change-engine steps under the ledger and the leases, verify), one stage per task, so its RTO is the time
from the outage to a verified standby with nothing in between but our own steps. ``bench/rto.py`` measures
the same through Airflow's REST API and ``failover_service``, scheduling included.

The catalog must allow drills for the service (``drill.allowed``; staging and the local estate, never a
production entry by accident) and says how the outage is caused and ended (``drill.outage`` /
``drill.restore``: HTTP calls, e.g. ``localdev/services.py``'s control server or a staging chaos endpoint).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from include.changes.model import ChangeError, RequestError
from include.changes.waiting import WaitTimeout, poll_until
from include.failover import core, failback, history
from include.failover.catalog import HttpAction, Service, load_catalog
from include.failover.core import Request, RunInfo, Timer
from include.failover.probes import describe, probe_side
from include.redaction import scrub

#: How long the primary may take to stop answering after the outage call, and to answer after the restore.
OUTAGE_WAIT = 60.0


def drill_request(params: Mapping[str, Any], run_id: str, *, dry_run: bool) -> Request:
    """The drill's request: a known service whose catalog entry allows drills."""
    name = str(params.get("service") or "").strip()
    catalog = load_catalog()
    if name not in catalog.names:
        raise RequestError(f"unknown service {name!r}; known services: {', '.join(catalog.names)}")
    if not catalog.get(name).drill.allowed:
        raise RequestError(f"service {name!r} does not allow drills (drill.allowed in config/services.yaml): a drill "
                           "stops its primary's endpoint for real")
    reason = str(params.get("reason") or "").strip() or "failover drill"
    return Request(service=name, key=f"drill-{run_id}"[:190], reason=reason, dry_run=dry_run)


def stage_request(request: Request, stage: str, started_at: str | None = None) -> Request:
    """The failover / failback part of a drill has its own ledger key (their steps touch the same resources)."""
    return Request(service=request.service, key=f"{request.key}.{stage}", reason=request.reason, dry_run=False,
                   incident_started_at=started_at)


def check_ready(run: RunInfo, request: Request) -> dict[str, Any]:
    """Both sides healthy, the topology as the catalog describes it, the standby promotable."""
    timer = Timer("check_ready")
    service = core.service_spec(request.service)
    primary = core.assess_side(service, "primary", with_dns=True)
    standby = core.assess_side(service, "standby")
    problems = []
    if primary["health"] != "healthy":
        problems.append(f"the primary's endpoints are {primary['health']} ({primary['probe_summary']}): a drill starts "
                        "from a healthy service")
    if not failback.in_catalog_topology(primary, standby):
        problems.append("the service is not in the catalog's topology (DNS on the primary, the standby a replica): "
                        "fail back first")
    problems += core.standby_problems(service, standby)
    approval = "policy" if service.drill.auto_approve else "human"
    outcome = "refused" if problems else "dry_run" if request.dry_run else "drill"
    return {"outcome": outcome, "reasons": problems, "approval": approval, "request": request.to_dict(),
            "assessment": {"primary": primary, "standby": standby}, "timing": timer.done(),
            "subject": f"Run a failover drill of {service.name}? Its primary endpoint will be stopped for real",
            "body": (f"**Failover drill of {service.name}** (run `{run.run_id}`)\n\n"
                     f"1. stop the primary endpoint: {_action_text(service.drill.outage)}\n"
                     "2. fail over: fence -> promote the standby's replica -> switch DNS -> verify\n"
                     f"3. restore the primary endpoint: {_action_text(service.drill.restore)}\n"
                     "4. fail back: rebuild replication -> wait -> fence -> promote -> switch DNS -> verify -> "
                     "restore the standby\n\nApprove to run it; Reject (or no answer) changes nothing.")}


def _action_text(action: HttpAction | None) -> str:
    return f"{action.method} {action.url}" if action else "(none)"


def call(action: HttpAction) -> int:
    request = urllib.request.Request(action.url, method=action.method, data=b"" if action.method != "GET" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (urllib.error.URLError, OSError) as exc:
        raise ChangeError(f"{action.method} {scrub(action.url)} failed: {exc}") from None
    if status != action.expected_status:
        raise ChangeError(f"{action.method} {scrub(action.url)} answered HTTP {status}, expected {action.expected_status}")
    return status


def _wait_health(service: Service, want: str, what: str) -> str:
    try:
        health, results = poll_until(lambda: probe_side(service.primary.probes, service.probe),
                                     lambda found: found[0] == want, timeout=OUTAGE_WAIT, interval=0.2, what=what)
    except WaitTimeout as exc:
        raise ChangeError(str(exc)) from None
    return describe(results)


def start_outage(run: RunInfo, request: Request) -> dict[str, Any]:
    """Stop the primary's endpoint for real and wait (bounded) until its probes fail."""
    timer = Timer("start_outage")
    service = core.service_spec(request.service)
    assert service.drill.outage is not None  # checked at load (drill.allowed needs it)
    at = history.now_iso()
    call(service.drill.outage)
    seen = _wait_health(service, "down", f"the primary of {service.name} to stop answering")
    return {"outage_started_at": at, "probes": seen, "timing": timer.done()}


def end_outage(run: RunInfo, request: Request) -> dict[str, Any]:
    timer = Timer("end_outage")
    service = core.service_spec(request.service)
    assert service.drill.restore is not None
    call(service.drill.restore)
    seen = _wait_health(service, "healthy", f"the primary of {service.name} to answer again")
    return {"probes": seen, "timing": timer.done()}


def fail_over(run: RunInfo, request: Request, outage: Mapping[str, Any], approver: str) -> dict[str, Any]:
    """The failover part, every step of failover_service in this one task (no scheduling in between)."""
    timer = Timer("fail_over")
    ledger = core.get_ledger()
    part = stage_request(request, "failover", outage.get("outage_started_at"))
    service = core.service_spec(request.service)
    primary = core.assess_side(service, "primary", with_dns=True)
    standby = core.assess_side(service, "standby")
    decision = core.decide_failover(run, part, primary, standby, ledger=ledger)
    if decision["outcome"] != "fail_over":
        raise ChangeError(f"the drill's failover was not planned ({decision['outcome']}): {'; '.join(decision['reasons'])}")
    core.record_approval(run, part, decision, approver, ledger=ledger)
    steps = []
    try:
        for step, task in (("failover.fence", "fence_primary"), ("failover.promote", "promote_standby"),
                           ("failover.switch_dns", "switch_dns")):
            steps.append(core.apply_step(run, decision, step, approver, ledger=ledger, task=task))
        verify = core.verify_side(run, part, "standby")
    finally:
        core.release_run_leases(run, part, ledger=ledger)
    result = core.failover_result(run, part, primary=primary, standby=standby, decision=decision,
                                  approval={"approved": True, "responded_by": approver}, steps=steps, verify=verify)
    if result["status"] != "failed_over":
        raise ChangeError(f"the drill's failover did not verify: {result.get('error')}")
    return {**_brief(result), "timing": timer.done()}


def fail_back(run: RunInfo, request: Request, approver: str) -> dict[str, Any]:
    """The failback part, every step of failback_service in this one task."""
    timer = Timer("fail_back")
    ledger = core.get_ledger()
    part = stage_request(request, "failback")
    service = core.service_spec(request.service)
    primary = core.assess_side(service, "primary", with_dns=True)
    standby = core.assess_side(service, "standby")
    decision = failback.decide_failback(run, part, primary, standby, ledger=ledger)
    if decision["outcome"] != "fail_back":
        raise ChangeError(f"the drill's failback was not planned ({decision['outcome']}): {'; '.join(decision['reasons'])}")
    core.record_approval(run, part, decision, approver, ledger=ledger)
    steps = []
    try:
        steps.append(failback.apply_task(run, decision, "rebuild_replication", approver, ledger=ledger))
        wait = failback.wait_caught_up(run, part, "primary")
        for task in ("fence_standby", "promote_primary", "switch_dns"):
            steps.append(failback.apply_task(run, decision, task, approver, ledger=ledger))
        verify = core.verify_side(run, part, "primary")
        if verify["verified"]:
            steps.append(failback.apply_task(run, decision, "restore_standby", approver, ledger=ledger))
            failback.wait_caught_up(run, part, "standby")
    finally:
        core.release_run_leases(run, part, ledger=ledger)
    result = failback.failback_result(run, part, primary=primary, standby=standby, decision=decision, wait=wait,
                                      approval={"approved": True, "responded_by": approver}, steps=steps, verify=verify)
    if result["status"] != "failed_back":
        raise ChangeError(f"the drill's failback did not finish: {result.get('error')}")
    return {**_brief(result), "retired": decision.get("retired"), "timing": timer.done()}


def _brief(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: result.get(k) for k in ("status", "rto", "timeline", "steps", "verification", "plan")}


def report(run: RunInfo, request: Request, *, ready: Mapping[str, Any] | None, approval: Mapping[str, Any] | None,
           outage: Mapping[str, Any] | None, failover: Mapping[str, Any] | None, restored: Mapping[str, Any] | None,
           failback_part: Mapping[str, Any] | None, errors: Mapping[str, str]) -> dict[str, Any]:
    """The drill's result: the RTO (outage -> verified standby), the failback's duration, every stage's time."""
    outcome = (ready or {}).get("outcome")
    if outcome in ("refused", "dry_run"):
        status = str(outcome)
    elif approval is not None and not approval.get("approved"):
        status = "rejected"
    elif failover and failback_part and restored:
        status = "passed"
    else:
        status = "failed"
    figures = dict((failover or {}).get("rto") or {})
    stages = core.timeline(ready, outage, failover, restored, failback_part)
    result = {
        "status": status, "reasons": list((ready or {}).get("reasons") or []), "approver": (approval or {}).get(
            "responded_by"), "error": "; ".join(f"{k}: {v}" for k, v in errors.items()) or None,
        "rto": figures or None, "failover": failover, "failback": {**dict(failback_part or {}), "seconds": (
            failback_part or {}).get("timing", {}).get("seconds")} if failback_part else None,
        "outage": outage, "restored": restored, "readiness": ready, "timeline": stages,
    }
    return core.finish(run, request, result, ledger=None)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
