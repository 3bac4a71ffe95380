"""The Airflow task bodies of ``failover_service`` (one function per task; the DAG passes every input in).

What is Airflow's here and nowhere else: turning a bad request into ``AirflowFailException`` (not retried),
a duplicate run into ``AirflowSkipException``, and pushing the XComs the approval operator templates read
(``approval_subject`` / ``approval_body``) and the final task reads (``decision``, ``duplicate``,
``checks``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from include.changes.model import RequestError
from include.failover import core
from include.failover.core import Request, RunInfo

#: XCom keys this module pushes.
DECISION_KEY = "decision"
DUPLICATE_KEY = "duplicate"
CHECKS_KEY = "checks"
SUBJECT_KEY = "approval_subject"
BODY_KEY = "approval_body"


def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _skip(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowSkipException

    return AirflowSkipException(message)


def check_conf(context: Mapping[str, Any]) -> None:
    """Refuse run-conf keys the runbook does not declare (a typo like ``sevrity``), naming the allowed ones.

    Like :func:`include.params.check_conf`, but reads only the declared names: required parameters here have
    no default, and resolving them without a value raises.
    """
    from include.params import unknown_conf_keys

    dag = context.get("dag")
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    declared = list((getattr(dag, "params", None) or {}).keys())
    unknown = unknown_conf_keys(conf, dict.fromkeys(declared))
    if unknown:
        raise _fail(f"unknown parameter(s) {', '.join(repr(k) for k in unknown)} for "
                    f"{getattr(dag, 'dag_id', 'this runbook')}; allowed: {', '.join(sorted(declared))}")


def resolve(context: Mapping[str, Any], *, key_param: str = "incident_id") -> dict[str, Any]:
    """Refuse unknown parameters and a bad request (no retry: it does not improve); nothing is called."""
    timer = core.Timer("resolve_request")
    check_conf(context)
    try:
        request = Request.from_params(context.get("params") or {}, key_param=key_param)
    except RequestError as exc:
        raise _fail(str(exc)) from None
    run = RunInfo.from_context(context)
    print(f"{run.runbook} {request.service} ({key_param} {request.key}, dry_run={request.dry_run}, "
          f"severity={request.severity}, force={request.force}) by {run.actor}")
    return {"run": run.to_dict(), "request": request.to_dict(), "timing": timer.done()}


def assess(resolved: Mapping[str, Any], side: str) -> dict[str, Any]:
    """Probe the side's endpoints and read its database (and, for the primary, the DNS record set)."""
    request = Request.from_dict(resolved["request"])
    core.warm_up(request.service)
    out = core.assess_side(core.service_spec(request.service), side, with_dns=side == "primary")
    db = out.get("database") or {}
    print(f"{side}: endpoints {out['health']} ({out['probe_summary']}); database "
          f"{db.get('identifier') or '?'}: exists={db.get('exists')} state={db.get('state')} "
          f"replica={db.get('is_replica')} lag={db.get('lag_seconds')} {out.get('database_error') or ''}")
    if side == "primary":
        print(f"dns: {out.get('dns') or out.get('dns_error')}")
    return out


