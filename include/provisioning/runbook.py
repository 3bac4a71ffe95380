"""The provision_environment and teardown_environment runbooks: their request, and each task's body.

Both are change runbooks on the engine (:mod:`include.changes`)::

    validate_spec -> plan_changes -> choose_path -> report_plan                    dry run / nothing / refused
                                                -> approve_changes -> apply -> verify -> report
                                                -> no_approval_needed -> apply -> verify -> report

- **provision**: one item per spec resource (``provision.<resource type>`` steps), dependencies from
  references and ``depends_on``; a plan that changes a *production* environment waits for approval, a
  non-production one is applied without asking (both only when ``dry_run`` is false).
- **teardown**: the same items, planned as deletions of what carries this environment's ownership tags,
  dependencies reversed (what refers to a resource goes first); approval always; a protected resource
  (deletion protection, a retention lock, ``prevent_destroy``) refuses the whole teardown, naming it.

Any resource that cannot be planned (a conflict, a protected resource, an error) stops the run before
anything is changed: nothing is applied from a plan that is not whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from include.changes import engine
from include.changes.engine import Item, changes, plan_errors
from include.changes.ledger import LEDGER_CONN_ID, Ledger
from include.changes.model import RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording, approval_text
from include.changes.runbook import (
    APPROVAL_BODY_KEY,
    APPROVAL_SUBJECT_KEY,
    ChangeSet,
    approval_of,
    audit_context,
    final_report,
    holder,
    ledger_key,
    report_plan,
    request_problems,
)
from include.provisioning.base import Mode, Session, record_for, skipped_resources
from include.provisioning.kinds import get_kind
from include.provisioning.registry import RUNBOOK_CALLS, permissions_for
from include.provisioning.render import entry_lines, headline, plan_entries, write_plan
from include.provisioning.spec import Spec, SpecError, load_spec
from include.targets import TargetsConfig, load_targets

#: Resources read at once while planning and verifying (reads only).
READ_CONCURRENCY = 8

WORDINGS: dict[str, Wording] = {
    "provision": Wording(title="Provision an environment", results_dir="provisioning", noun="resource change",
                         nouns="resource changes", done_status="applied", nothing_status="no_changes",
                         in_state="as the spec says"),
    "teardown": Wording(title="Tear down an environment", results_dir="teardown", noun="deletion",
                        nouns="deletions", done_status="torn_down", nothing_status="nothing_to_delete",
                        in_state="absent, or not managed by this environment"),
}
DAG_IDS = {"provision": "provision_environment", "teardown": "teardown_environment"}


class ProvisioningError(RequestError):
    """A provisioning / teardown request cannot be honoured (unknown environment, bad spec, bad option)."""


@dataclass(frozen=True)
class Request:
    """What to provision or tear down, validated (built from the DAG params)."""

    environment: str
    dry_run: bool = True
    reason: str = ""
    max_concurrency: str = "5"
    max_errors: str = "0"

    def __post_init__(self) -> None:
        problems = []
        if not self.environment:
            problems.append("environment is required (a spec in config/environments/)")
        problems += request_problems(dry_run=self.dry_run, reason=self.reason,
                                    max_concurrency=self.max_concurrency, max_errors=self.max_errors)
        if problems:
            raise ProvisioningError("; ".join(problems))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        return cls(environment=str(params.get("environment") or "").strip(),
                   dry_run=params.get("dry_run") is not False,  # only an explicit false applies
                   reason=str(params.get("reason") or ""),
                   max_concurrency=str(params.get("max_concurrency") or "5"),
                   max_errors=str(params.get("max_errors") or "0"))

    @property
    def rate(self) -> RateControl:
        return RateControl(self.max_concurrency, self.max_errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- resolve: spec -> items --------------------------------------------------------------------------------
def build_items(spec: Spec, mode: Mode, targets: TargetsConfig) -> tuple[list[Item], dict[str, str], list[str]]:
    """(items, skipped address -> reason, order) for ``spec``: apply order for provisioning, reverse for teardown."""
    skipped = skipped_resources(spec, targets)
    order = spec.order()
    edges = {r.address: list(r.depends_on) for r in spec.resources}
    if mode == "teardown":
        order = list(reversed(order))
        edges = spec.dependents()  # what refers to a resource is deleted before it
    item_id = {}
    items = []
    for address in order:
        if address in skipped:
            continue
        res = spec.resource(address)
        record = record_for(spec, res, targets)
        item_id[address] = f"{get_kind(res.kind).step_id}|{record.target}|{record.resource_id}"
    for address in order:
        if address in skipped:
            continue
        res = spec.resource(address)
        items.append(Item(step=get_kind(res.kind).step_id, record=record_for(spec, res, targets),
                          labels={"address": address, "kind": res.kind, "environment": spec.environment},
                          depends_on=tuple(item_id[d] for d in edges[address] if d in item_id)))
    return items, skipped, order


def resolve(request: Request, mode: Mode, *, targets: TargetsConfig | None = None) -> ChangeSet:
    """Load and validate the spec, and turn it into the change set's items (nothing is read yet)."""
    config = targets or load_targets()
    spec = load_spec(request.environment, targets=config)
    items, skipped, order = build_items(spec, mode, config)
    extra = {"environment": spec.environment, "mode": mode, "production": spec.production, "skipped": skipped,
             "order": order}
    return ChangeSet(request={**request.to_dict(), "spec": spec.to_dict()}, items=tuple(items),
                     dry_run=request.dry_run, reason=request.reason, extra=extra)


