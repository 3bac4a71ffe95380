"""The Airflow side of a change runbook: what its tasks call, with every input passed in as data.

A change runbook's DAG has the same shape whatever it changes::

    resolve -> plan -> choose path -> report_plan               (dry run, or nothing to change)
                                   -> approve -> apply -> verify -> report

The DAG file names its tasks and moves data between them (return values, and an ``xcom_pull`` of its own
approval task); the functions here never look a task up by id. A change set travels between tasks as
:class:`ChangeSet` (plain JSON in XCom).

By default every change set with a change waits for a human. A runbook may give an approval rule
(:attr:`ChangeRunbook.approval`, e.g. :func:`~include.changes.engine.destructive_changes`): a change set the
rule does not flag is applied without asking, on a third path ``choose path -> apply -> verify -> report``
(the DAG gives its apply task the trigger rule ``none_failed_min_one_success`` so that a skipped approval
task does not skip it). The plan records the rule's answer in the change set; apply evaluates the rule
again and refuses without an *Approve* whenever it asks for one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from include.audit import AuditContext, actor_from_context, write_audit
from include.changes import engine
from include.changes.engine import (
    ApprovalRule,
    Item,
    Resolver,
    changes,
    from_dicts,
    needs_approval,
    plan_errors,
    to_dicts,
)
from include.changes.ledger import LEDGER_CONN_ID, Ledger
from include.changes.model import RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording, approval_text, plan_lines, summarise, write_result

#: XCom keys the plan task pushes for the approval operator's templated subject and body.
APPROVAL_SUBJECT_KEY = "approval_subject"
APPROVAL_BODY_KEY = "approval_body"


@dataclass(frozen=True)
class ChangeSet:
    """A runbook's validated request and its items, as they move from task to task."""

    request: dict[str, Any]
    items: tuple[Item, ...]
    dry_run: bool = True
    reason: str = ""
    approver: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # runbook data to keep with the change set (and the result)
    #: The runbook's approval rule's answer at plan time (None: no rule, every change set with a change asks).
    approval_required: bool | None = None

    def with_items(self, items: list[Item] | tuple[Item, ...]) -> ChangeSet:
        return replace(self, items=tuple(items))

    def to_dict(self) -> dict[str, Any]:
        return {"request": dict(self.request), "items": to_dicts(self.items), "dry_run": self.dry_run,
                "reason": self.reason, "approver": self.approver, "extra": dict(self.extra),
                "approval_required": self.approval_required}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeSet:
        return cls(request=dict(data["request"]), items=tuple(from_dicts(data["items"])),
                   dry_run=bool(data.get("dry_run", True)), reason=str(data.get("reason") or ""),
                   approver=data.get("approver"), extra=dict(data.get("extra") or {}),
                   approval_required=data.get("approval_required"))

    @property
    def applies(self) -> bool:
        """The run takes the apply path: not a dry run, and something to change."""
        return not self.dry_run and bool(changes(self.items))

    @property
    def needs_approval(self) -> bool:
        """The apply path waits for a human (always, unless the runbook's rule said otherwise at plan time)."""
        return needs_approval(self.items, dry_run=self.dry_run) and self.approval_required is not False