def decide(context: Mapping[str, Any], resolved: Mapping[str, Any], primary: Mapping[str, Any],
           standby: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse or plan; push the decision and the approval request's subject and body."""
    run = RunInfo.from_context(context)
    request = Request.from_dict(resolved["request"])
    # No warm_up: the plan takes the assessments' reads (a cloud client only when they are stale or missing).
    decision = core.decide_failover(run, request, primary, standby, ledger=core.get_ledger())
    for line in decision["plan"]:
        print(line)
    for line in decision["reasons"] + decision["notes"]:
        print(f"{decision['outcome']}: {line}")
    ti = context["ti"]
    ti.xcom_push(key=DECISION_KEY, value=decision)
    ti.xcom_push(key=SUBJECT_KEY, value=decision["subject"])
    ti.xcom_push(key=BODY_KEY, value=decision["body"])
    return decision


def approve_by_policy(context: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
    """The policy approved (this severity is auto-approved, or a resumed run approved earlier): record it."""
    timer = core.Timer("approve_by_policy")  # on the RTO's path: counted with our steps
    run = RunInfo.from_context(context)
    request = Request.from_dict(decision["request"])
    approver = str(decision.get("policy_approver") or "policy")
    recorded = core.record_approval(run, request, decision, approver, ledger=core.get_ledger())
    return {**recorded, "timing": timer.done()}


def record_human_approval(context: Mapping[str, Any], decision: Mapping[str, Any],
                          answer: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The HITL answer, recorded in the ledger and the audit trail when it is an Approve."""
    if not answer or not answer.get("approved"):
        return dict(answer) if answer else None
    run = RunInfo.from_context(context)
    request = Request.from_dict(decision["request"])
    recorded = core.record_approval(run, request, decision, str(answer.get("responded_by") or "unknown"),
                                    ledger=core.get_ledger())
    return {**dict(answer), **recorded, "responded_at": answer.get("responded_at") or recorded["responded_at"]}


def approval_from(policy: Mapping[str, Any] | None, human: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The approval this run applies under (policy or a person's Approve); refuse anything else."""
    chosen = policy or human
    if not chosen or not chosen.get("approved"):
        raise _fail("no approval recorded for this run: refusing to change anything")
    return chosen


def apply(context: Mapping[str, Any], decision: Mapping[str, Any], step_id: str, approval: Mapping[str, Any],
          *, task: str) -> dict[str, Any]:
    """Apply one step of the approved plan; a duplicate run skips (and says of which run)."""
    run = RunInfo.from_context(context)
    core.warm_up(decision["request"]["service"])
    out = core.apply_step(run, decision, step_id, str(approval.get("responded_by") or "policy"),
                          ledger=core.get_ledger(), task=task)
    if out.get("duplicate_of"):
        context["ti"].xcom_push(key=DUPLICATE_KEY, value=out)
        raise _skip(f"incident {decision['request']['key']} is handled by {out['duplicate_of']}: this run changes "
                    "nothing")
    item = out.get("item") or {}
    print(f"{task}: {out.get('outcome') or 'skipped'} {out.get('skipped') or ''} "
          f"{(item.get('applied') or {}).get('after') or ''} in {out['timing']['seconds']}s")
    return out


def verify(context: Mapping[str, Any], decision: Mapping[str, Any], side: str) -> dict[str, Any]:
    """DNS answers ``side``, its database accepts writes, its probes pass (bounded wait); fail otherwise."""
    run = RunInfo.from_context(context)
    request = Request.from_dict(decision["request"])
    core.warm_up(request.service)
    out = core.verify_side(run, request, side)
    context["ti"].xcom_push(key=CHECKS_KEY, value=out)
    for name, check in out["checks"].items():
        print(f"verify {name}: {'ok' if check['ok'] else 'NOT OK'} {check}")
    if not out["verified"]:
        raise _fail(f"{request.service} is not running on its {side}: {out['error']}")
    return out


def report_decision(context: Mapping[str, Any], resolved: Mapping[str, Any], primary: Mapping[str, Any] | None,
                    standby: Mapping[str, Any] | None, decision: Mapping[str, Any]) -> dict[str, Any]:
    """The end of a run that changes nothing (dry run, refused, done earlier, in progress, already done)."""
    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    result = core.failover_result(run, request, primary=primary, standby=standby, decision=decision, approval=None,
                                  steps=[], verify=None, resolved=resolved)
    return _end(run, request, result)


def record_and_notify(context: Mapping[str, Any], resolved: Mapping[str, Any] | None,
                      primary: Mapping[str, Any] | None, standby: Mapping[str, Any] | None,
                      decision: Mapping[str, Any] | None, approval: Mapping[str, Any] | None,
                      steps: list[Mapping[str, Any] | None], verify: Mapping[str, Any] | None) -> dict[str, Any]:
    """The end of the approval path: timeline, RTO, result, history, notification; fail unless verified,
    rejected or a duplicate."""
    from airflow.sdk.exceptions import AirflowSkipException

    if resolved is None:
        raise _fail("resolve_request left no request")
    if decision is None or decision.get("outcome") in core.REPORT_OUTCOMES:
        raise AirflowSkipException("no approval path in this run: report_decision wrote the result")
    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    if approval is not None and decision.get("approval") == "human":  # a person's answer: how long it took
        approval = {**dict(approval), "waiting_since": (decision.get("timing") or {}).get("finished_at")}
    result = core.failover_result(run, request, primary=primary, standby=standby, decision=decision,
                                  approval=approval, steps=steps, verify=verify, resolved=resolved)
    return _end(run, request, result)


def _end(run: RunInfo, request: Request, result: dict[str, Any]) -> dict[str, Any]:
    ledger = None if request.dry_run else core.get_ledger()
    result = core.finish(run, request, result, ledger=ledger)
    figures = result.get("rto") or {}
    print(f"{request.service}: {result['status']}; result {result['path']}")
    if figures.get("rto_seconds") is not None:
        print(f"RTO {figures['rto_seconds']:.2f}s from {figures['started_from']} to verified: our steps "
              f"{figures['our_steps_seconds']:.2f}s, approval wait {figures['approval_wait_seconds'] or 0:.2f}s, "
              f"scheduling {figures['scheduling_overhead_seconds']}")
    for step in result.get("timeline", []):
        print(f"  {step['started_at']} {step['step']:<20} {step['seconds']:>7.3f}s")
    for name in result.get("retired") or []:
        print(f"retired (renamed, kept for review): {name}")
    if result["status"] in ("refused", "failed"):
        why = "; ".join(result.get("reasons") or []) or result.get("error") or ""
        raise _fail(f"{request.service}: {result['status']}: {why} (result: {result['path']})")
    return {"status": result["status"], "path": result["path"], "rto": figures or None}


# ---- failback_service ------------------------------------------------------------------------------------
def decide_failback(context: Mapping[str, Any], resolved: Mapping[str, Any], primary: Mapping[str, Any],
                    standby: Mapping[str, Any]) -> dict[str, Any]:
    from include.failover import failback

    run = RunInfo.from_context(context)
    request = Request.from_dict(resolved["request"])
    decision = failback.decide_failback(run, request, primary, standby, ledger=core.get_ledger())
    for line in decision["plan"] + [f"{decision['outcome']}: {r}" for r in decision["reasons"]]:
        print(line)
    context["ti"].xcom_push(key=DECISION_KEY, value=decision)
    return decision


def failback_step(context: Mapping[str, Any], decision: Mapping[str, Any], task: str,
                  approval: Mapping[str, Any] | None) -> dict[str, Any]:
    """One failback step, planned and applied now; a duplicate run skips."""
    from include.failover import failback

    run = RunInfo.from_context(context)
    approver = str(approval.get("responded_by")) if approval else None
    core.warm_up(decision["request"]["service"])
    out = failback.apply_task(run, decision, task, approver, ledger=core.get_ledger())
    if out.get("duplicate_of"):
        context["ti"].xcom_push(key=DUPLICATE_KEY, value=out)
        raise _skip(f"{decision['request']['key']} is failed back by {out['duplicate_of']}: this run changes nothing")
    item = out.get("item") or {}
    print(f"{task}: {out.get('outcome') or 'skipped'} {out.get('skipped') or ''} "
          f"{(item.get('applied') or {}).get('after') or ''} in {out['timing']['seconds']}s")
    return out


def wait_for_replica(context: Mapping[str, Any], decision: Mapping[str, Any], side: str = "primary") -> dict[str, Any]:
    """Wait until the new replica is available and caught up; then plan the rest and push the approval request."""
    from include.failover import failback

    run = RunInfo.from_context(context)
    request = Request.from_dict(decision["request"])
    waited = failback.wait_caught_up(run, request, side)
    if side != "primary":
        return waited
    rest = failback.remaining_plan(run, decision)
    for line in rest["plan"]:
        print(line)
    ti = context["ti"]
    ti.xcom_push(key=SUBJECT_KEY, value=rest["subject"])
    ti.xcom_push(key=BODY_KEY, value=rest["body"])
    return {**waited, **rest}


def approve_failback_by_policy(context: Mapping[str, Any], decision: Mapping[str, Any],
                               waited: Mapping[str, Any]) -> dict[str, Any]:
    run = RunInfo.from_context(context)
    request = Request.from_dict(decision["request"])
    recorded = core.record_approval(run, request, decision, str(waited.get("policy_approver") or "policy"),
                                    ledger=core.get_ledger())
    return {**recorded, "path": "policy"}


def report_failback_decision(context: Mapping[str, Any], resolved: Mapping[str, Any],
                             primary: Mapping[str, Any] | None, standby: Mapping[str, Any] | None,
                             decision: Mapping[str, Any]) -> dict[str, Any]:
    from include.failover import failback

    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    result = failback.failback_result(run, request, primary=primary, standby=standby, decision=decision, wait=None,
                                      approval=None, steps=[], verify=None, resolved=resolved)
    return _end(run, request, result)


def record_failback(context: Mapping[str, Any], resolved: Mapping[str, Any] | None,
                    primary: Mapping[str, Any] | None, standby: Mapping[str, Any] | None,
                    decision: Mapping[str, Any] | None, wait: Mapping[str, Any] | None,
                    approval: Mapping[str, Any] | None, steps: list[Mapping[str, Any] | None],
                    verify: Mapping[str, Any] | None) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowSkipException

    from include.failover import failback

    if resolved is None:
        raise _fail("resolve_request left no request")
    if decision is None or decision.get("outcome") in failback.REPORT_OUTCOMES:
        raise AirflowSkipException("no approval path in this run: report_decision wrote the result")
    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    if approval is not None and approval.get("path") != "policy":
        approval = {**dict(approval), "path": "human",
                    "waiting_since": ((wait or {}).get("timing") or {}).get("finished_at")}
    result = failback.failback_result(run, request, primary=primary, standby=standby, decision=decision, wait=wait,
                                      approval=approval, steps=steps, verify=verify, resolved=resolved)
    return _end(run, request, result)


# ---- failover_drill ------------------------------------------------------------------------------------
def drill_resolve(context: Mapping[str, Any]) -> dict[str, Any]:
    from include.failover import drill
    from include.params import resolve_dry_run

    timer = core.Timer("resolve_request")
    check_conf(context)
    run = RunInfo.from_context(context)
    try:
        request = drill.drill_request(context.get("params") or {}, run.run_id, dry_run=resolve_dry_run(context))
    except RequestError as exc:
        raise _fail(str(exc)) from None
    print(f"failover drill of {request.service} (dry_run={request.dry_run}) by {run.actor}")
    return {"run": run.to_dict(), "request": request.to_dict(), "timing": timer.done()}


def drill_check_ready(context: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
    from include.failover import drill

    ready = drill.check_ready(RunInfo.from_dict(resolved["run"]), Request.from_dict(resolved["request"]))
    for reason in ready["reasons"]:
        print(f"not ready: {reason}")
    ti = context["ti"]
    ti.xcom_push(key="ready", value=ready)
    ti.xcom_push(key=SUBJECT_KEY, value=ready["subject"])
    ti.xcom_push(key=BODY_KEY, value=ready["body"])
    return ready


def drill_stage(resolved: Mapping[str, Any], stage: str, **inputs: Any) -> dict[str, Any]:
    """One stage of the drill: start_outage, fail_over, end_outage or fail_back."""
    from include.failover import drill

    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    approver = str((inputs.get("approval") or {}).get("responded_by") or "drill policy")
    if stage == "start_outage":
        out = drill.start_outage(run, request)
    elif stage == "fail_over":
        out = drill.fail_over(run, request, inputs["outage"], approver)
    elif stage == "end_outage":
        out = drill.end_outage(run, request)
    else:
        out = drill.fail_back(run, request, approver)
    print(f"{stage}: {out.get('status') or 'done'} in {out['timing']['seconds']}s")
    if stage == "fail_over" and out.get("rto"):
        print(f"RTO {out['rto']['rto_seconds']}s (outage -> verified standby)")
    return out


def drill_report(context: Mapping[str, Any], resolved: Mapping[str, Any] | None, **parts: Any) -> dict[str, Any]:
    from include.failover import drill

    if resolved is None:
        raise _fail("resolve_request left no request")
    run = RunInfo.from_dict(resolved["run"])
    request = Request.from_dict(resolved["request"])
    result = drill.report(run, request, **parts)
    figures = result.get("rto") or {}
    print(f"failover drill of {request.service}: {result['status']}; result {result['path']}")
    if figures.get("rto_seconds") is not None:
        print(f"RTO {figures['rto_seconds']:.2f}s (primary endpoint stopped -> standby verified), our steps "
              f"{figures['our_steps_seconds']:.2f}s; failback took {(result.get('failback') or {}).get('seconds')}s")
    if result["status"] in ("refused", "failed"):
        raise _fail(f"drill {result['status']}: {'; '.join(result['reasons']) or result.get('error')} "
                    f"(result: {result['path']})")
    return {"status": result["status"], "path": result["path"], "rto": figures or None}


# ---- XCom plumbing the DAG files share: they name the tasks and pass their own pull in -----------------------
#: ``pull(task_id, key)``: the DAG's XCom pull (the DAG file names its tasks; nothing here does).
Pull = Callable[..., Any]


def pulled(pull: Pull, *task_ids: str, key: str = "return_value") -> Any:
    """The first value the given tasks pushed under ``key`` (None: none did, e.g. they were skipped)."""
    for task_id in task_ids:
        value = pull(task_id, key)
        if value is not None:
            return value
    return None


def pulled_steps(pull: Pull, task_ids: tuple[str, ...]) -> list[Mapping[str, Any] | None]:
    """What each step task returned, then what each pushed as a duplicate (for the result)."""
    return [pull(t, "return_value") for t in task_ids] + [pull(t, DUPLICATE_KEY) for t in task_ids]


def run_approval(context: Mapping[str, Any], pull: Pull, decision: Mapping[str, Any], *, policy_task: str,
                 human_task: str, record: bool) -> Mapping[str, Any]:
    """The approval this run applies under: the policy task's, or a person's Approve (recorded in the ledger
    and the audit trail when ``record``, i.e. by the first mutating task); anything else fails the task."""
    human = pulled(pull, human_task, key="decision")
    if record:
        human = record_human_approval(context, decision, human)
    return approval_from(pulled(pull, policy_task), human)


def skip_unless(condition: bool, message: str) -> None:
    if not condition:
        raise _skip(message)


def pulled_approval(pull: Pull, policy_task: str, human_task: str) -> Mapping[str, Any] | None:
    """The policy task's approval, else the person's answer recorded by the approval operator (None: neither)."""
    policy: Mapping[str, Any] | None = pulled(pull, policy_task)
    if policy is not None:
        return policy
    human: Mapping[str, Any] | None = pulled(pull, human_task, key="decision")
    return human


def drill_branch(ready: Mapping[str, Any], *, not_ready: str, policy: str, human: str) -> str:
    if ready["outcome"] != "drill":
        return not_ready
    return policy if ready["approval"] == "policy" else human


def drill_started(ready: Mapping[str, Any] | None) -> bool:
    return bool(ready) and ready.get("outcome") == "drill"  # type: ignore[union-attr]


def drill_errors(pull: Pull, stages: tuple[str, ...]) -> dict[str, str]:
    """The stages that left no result although the outage started (failed, or skipped after a failure)."""
    if pulled(pull, stages[0]) is None:
        return {}
    return {stage: "did not finish (see its log)" for stage in stages if pulled(pull, stage) is None}