def resolve_request(context: Mapping[str, Any], mode: Mode) -> dict[str, Any]:
    """The ``validate_spec`` task: refuse unknown parameters and bad specs (naming file, resource, field)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.params import check_conf

    check_conf(context)
    try:
        change_set = resolve(Request.from_params(context.get("params") or {}), mode)
    except (RequestError, SpecError) as exc:
        raise AirflowFailException(str(exc)) from None
    spec = Spec.from_dict(change_set.request["spec"])
    print(f"environment {spec.environment} ({spec.path}): {len(spec.resources)} resource(s), production: "
          f"{'yes' if spec.production else 'no'}, owner {spec.owner}, cost center {spec.cost_center}")
    for address, why in change_set.extra["skipped"].items():
        print(f"skipped {address}: {why}")
    return change_set.to_dict()


# ---- the runbook -------------------------------------------------------------------------------------------
def _spec(change_set: ChangeSet) -> Spec:
    return Spec.from_dict(change_set.request["spec"])


def needs_approval(change_set: ChangeSet) -> bool:
    """Teardown: always. Provisioning: when the environment is production. (Only when something changes.)"""
    return change_set.extra.get("mode") == "teardown" or bool(change_set.extra.get("production", True))


@dataclass(frozen=True)
class ProvisioningRunbook:
    """The task bodies of provision_environment (``mode="provision"``) and teardown_environment."""

    mode: Mode
    ledger_conn_id: str = LEDGER_CONN_ID

    @property
    def wording(self) -> Wording:
        return WORDINGS[self.mode]

    def session(self, change_set: ChangeSet, *, planning: bool = False) -> Session:
        return Session(_spec(change_set), self.mode, cache_absent=planning)

    def plan(self, context: Mapping[str, Any], resolved: Mapping[str, Any]) -> dict[str, Any]:
        """Read the live state of every resource and plan it; log and write the plan; push the approval text."""
        change_set = ChangeSet.from_dict(resolved)
        spec = _spec(change_set)
        session = self.session(change_set, planning=True)
        items = engine.plan_items(change_set.items, session.resolver(), max_workers=READ_CONCURRENCY,
                                  audit=audit_context(context, dry_run=change_set.dry_run))
        items = [replace(i, labels={**i.labels, "observed": session.observed.get(str(i.labels["address"]), {})})
                 for i in items]
        entries = plan_entries(items, spec, change_set.extra["skipped"], change_set.extra["order"])
        run_id = str(context["run_id"])
        facts = [f"environment `{spec.environment}` ({spec.path}), production: {'yes' if spec.production else 'no'}",
                 f"run `{run_id}`, {'dry run' if change_set.dry_run else 'apply'}",
                 f"owner `{spec.owner}`, cost center `{spec.cost_center}`"]
        paths = write_plan(entries, results_dir=self.wording.results_dir, run_id=run_id,
                           title=f"{self.wording.title}: {spec.environment}", facts=facts)
        print(headline(entries))
        for entry in entries:
            for line in entry_lines(entry):
                print(line)
        print(f"plan file: {paths['markdown']}")
        planned = replace(change_set.with_items(items), extra={**change_set.extra, "plan_files": paths,
                                                                 "plan_headline": headline(entries)})
        planned = replace(planned, approval_required=needs_approval(planned))
        perms = permissions_for({get_kind(str(i.labels["kind"])).alias for i in changes(items)},
                                RUNBOOK_CALLS[DAG_IDS[self.mode]])
        subject, body = approval_text(items, self.wording, reason=change_set.reason, run_id=run_id, permissions=perms)
        body = f"{headline(entries)} Plan file: `{paths['markdown']}`\n\n{body}"
        context["ti"].xcom_push(key=APPROVAL_SUBJECT_KEY, value=f"{spec.environment}: {subject}")
        context["ti"].xcom_push(key=APPROVAL_BODY_KEY, value=body)
        return planned.to_dict()

    @staticmethod
    def choose_path(planned: Mapping[str, Any]) -> str:
        """report_plan (dry run, nothing to change, or something could not be planned), else the approval gate."""
        change_set = ChangeSet.from_dict(planned)
        if plan_errors(change_set.items) or not change_set.applies:
            return "report_plan"
        return "approve_changes" if change_set.needs_approval else "no_approval_needed"

    def report_plan(self, context: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, Any]:
        """Write the plan as the result; fail (naming them) when resources are in conflict, protected or in error."""
        from airflow.sdk.exceptions import AirflowFailException

        change_set = ChangeSet.from_dict(planned)
        refused = plan_errors(change_set.items)
        try:
            return report_plan(context, self.wording, change_set)
        except AirflowFailException as exc:
            if refused and not change_set.dry_run:
                verb = "teardown" if self.mode == "teardown" else "provisioning"
                raise AirflowFailException(f"{verb} refused, nothing was changed: {exc}") from None
            raise

    def apply(self, context: Mapping[str, Any], planned: Mapping[str, Any],
              decision: Mapping[str, Any] | None) -> dict[str, Any]:
        """Apply in dependency order under rate control and the ledger; refuse without Approve when one is needed."""
        from airflow.sdk.exceptions import AirflowFailException

        change_set = ChangeSet.from_dict(planned)
        if change_set.dry_run or plan_errors(change_set.items):
            raise AirflowFailException("a dry run, or a plan with errors, is never applied")
        required = needs_approval(change_set)  # evaluated again: a change set never waives its own approval
        try:
            approver = approval_of(decision, require_approved=required)
        except RequestError as exc:
            raise AirflowFailException(str(exc)) from None
        request = change_set.request
        session = self.session(change_set)
        items = engine.apply_items(
            change_set.items, session.resolver(), rate=RateControl(request["max_concurrency"], request["max_errors"]),
            ledger=Ledger.from_connection(self.ledger_conn_id), ledger_key=ledger_key(context),
            holder=holder(context), audit=audit_context(context, dry_run=False, approver=approver),
        )
        for item in items:
            detail = item.apply_error or item.note
            print(f"{item.outcome}: {item.labels.get('address')}" + (f": {detail}" if detail else ""))
        return replace(change_set, items=tuple(items), approver=approver).to_dict()

    def verify(self, context: Mapping[str, Any], applied: Mapping[str, Any]) -> dict[str, Any]:
        """Re-read every resource until it is as the spec says (or gone, for a teardown), within a bound."""
        change_set = ChangeSet.from_dict(applied)
        # A change that failed is not waited for (it would only run out the bound): it is not as wanted.
        failed = {i.id for i in change_set.items if i.outcome == "failed"}
        checked = iter(engine.verify_items(
            [i for i in change_set.items if i.id not in failed], self.session(change_set).resolver(),
            max_workers=READ_CONCURRENCY, audit=audit_context(context, dry_run=False, approver=change_set.approver)))
        items = [replace(i, verified=False, verify_error="its change failed (see apply)") if i.id in failed
                 else next(checked) for i in change_set.items]
        return change_set.with_items(items).to_dict()

    def report(self, context: Mapping[str, Any], *, planned: Mapping[str, Any] | None,
               decision: Mapping[str, Any] | None, applied: Mapping[str, Any] | None,
               verified: Mapping[str, Any] | None) -> dict[str, Any]:
        """Write result.json (done / not done per resource); fail when anything failed or is not as wanted."""
        def load(data: Mapping[str, Any] | None) -> ChangeSet | None:
            return ChangeSet.from_dict(data) if data else None

        last = load(verified) or load(applied)
        if last is not None:
            done = [str(i.labels.get("address")) for i in last.items if i.outcome in ("changed", "done_earlier")]
            not_done = [f"{i.labels.get('address')}: {i.outcome}{': ' + (i.apply_error or i.note or '') if i.apply_error or i.note else ''}"
                        for i in last.items if i.outcome in ("failed", "not_attempted", "skipped")]
            print(f"done ({len(done)}): {', '.join(done) or '-'}")
            print(f"not done ({len(not_done)}): {'; '.join(not_done) or '-'}")
        base = load(planned)
        if base is not None and last is not None:
            base = replace(base, extra={**base.extra, "done": [str(i.labels.get("address")) for i in last.items
                                                                if i.outcome in ("changed", "done_earlier")],
                                        "not_done": [str(i.labels.get("address")) for i in last.items
                                                     if i.outcome in ("failed", "not_attempted", "skipped")]})
        return final_report(context, self.wording, planned=base, decision=decision, applied=load(applied),
                            verified=load(verified))


PROVISION = ProvisioningRunbook("provision")
TEARDOWN = ProvisioningRunbook("teardown")