# ---- who, what, under which key ------------------------------------------------------------------------
def _dag_id(context: Mapping[str, Any]) -> str:
    dag_run = context.get("dag_run")
    return str(getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", None) or "")


def idempotency_key(context: Mapping[str, Any]) -> str:
    """The run's idempotency key: the ``idempotency_key`` parameter when given, else the run id.

    A caller that retries a trigger sends the same key (or the same deterministic run id); an incident
    webhook uses the incident's id.
    """
    params = context.get("params") or {}
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    key = params.get("idempotency_key") or conf.get("idempotency_key")
    return str(key or context.get("run_id") or getattr(context.get("dag_run"), "run_id", ""))


def ledger_key(context: Mapping[str, Any]) -> str:
    """The ledger key of this run's change set: ``<runbook>:<idempotency key>``."""
    return f"{_dag_id(context)}:{idempotency_key(context)}"


def holder(context: Mapping[str, Any]) -> str:
    """Who holds the ledger lease: this DAG run (a retry of the same run takes its own lease back)."""
    return f"{_dag_id(context)}/{context.get('run_id')}"


def audit_context(context: Mapping[str, Any], *, dry_run: bool, approver: str | None = None) -> AuditContext:
    """The audit fields shared by every record of this run, from the Airflow task context."""
    return AuditContext(
        runbook=_dag_id(context),
        run_id=str(context.get("run_id") or ""),
        actor=actor_from_context(context),
        dry_run=dry_run,
        params=dict(context.get("params") or {}),
        idempotency_key=idempotency_key(context),
        approver=approver,
    )


def approval_of(decision: Mapping[str, Any] | None, *, require_approved: bool = False) -> str | None:
    """Who answered the approval (None: nobody, e.g. the timeout default); optionally insist on Approve.

    ``decision`` is what :class:`include.approval.RecordedApprovalOperator` records.
    """
    if not decision:
        if require_approved:
            raise RequestError("no approval recorded for this run: refusing to apply")
        return None
    chosen = list(decision.get("chosen_options") or [])
    if require_approved and chosen != ["Approve"]:
        raise RequestError(f"the plan was not approved (answer: {chosen or 'none'}): refusing to apply")
    who = decision.get("responded_by")
    return str(who) if who else None


# ---- the two report tasks ------------------------------------------------------------------------------
def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def report_plan(context: Mapping[str, Any], wording: Wording, planned: ChangeSet) -> dict[str, Any]:
    """The end of the dry-run / nothing-to-change path: write the plan as the result; fail on a plan error.

    A dry run reports items that only lack a parameter (``needs input``) without failing; any other plan
    error (resource not found, a bad id, a wrong type, access denied) fails the run, dry run or not.
    """
    items = list(planned.items)
    failed = plan_errors(items, include_needs_input=not planned.dry_run)
    status = "plan_failed" if failed else "dry_run" if planned.dry_run else wording.nothing_status
    result = summarise(items, wording, status=status, run_id=str(context["run_id"]), dry_run=planned.dry_run,
                       request=planned.request, reason=planned.reason, runbook=_dag_id(context), extra=planned.extra)
    path = write_result(result, wording)
    print(f"{status}: {len(changes(items))} change(s) planned, nothing changed; result: {path}")
    if failed:
        raise _fail(f"{len(failed)} resource(s) could not be planned (result: {path}):\n"
                    + "\n".join(f"{i.resource_id} ({i.step}): {i.plan_error}" for i in failed))
    return {"status": status, "path": str(path), "totals": result["totals"]}


def final_report(
    context: Mapping[str, Any],
    wording: Wording,
    *,
    planned: ChangeSet | None,
    decision: Mapping[str, Any] | None,
    applied: ChangeSet | None,
    verified: ChangeSet | None,
) -> dict[str, Any]:
    """The end of the apply path: write result.json and fail on any failure. A rejection ends green.

    Runs whatever happened upstream (trigger rule ``all_done``): skips itself when the run took the
    dry-run path; records a rejection (or the timeout's default Reject) without failing; fails when apply
    or verify did not finish, or any change failed, was not attempted, or is not as wanted afterwards.
    A change set the runbook's approval rule let through without asking has no decision and no approver.
    """
    from airflow.sdk.exceptions import AirflowSkipException

    run_id = str(context["run_id"])
    if planned is None:
        raise _fail("the plan task left no plan")
    if not planned.applies:
        raise AirflowSkipException("dry run or nothing to change: the plan report wrote the result")
    if planned.needs_approval and not decision:
        raise _fail("the approval task did not complete (failed, or timed out without a default)")
    approver = approval_of(decision)
    audit = audit_context(context, dry_run=planned.dry_run, approver=approver)
    common: dict[str, Any] = {"run_id": run_id, "dry_run": planned.dry_run, "request": planned.request,
                              "reason": planned.reason, "approver": approver, "runbook": _dag_id(context)}
    if planned.needs_approval and decision and list(decision.get("chosen_options") or []) != ["Approve"]:
        items = list(planned.items)
        who = "nobody: no answer before the timeout (default Reject)" if decision.get("timed_out") else approver
        result = summarise(items, wording, status="rejected", extra={**planned.extra, "decision": dict(decision)},
                           **common)
        path = write_result(result, wording)
        write_audit(audit.record(step="approve", action=f"rejected by {who}", outcome="skipped",
                                 after={**decision, "planned_changes": len(changes(items))}))
        print(f"rejected by {who}: nothing was changed; result: {path}")
        return {"status": "rejected", "path": str(path), "approver": approver}
    if verified is None:
        if applied is not None:
            write_result(summarise(list(applied.items), wording, status="failed", extra=planned.extra, **common),
                         wording)
        step = "verify" if applied is not None else "apply"
        raise _fail(f"{step} did not finish: see its log (changes made so far are in the audit trail and the "
                    "ledger); re-running the same request resumes and never repeats a completed change")
    items = list(verified.items)
    bad = [i for i in items if i.failed or i.verified is False or i.outcome == "not_attempted"]
    result = summarise(items, wording, status="failed" if bad else wording.done_status, extra=planned.extra, **common)
    path = write_result(result, wording)
    totals = result["totals"]
    approval = f"approved by {approver}" if planned.needs_approval else "no approval needed (the runbook's rule)"
    print(f"{totals['changed']} changed, {totals['done_earlier']} done earlier, {totals['verified']}/"
          f"{totals['resources']} verified, {totals['failed']} failed, {totals['not_attempted']} not attempted; "
          f"{approval}; result: {path}")
    if bad:
        lines = []
        for i in bad:
            if i.plan_error:
                lines.append(f"{i.resource_id} ({i.step}): plan failed: {i.plan_error}")
            elif i.apply_error:
                lines.append(f"{i.resource_id} ({i.step}): apply failed: {i.apply_error}")
            elif i.outcome == "not_attempted":
                lines.append(f"{i.resource_id} ({i.step}): not attempted: {i.note}")
            else:
                lines.append(f"{i.resource_id} ({i.step}): not as wanted after the change: {i.verify_error}")
        raise _fail(f"{len(bad)} resource(s) failed, not attempted or not as wanted (result: {path}):\n"
                    + "\n".join(lines))
    return {"status": wording.done_status, "path": str(path), "totals": totals}


# ---- the checks every change request shares --------------------------------------------------------------
def request_problems(*, dry_run: bool, reason: str, max_concurrency: Any, max_errors: Any,
                     reason_needed: bool = True) -> list[str]:
    """What is wrong with the parts every change runbook's request has: a reason to apply (it goes to the
    audit trail) and the rate control (SSM's ``max_concurrency`` / ``max_errors``). Empty when all is well."""
    problems = []
    if reason_needed and not dry_run and not reason.strip():
        problems.append("reason is required when dry_run is false (it goes to the audit trail)")
    try:
        RateControl(max_concurrency, max_errors)
    except RequestError as exc:
        problems.append(str(exc))
    return problems


# ---- a change runbook: the task bodies, given what is specific to the runbook ----------------------------
def _default_rate(request: Mapping[str, Any]) -> RateControl:
    return RateControl()


@dataclass(frozen=True)
class ChangeRunbook:
    """What makes one change runbook itself: its wording, its steps and its rate control.

    Each method is the whole body of one task of the runbook's DAG; the DAG passes every input in
    (return values of earlier tasks, the approval decision it pulls from its own approval task).
    """

    wording: Wording
    #: The step resolver for a request (``request`` is :attr:`ChangeSet.request`).
    resolver: Callable[[Mapping[str, Any]], Resolver]
    #: Rate control for a request (default: one at a time, never stop early).
    rate: Callable[[Mapping[str, Any]], RateControl] = _default_rate
    ledger_conn_id: str = LEDGER_CONN_ID
    #: Which change sets need a human before apply (None: every one with a change). E.g.
    #: :func:`~include.changes.engine.destructive_changes`: only overwrites / deletes wait for approval.
    approval: ApprovalRule | None = None

    def needs_approval(self, change_set: ChangeSet) -> bool:
        """Whether ``change_set`` must be approved before it is applied, by this runbook's rule."""
        return needs_approval(change_set.items, dry_run=change_set.dry_run, rule=self.approval)

    def plan(self, context: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
        """Plan every item (reads only), log the plan, push the approval subject / body; return the change set."""
        change_set = ChangeSet.from_dict(resolved)
        resolve = self.resolver(change_set.request)
        items = engine.plan_items(change_set.items, resolve, audit=audit_context(context, dry_run=change_set.dry_run))
        for line in plan_lines(items, self.wording):
            print(line)
        subject, body = approval_text(items, self.wording, reason=change_set.reason, run_id=str(context["run_id"]),
                                      permissions=engine.permissions(items, resolve))
        context["ti"].xcom_push(key=APPROVAL_SUBJECT_KEY, value=subject)
        context["ti"].xcom_push(key=APPROVAL_BODY_KEY, value=body)
        planned = change_set.with_items(items)
        if self.approval is not None:
            planned = replace(planned, approval_required=bool(self.approval(items)))
        return planned.to_dict()

    def report_plan(self, context: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, Any]:
        return report_plan(context, self.wording, ChangeSet.from_dict(planned))

    def apply(self, context: Mapping[str, Any], planned: Mapping[str, Any],
              decision: Mapping[str, Any] | None) -> dict[str, Any]:
        """Apply the change set under rate control and the ledger; refuse without an Approve when one is needed."""
        change_set = ChangeSet.from_dict(planned)
        if change_set.dry_run:
            raise _fail("a dry run never applies anything")
        try:  # defence in depth: the approval task skips apply on Reject; never apply without Approve
            # The rule is evaluated again here: a change set does not waive its own approval.
            approver = approval_of(decision, require_approved=self.needs_approval(change_set))
        except RequestError as exc:
            raise _fail(str(exc)) from None
        items = engine.apply_items(
            change_set.items, self.resolver(change_set.request), rate=self.rate(change_set.request),
            ledger=Ledger.from_connection(self.ledger_conn_id), ledger_key=ledger_key(context), holder=holder(context),
            audit=audit_context(context, dry_run=False, approver=approver),
        )
        for item in items:
            detail = item.apply_error or item.note
            print(f"{item.outcome}: {item.step} {item.resource_id}" + (f": {detail}" if detail else ""))
        return replace(change_set, items=tuple(items), approver=approver).to_dict()

    def verify(self, context: Mapping[str, Any], applied: Mapping[str, Any]) -> dict[str, Any]:
        """Re-read every applied item until it is as wanted (bounded wait per step)."""
        change_set = ChangeSet.from_dict(applied)
        items = engine.verify_items(change_set.items, self.resolver(change_set.request),
                                    audit=audit_context(context, dry_run=False, approver=change_set.approver))
        return change_set.with_items(items).to_dict()

    def report(self, context: Mapping[str, Any], *, planned: Mapping[str, Any] | None,
               decision: Mapping[str, Any] | None, applied: Mapping[str, Any] | None,
               verified: Mapping[str, Any] | None) -> dict[str, Any]:
        def load(data: Mapping[str, Any] | None) -> ChangeSet | None:
            return ChangeSet.from_dict(data) if data else None

        return final_report(context, self.wording, planned=load(planned), decision=decision, applied=load(applied),
                            verified=load(verified))
