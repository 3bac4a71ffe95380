"""Failover of one service, as plain functions: assess -> decide -> apply (fence, promote, switch DNS) ->
verify -> record. The Airflow tasks (:mod:`include.failover.tasks`) and the drill call these; every input is
passed in, every output is JSON-able (it travels in XCom).

Once per incident, never two at once:

- the change ledger is keyed ``<runbook>:<service>:<incident id>``: each applied step is recorded there, so a
  second run for the same incident applies nothing (``done_earlier``) and a rerun after a failure resumes
  with the steps not yet done (the approval given earlier is recorded there too);
- the first mutating step of a run takes two run-long leases (holder = the DAG run, renewed by each step,
  released by the final task, expiring after ``RUN_LEASE_TTL`` if the run dies): one on the incident (a
  second live run for it is a duplicate and applies nothing) and one on the service (a failover of another
  incident for the same service fails instead of running at the same time).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from include.audit import AuditContext, actor_from_context, write_audit
from include.capabilities.database_failover import DatabaseStatus
from include.changes import engine
from include.changes.engine import Item, from_dicts, to_dicts
from include.changes.ledger import LEDGER_CONN_ID, Ledger, LedgerBusy
from include.changes.model import ChangeError, RequestError, change_key
from include.changes.rate import RateControl
from include.changes.report import Wording, approval_text, plan_lines
from include.changes.waiting import WaitTimeout, poll_until
from include.clouds.errors import classify
from include.failover import history
from include.failover.catalog import (
    SEVERITIES,
    CatalogError,
    Service,
    Side,
    database_ref,
    load_catalog,
    record_set_ref,
)
from include.failover.probes import describe, probe_side
from include.failover.steps import (
    FenceDatabase,
    PromoteReplica,
    SwitchDns,
    db_record,
    dns_record,
    observed_options,
    resolver,
)
from include.redaction import error_text
from include.targets import TargetsConfig, load_targets

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,199}$")
#: Run-long leases (incident, service): renewed by each mutating step, so this only bounds how long the
#: lease of a run that died blocks the next one.
RUN_LEASE_TTL = 1800.0
WORDING = Wording(title="Fail over a service", results_dir=history.RESULTS_DIR, noun="failover step",
                  done_status="failed_over", nothing_status="already_failed_over", in_state="already done")
#: decide outcomes that end the run on the report path: (status, the run fails?)
REPORT_OUTCOMES = {"dry_run": False, "refused": True, "done_earlier": False, "in_progress": False,
                   "already_failed_over": False}


# ---- the run ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """Who runs what: the runbook, the run id, the actor, the parameters and the trigger time."""

    runbook: str
    run_id: str
    actor: str
    params: dict[str, Any] = field(default_factory=dict)
    triggered_at: str | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> RunInfo:
        dag_run = context.get("dag_run")
        dag_id = getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", "")
        after = history.parse_time(getattr(dag_run, "run_after", None) or getattr(dag_run, "start_date", None))
        return cls(runbook=str(dag_id), run_id=str(context.get("run_id") or getattr(dag_run, "run_id", "")),
                   actor=actor_from_context(context), params=dict(context.get("params") or {}),
                   triggered_at=after.isoformat() if after else None)

    @property
    def holder(self) -> str:
        return f"{self.runbook}/{self.run_id}"

    def audit(self, *, dry_run: bool, key: str, approver: str | None = None) -> AuditContext:
        return AuditContext(runbook=self.runbook, run_id=self.run_id, actor=self.actor, dry_run=dry_run,
                            params=self.params, idempotency_key=key, approver=approver)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


#: Seconds this process spent importing cloud SDKs since the last step started (see :func:`warm_up`).
_STARTUP: list[float] = []
#: What a step of each cloud imports before its first call (the provider hooks and the SDK underneath).
CLOUD_MODULES = {
    "aws": ("boto3", "airflow.providers.amazon.aws.hooks.base_aws", "airflow.providers.amazon.aws.hooks.rds"),
    "gcp": ("googleapiclient.discovery", "airflow.providers.google.cloud.hooks.cloud_sql"),
    "azure": ("azure.identity", "azure.mgmt.core", "airflow.providers.microsoft.azure.hooks.base_azure"),
}


def warm_up(service: str) -> float:
    """Import the SDKs of the service's clouds now, before the step's clock starts, and note the time.

    Every Airflow task is a fresh process: its first cloud call would otherwise pay the SDK imports inside
    the step. They are start-up, like the interpreter's: the timeline keeps them apart (``startup_seconds``)
    so "our steps" measures the cloud calls and decisions.
    """
    import importlib

    started = time.monotonic()
    spec = load_catalog().get(service)
    config = load_targets()
    clouds = {config.get(t).cloud for t in (spec.primary.database.target, spec.standby.database.target,
                                             spec.dns.target)}
    for cloud in sorted(clouds):
        for module in CLOUD_MODULES[cloud]:
            importlib.import_module(module)
    seconds = time.monotonic() - started
    _STARTUP.append(seconds)
    return seconds


class Timer:
    """Start / end of one step (wall clock for the timeline, monotonic for the duration), and the SDK
    imports this process did just before it (``startup_seconds``)."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.startup = round(sum(_STARTUP), 3)
        _STARTUP.clear()
        self.started_at = history.now_iso()
        self._t0 = time.monotonic()

    def done(self) -> dict[str, Any]:
        return {"step": self.step, "started_at": self.started_at, "finished_at": history.now_iso(),
                "seconds": round(time.monotonic() - self._t0, 3), "startup_seconds": self.startup}


# ---- the request ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """A validated failover / failback request (from the DAG params)."""

    service: str
    key: str  # the incident id (failover) or change id (failback)
    reason: str = ""
    severity: str | None = None
    dry_run: bool = True
    force: bool = False
    incident_started_at: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, key_param: str = "incident_id",
                    catalog_names: Sequence[str] | None = None) -> Request:
        problems: list[str] = []
        service = str(params.get("service") or "").strip()
        names = list(catalog_names) if catalog_names is not None else load_catalog().names
        if not service:
            problems.append(f"service is required (known: {', '.join(names)})")
        elif service not in names:
            problems.append(f"unknown service {service!r}; known services: {', '.join(names)}")
        key = str(params.get(key_param) or "").strip()
        if not key:
            problems.append(f"{key_param} is required (the ledger is keyed by it: once per {key_param})")
        elif not KEY_PATTERN.match(key):
            problems.append(f"{key_param} {key!r} must match {KEY_PATTERN.pattern}")
        dry_run = params.get("dry_run") is not False
        reason = str(params.get("reason") or "").strip()
        if not dry_run and not reason:
            problems.append("reason is required when dry_run is false (it goes to the audit trail)")
        severity = params.get("severity") or None
        if severity is not None and severity not in SEVERITIES:
            problems.append(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
        started = params.get("incident_started_at") or None
        if started is not None:
            try:
                moment = history.parse_time(str(started))
            except ValueError:
                problems.append(f"incident_started_at {started!r} is not an ISO-8601 time")
            else:
                if moment and moment > datetime.now(UTC):
                    problems.append(f"incident_started_at {started} is in the future")
                started = moment.isoformat() if moment else None
        force = params.get("force") is True
        if problems:
            raise RequestError("; ".join(problems))
        return cls(service=service, key=key, reason=reason, severity=severity, dry_run=dry_run, force=force,
                   incident_started_at=started)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def ledger_key(runbook: str, request: Request) -> str:
    return f"{runbook}:{request.service}:{request.key}"


def incident_lease_key(runbook: str, request: Request) -> str:
    return f"run-lease:{runbook}:{request.service}:{request.key}"


def service_lease_key(service: str) -> str:
    """One lease per service, shared by failover, failback and drills: never two at once."""
    return f"service-lease:{service}"


def get_ledger(conn_id: str = LEDGER_CONN_ID) -> Ledger:
    return Ledger.from_connection(conn_id)


def service_spec(name: str) -> Service:
    try:
        return load_catalog().get(name)
    except CatalogError as exc:
        raise RequestError(str(exc)) from None


def step_options(service: Service, key: str, dns_to: str) -> dict[str, Any]:
    """What the steps read: the service (its catalog entry), the ledger key, where DNS goes, the bounded waits."""
    return {**service.replication.model_dump(), "service": service.name, "key": key, "dns_to": dns_to}


# ---- assess --------------------------------------------------------------------------------------------
def assess_side(service: Service, side: str, *, with_dns: bool = False,
                targets: TargetsConfig | None = None) -> dict[str, Any]:
    """Probe a side's endpoints (several attempts) and read its database (and the DNS record set).

    A read that fails is recorded with its kind (``unreachable`` / ``access_denied`` / ``error``): it is what
    the assessment found, and ``decide`` turns it into a reason.
    """
    timer = Timer(f"assess_{side}")
    spec = service.side(side)
    config = targets or load_targets()

    def database() -> dict[str, Any]:
        try:
            from include.capabilities.database_failover import database_failover

            ref = database_ref(spec.database, config)
            return {"database": database_failover(config.get(ref.target)).status(ref).to_dict(),
                    "database_error": None, "database_error_kind": None}
        except Exception as exc:  # an observation: the database could not be read, and why
            return {"database": None, "database_error": error_text(exc), "database_error_kind": classify(exc)}

    def record_set() -> dict[str, Any]:
        try:
            from include.capabilities.dns import dns

            rs = record_set_ref(service, config)
            return {"dns": dns(config.get(rs.target)).read(rs).to_dict(), "dns_error": None}
        except Exception as exc:
            return {"dns": None, "dns_error": error_text(exc)}

    # The probes' attempts and the two control-plane reads are independent: run them at once.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix=f"assess-{side}") as pool:
        probes = pool.submit(probe_side, spec.probes, service.probe)
        reads = [pool.submit(database)] + ([pool.submit(record_set)] if with_dns else [])
        health, results = probes.result()
        out: dict[str, Any] = {"side": side, "health": health, "probe_summary": describe(results),
                               "probes": [r.to_dict() for r in results]}
        for read in reads:
            out.update(read.result())
    out["timing"] = timer.done()
    return out


def _db(assessment: Mapping[str, Any]) -> DatabaseStatus | None:
    data = assessment.get("database")
    return DatabaseStatus.from_dict(data) if data else None


def standby_problems(service: Service, standby: Mapping[str, Any], *, now: datetime | None = None) -> list[str]:
    """Why the standby must not be promoted (empty: it may)."""
    problems = []
    if standby["health"] != "healthy":
        problems.append(f"standby endpoints are {standby['health']}: {standby['probe_summary']}")
    db = _db(standby)
    name = service.standby.database.identifier
    if db is None:
        problems.append(f"standby database {name} could not be read ({standby.get('database_error_kind')}): "
                        f"{standby.get('database_error')}")
        return problems
    if not db.exists:
        problems.append(f"standby database {name} does not exist")
    elif not db.is_replica:
        problems.append(f"standby database {name} is not a read replica (nothing to promote)")
    elif not db.available:
        problems.append(f"standby database {name} is {db.state}, not available")
    else:
        problems.extend(lag_problems(service, db, now=now))
    return problems


def lag_problems(service: Service, db: DatabaseStatus, *, now: datetime | None = None) -> list[str]:
    limit = service.replication.max_lag_seconds
    if db.lag_seconds is None:
        return [f"replica lag of {db.identifier} is unknown (no datapoint in the metrics): the data it would lose "
                "cannot be bounded"]
    seen = history.parse_time(db.lag_observed_at)
    age = ((now or datetime.now(UTC)) - seen).total_seconds() if seen else None
    if age is not None and age > service.replication.lag_max_age_seconds:
        return [f"replica lag of {db.identifier} is unknown: the newest datapoint is {age:.0f}s old "
                f"(more than {service.replication.lag_max_age_seconds:.0f}s)"]
    if db.lag_seconds > limit:
        return [f"replica {db.identifier} lags {db.lag_seconds:.1f}s behind its primary (at most {limit:.0f}s allowed)"]
    return []


def failed_over(primary: Mapping[str, Any], standby: Mapping[str, Any]) -> bool:
    """DNS answers the standby and the standby database is a writer: the service already runs there."""
    db = _db(standby)
    return bool((primary.get("dns") or {}).get("active") == "standby" and db and db.exists and not db.is_replica)


# ---- decide --------------------------------------------------------------------------------------------
def plan_failover_items(service: Service, primary: Mapping[str, Any], request: Request,
                        targets: TargetsConfig | None = None) -> tuple[list[Item], list[str]]:
    """fence (per policy) -> promote -> switch DNS, and notes on what is left out and why."""
    notes: list[str] = []
    items: list[Item] = []
    policy = service.policy.fence
    if policy == "none":
        notes.append("fence: off by policy (policy.fence: none)")
    elif primary.get("database_error_kind") == "unreachable" and policy == "best_effort":
        notes.append(f"fence: skipped, the old primary's control plane is unreachable ({primary['database_error']}); "
                     "best effort by policy: DNS takes its traffic away")
    elif policy == "best_effort" and not _can_fence(service.primary, targets):
        notes.append("fence: skipped, no quarantine security group in the catalog (primary.fence.security_group); "
                     "best effort by policy")
    else:
        items.append(Item(step=FenceDatabase.id, record=db_record(database_ref(service.primary.database, targets))))
    items.append(Item(step=PromoteReplica.id, record=db_record(database_ref(service.standby.database, targets))))
    items.append(Item(step=SwitchDns.id, record=dns_record(record_set_ref(service, targets))))
    return items, notes


def _can_fence(side: Side, targets: TargetsConfig | None) -> bool:
    """RDS fencing needs the quarantine group; Cloud SQL and Azure fence without catalog input."""
    cloud = (targets or load_targets()).get(side.database.target).cloud
    return cloud != "aws" or bool(side.fence.security_group)


def item_keys(items: Sequence[Item]) -> list[str]:
    return [change_key(i.step, i.record.target, i.resource_id, "action") for i in items]


def decide_failover(run: RunInfo, request: Request, primary: Mapping[str, Any], standby: Mapping[str, Any],
                    *, ledger: Ledger, targets: TargetsConfig | None = None) -> dict[str, Any]:
    """Refuse, or plan the failover and say how it is approved. Writes nothing; the plan takes the assessments'
    reads when they are fresh (:func:`assessed_options`) and reads the clouds again when they are not."""
    timer = Timer("decide")
    service = service_spec(request.service)
    key = ledger_key(run.runbook, request)
    items, notes = plan_failover_items(service, primary, request, targets)
    entries = ledger.entries(key)
    done = {k for k, e in entries.items() if e.done}
    keys = item_keys(items)
    reasons: list[str] = []
    outcome = "fail_over"
    resume = bool(done & set(keys))
    holder = ledger.lease_holder(incident_lease_key(run.runbook, request))
    if keys and set(keys) <= done:
        outcome = "done_earlier"
        reasons.append(f"incident {request.key}: every step was applied earlier ("
                       + ", ".join(f"{e.holder} at {e.recorded_at}" for k, e in entries.items() if k in keys) + ")")
    elif holder and holder[0] != run.holder:
        outcome = "in_progress"
        reasons.append(f"incident {request.key} is being failed over by {holder[0]}: this run changes nothing")
    elif not resume and failed_over(primary, standby):
        outcome = "already_failed_over"
        reasons.append(f"{service.name} already runs on its standby (DNS answers it, its database is a writer): "
                       "nothing to fail over; run failback_service to come back")
    elif not resume:
        reasons.extend(_refusals(service, request, primary, standby))
        if reasons:
            outcome = "refused"
    planned: list[Item] = []
    if outcome in ("fail_over", "refused"):
        audit = run.audit(dry_run=request.dry_run, key=key)
        planned = plan_in_parallel(items, resolver(assessed_options(service, key, primary, standby, items), targets),
                                   audit) if outcome == "fail_over" else items
        failed = engine.plan_errors(planned)
        if failed:
            outcome = "refused"
            reasons.extend(f"cannot plan {i.step} on {i.record.name}: {i.plan_error}" for i in failed)
    if outcome == "fail_over" and request.dry_run:
        outcome = "dry_run"
    decision = _decision(run, request, service, outcome, reasons, notes, planned or items, resume, entries, targets)
    decision["timing"] = timer.done()
    _audit_decision(run, request, key, decision)
    return decision


def assessed_options(service: Service, key: str, primary: Mapping[str, Any], standby: Mapping[str, Any],
                     items: Sequence[Item]) -> dict[str, Any]:
    """The failover steps' options with what the two assessments read a moment ago (the old primary's and the
    standby's databases, the record set), so the plan does not read them again; each step still re-reads
    live state before it writes (``Step.apply``). The older assessment's end dates the reads."""
    reads: dict[str, Mapping[str, Any] | None] = {}
    for item in items:
        if item.step == FenceDatabase.id:
            reads[item.record.resource_id] = primary.get("database")
        elif item.step == PromoteReplica.id:
            reads[item.record.resource_id] = standby.get("database")
        elif item.step == SwitchDns.id:
            reads[item.record.resource_id] = primary.get("dns")
    ends = [history.parse_time((a.get("timing") or {}).get("finished_at")) for a in (primary, standby)]
    read_at = min(e for e in ends if e).isoformat() if all(ends) else None
    return observed_options(step_options(service, key, "standby"), reads, read_at=read_at)


def plan_in_parallel(items: Sequence[Item], resolve: Any, audit: AuditContext) -> list[Item]:
    """``engine.plan_items`` of each item at once (independent reads of different resources), in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(items)), thread_name_prefix="plan") as pool:
        parts = list(pool.map(lambda item: engine.plan_items([item], resolve, audit=audit), items))
    return [planned for part in parts for planned in part]


def _refusals(service: Service, request: Request, primary: Mapping[str, Any],
              standby: Mapping[str, Any]) -> list[str]:
    reasons = []
    if primary["health"] != "down" and not request.force:
        reasons.append(f"the primary is {primary['health']} ({primary['probe_summary']}): a primary that answers is "
                       "not failed over unless force is set")
    reasons.extend(standby_problems(service, standby))
    if primary.get("dns_error"):
        reasons.append(f"the DNS record set could not be read: {primary['dns_error']}")
    if service.policy.fence == "required" and not _can_fence(service.primary, None):
        reasons.append("fencing is required by policy but the catalog names no quarantine security group "
                       "(primary.fence.security_group)")
    if service.policy.fence == "required" and primary.get("database_error"):
        reasons.append(f"fencing is required by policy but the old primary cannot be read "
                       f"({primary.get('database_error_kind')}): {primary['database_error']}")
    return reasons


def _approval_path(run: RunInfo, request: Request, service: Service, entries: Mapping[str, Any],
                   resume: bool) -> tuple[str, str | None]:
    approval = entries.get("approval")
    if resume and approval is not None:
        return "resumed", f"resumed: approved earlier by {approval.detail.get('approver')}"
    if request.severity and request.severity in service.policy.auto_approve:
        return "policy", f"policy: auto-approve severity {request.severity} ({service.name})"
    return "human", None


def _decision(run: RunInfo, request: Request, service: Service, outcome: str, reasons: list[str], notes: list[str],
              items: list[Item], resume: bool, entries: Mapping[str, Any],
              targets: TargetsConfig | None) -> dict[str, Any]:
    path, approver = _approval_path(run, request, service, entries, resume) if outcome == "fail_over" else (None, None)
    resolve = resolver(step_options(service, ledger_key(run.runbook, request), "standby"), targets)
    subject, body = approval_text(items, WORDING, reason=request.reason, run_id=run.run_id,
                                  permissions=engine.permissions(items, resolve))
    subject = f"Fail over {service.name} to its standby (incident {request.key})? " + subject
    if notes:
        body += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return {"outcome": outcome, "reasons": reasons, "notes": notes, "resume": resume, "approval": path,
            "policy_approver": approver, "items": to_dicts(items), "plan": plan_lines(items, WORDING),
            "permissions": engine.permissions(items, resolve), "subject": subject, "body": body,
            "request": request.to_dict(), "ledger_key": ledger_key(run.runbook, request)}


def _audit_decision(run: RunInfo, request: Request, key: str, decision: Mapping[str, Any]) -> None:
    outcome = decision["outcome"]
    write_audit(run.audit(dry_run=request.dry_run, key=key).record(
        step="decide", action=f"decide: {outcome}", outcome="failed" if outcome == "refused" else "skipped",
        resource=request.service, after={"outcome": outcome, "reasons": decision["reasons"],
                                         "notes": decision["notes"], "approval": decision["approval"]},
        error="; ".join(decision["reasons"]) if outcome == "refused" else None))


def record_approval(run: RunInfo, request: Request, decision: Mapping[str, Any], approver: str, *,
                    ledger: Ledger) -> dict[str, Any]:
    """Record who approved (human, policy, or the earlier approval of a resumed run) in the ledger and audit."""
    key = decision["ledger_key"]
    at = history.now_iso()
    if decision.get("approval") != "resumed":
        ledger.record(key, "approval", holder=run.holder, outcome="approved", detail={"approver": approver, "at": at})
    write_audit(run.audit(dry_run=False, key=key, approver=approver).record(
        step="approve", action=f"approved by {approver}", outcome="skipped", resource=request.service,
        after={"approver": approver, "planned": decision["plan"]}))
    return {"approved": True, "responded_by": approver, "responded_at": at, "chosen_options": ["Approve"]}


# ---- apply ---------------------------------------------------------------------------------------------
def take_run_leases(run: RunInfo, request: Request, *, ledger: Ledger) -> str | None:
    """Hold the incident and service leases for this run (renewed when held). Returns the holder of the
    incident lease when another run has it (this run is a duplicate), else None. Raises
    :class:`LedgerBusy` when another incident's run holds the service."""
    incident = incident_lease_key(run.runbook, request)
    try:
        ledger.acquire(incident, run.holder, ttl=RUN_LEASE_TTL)
    except LedgerBusy:
        held = ledger.lease_holder(incident)
        return held[0] if held else "another run"
    try:
        ledger.acquire(service_lease_key(request.service), run.holder, ttl=RUN_LEASE_TTL)
    except LedgerBusy as exc:
        ledger.release(incident, run.holder)
        raise LedgerBusy(f"another failover / failback of service {request.service} is running: {exc}") from None
    return None


def release_run_leases(run: RunInfo, request: Request, *, ledger: Ledger) -> None:
    ledger.release(incident_lease_key(run.runbook, request), run.holder)
    ledger.release(service_lease_key(request.service), run.holder)


def apply_step(run: RunInfo, decision: Mapping[str, Any], step_id: str, approver: str | None, *,
               ledger: Ledger, targets: TargetsConfig | None = None, task: str | None = None) -> dict[str, Any]:
    """Apply the decision's ``step_id`` item under the leases and the ledger; raise when it fails.

    ``{"duplicate_of": holder}`` when another live run holds this incident (nothing applied);
    ``{"skipped": why}`` when the plan has no such step (fencing off by policy or impossible).
    """
    name = task or step_id
    timer = Timer(name)
    request = Request.from_dict(decision["request"])
    service = service_spec(request.service)
    other = take_run_leases(run, request, ledger=ledger)
    if other:
        return {"step": name, "step_id": step_id, "duplicate_of": other, "timing": timer.done()}
    chosen = [i for i in from_dicts(decision["items"]) if i.step == step_id]
    if not chosen:
        note = next((n for n in decision.get("notes", []) if n.startswith(step_id.split(".")[-1])), "not planned")
        return {"step": name, "step_id": step_id, "skipped": note, "timing": timer.done()}
    key = decision["ledger_key"]
    options = step_options(service, key, str(decision.get("dns_to") or "standby"))
    (done,) = engine.apply_items(chosen, resolver(options, targets), rate=RateControl.stop_on_first_error(),
                                 ledger=ledger, ledger_key=key, holder=run.holder,
                                 audit=run.audit(dry_run=False, key=key, approver=approver))
    out = {"step": name, "step_id": step_id, "item": done.to_dict(), "outcome": done.outcome, "timing": timer.done()}
    if done.outcome in ("failed", "not_attempted", "skipped"):
        raise ChangeError(f"{step_id} on {done.record.name}: {done.outcome}: {done.apply_error or done.note}")
    return out


# ---- verify --------------------------------------------------------------------------------------------
def verify_side(run: RunInfo, request: Request, side: str, *, targets: TargetsConfig | None = None,
                sleep: Any = time.sleep) -> dict[str, Any]:
    """Re-check until the service runs on ``side`` (bounded): DNS answers it, its database accepts writes
    (control plane: exists, available, not a replica, not fenced), its endpoints' probes pass."""
    from include.capabilities.database_failover import database_failover
    from include.capabilities.dns import dns

    timer = Timer("verify")
    service = service_spec(request.service)
    config = targets or load_targets()
    rs = record_set_ref(service, config)
    ref = database_ref(service.side(side).database, config)
    dns_cap = dns(config.get(rs.target))
    db_cap = database_failover(config.get(ref.target))

    def checks() -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="verify") as pool:
            dns_read, db_read = pool.submit(dns_cap.read, rs), pool.submit(db_cap.status, ref)
            probed = pool.submit(probe_side, service.side(side).probes, service.probe)
            state, status, (health, results) = dns_read.result(), db_read.result(), probed.result()
        return {
            "dns": {"ok": state.active == side, "answer": list(state.answer), "active": state.active},
            "database": {"ok": status.writable, "identifier": ref.identifier, "state": status.state,
                         "replica": status.is_replica, "fenced": status.fenced,
                         "meaning": "control plane: exists, available, not a replica, not fenced"},
            "probes": {"ok": health == "healthy", "health": health, "summary": describe(results)},
        }

    interval = min(service.replication.poll_interval_seconds, 1.0)
    try:
        found = poll_until(checks, lambda c: all(v["ok"] for v in c.values()),
                           timeout=service.replication.verify_timeout_seconds, interval=interval,
                           what=f"{service.name} to run on its {side}", sleep=sleep)
        ok, error = True, None
    except WaitTimeout as exc:
        found, ok, error = checks(), False, str(exc)
    audit = run.audit(dry_run=False, key=ledger_key(run.runbook, request))
    write_audit(audit.record(step="verify", action=f"verify {service.name} on {side}",
                             outcome="unchanged" if ok else "failed", resource=request.service, after=found,
                             error=error))
    return {"verified": ok, "side": side, "checks": found, "error": error, "timing": timer.done()}


# ---- record --------------------------------------------------------------------------------------------
def timeline(*parts: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The steps that ran, in time order, each with its start, end and seconds."""
    steps = [dict(p["timing"]) for p in parts if p and p.get("timing")]
    return sorted(steps, key=lambda s: s["started_at"])


def busy_seconds(steps: Iterable[Mapping[str, Any]]) -> float:
    """Wall-clock seconds during which at least one of our steps ran: parallel steps (the two assessments)
    count once, so our steps and Airflow's scheduling add up to the RTO."""
    spans = sorted((history.parse_time(s["started_at"]), history.parse_time(s["finished_at"])) for s in steps)
    total, current_start, current_end = 0.0, None, None
    for start, end in spans:
        if start is None or end is None:
            continue
        if current_end is None or start > current_end:
            if current_start is not None and current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_start is not None and current_end is not None:
        total += (current_end - current_start).total_seconds()
    return round(total, 3)


def rto(request: Request, run: RunInfo, steps: Sequence[Mapping[str, Any]], verify: Mapping[str, Any] | None,
        approval: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Incident start (given, else the trigger time) -> verified, and its split: our steps, the approval wait,
    and the rest (Airflow's scheduling between tasks, when measured from the trigger)."""
    started = request.incident_started_at or run.triggered_at
    verified_at = (verify or {}).get("timing", {}).get("finished_at") if (verify or {}).get("verified") else None
    ours = busy_seconds(s for s in steps if s["step"] != "record")
    startup = busy_seconds({"started_at": _before(s["started_at"], float(s.get("startup_seconds") or 0)),
                            "finished_at": s["started_at"]} for s in steps if s.get("startup_seconds"))
    wait = None
    if approval and approval.get("responded_at") and approval.get("waiting_since"):
        wait = history.seconds_between(approval["waiting_since"], approval["responded_at"])
    total = history.seconds_between(started, verified_at)
    overhead = None
    if total is not None and not request.incident_started_at:
        overhead = round(total - ours - startup - (wait or 0.0), 3)
    return {"incident_started_at": started, "started_from": "incident_started_at" if request.incident_started_at
            else "trigger", "verified_at": verified_at, "rto_seconds": total, "our_steps_seconds": ours,
            "sdk_import_seconds": startup, "approval_wait_seconds": wait, "scheduling_overhead_seconds": overhead}


def _before(moment: str, seconds: float) -> str:
    parsed = history.parse_time(moment)
    assert parsed is not None
    return (parsed - timedelta(seconds=seconds)).isoformat()


def notify_result(service: Service, result: Mapping[str, Any]) -> dict[str, str]:
    from include.notify import Notification, pagerduty_incident_id, send

    status = result["status"]
    severity = "critical" if status in ("refused", "failed") else "warning" if status == "failed_over" else "info"
    figures = result.get("rto") or {}
    rto_text = f" (RTO {figures['rto_seconds']:.1f}s)" if figures.get("rto_seconds") is not None else ""
    note = {
        "failed_over": f"{service.name} now runs on its standby{rto_text}",
        "failed_back": f"{service.name} is back on its primary{rto_text}",
        "refused": f"{service.name}: {result['runbook']} refused: " + "; ".join(result.get("reasons") or []),
        "failed": f"{service.name}: {result['runbook']} FAILED: {result.get('error') or 'see the result'}",
    }.get(status, f"{service.name}: {result['runbook']} ended {status}")
    return send(Notification(
        title=f"{result['runbook']} {service.name}: {status}{rto_text}", text=note, severity=severity,
        runbook=result["runbook"], run_id=result["run_id"], link=result.get("path"),
        items=[{"step": s["step"], "seconds": s["seconds"]} for s in result.get("timeline", [])],
        fields={"service": service.name, "key": result.get("key"), "status": status, "notify": list(service.notify.recipients),
                "approver": result.get("approver")},
        # a run the intake started from a PagerDuty incident: a note on it (the RTO, or the cause); resolved when done
        pagerduty_incident=pagerduty_incident_id(result.get("key"), result.get("run_id")),
        resolve_incident=status in ("failed_over", "failed_back"),
    ), channels=list(service.notify.channels) if service.notify.channels is not None else None)


def finish(run: RunInfo, request: Request, result: dict[str, Any], *, ledger: Ledger | None,
           notify: bool = True) -> dict[str, Any]:
    """Write the result and the history line, notify, audit, and release the run's leases."""
    service = service_spec(request.service)
    result = {"runbook": run.runbook, "run_id": run.run_id, "service": request.service, "key": request.key,
              "actor": run.actor, "dry_run": request.dry_run, "written_at": history.now_iso(), **result}
    path = history.result_path(run.run_id)
    result["path"] = str(path)
    if notify and not (request.dry_run and result["status"] == "dry_run"):
        result["notified"] = notify_result(service, result)  # never raises: a failed channel is reported here
    history.write_result(result)
    figures = result.get("rto") or {}
    history.append_history({
        "runbook": run.runbook, "run_id": run.run_id, "service": request.service, "key": request.key,
        "status": result["status"], "dry_run": request.dry_run, "severity": request.severity,
        "approver": result.get("approver"), "written_at": result["written_at"], **figures,
        "steps": {s["step"]: s["seconds"] for s in result.get("timeline", [])}, "result": str(path),
    })
    write_audit(run.audit(dry_run=request.dry_run, key=ledger_key(run.runbook, request),
                          approver=result.get("approver")).record(
        step="record", action=f"{run.runbook} {result['status']}", outcome="failed" if result["status"] in (
            "failed", "refused") else "skipped", resource=request.service,
        after={"status": result["status"], "rto": figures, "result": str(path)}))
    if ledger is not None and not request.dry_run:
        release_run_leases(run, request, ledger=ledger)
    return result


def failover_result(run: RunInfo, request: Request, *, primary: Mapping[str, Any] | None,
                    standby: Mapping[str, Any] | None, decision: Mapping[str, Any] | None,
                    approval: Mapping[str, Any] | None, steps: Sequence[Mapping[str, Any] | None],
                    verify: Mapping[str, Any] | None, resolved: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The result document of a failover run, from what each task returned (None: it did not run)."""
    outcome = (decision or {}).get("outcome")
    duplicate = next((s["duplicate_of"] for s in steps if s and s.get("duplicate_of")), None)
    ran = [s for s in steps if s]
    if outcome in REPORT_OUTCOMES:
        status = outcome
    elif duplicate:
        status = "duplicate"
    elif approval is not None and not approval.get("approved"):
        status = "rejected"
    elif verify and verify.get("verified"):
        status = "failed_over"
    else:
        status = "failed"
    error = None
    if status == "failed":
        error = (verify or {}).get("error") or "a step did not finish (see its log; a rerun with the same incident "\
                                              "id resumes where it stopped)"
    parts = [resolved, primary, standby, decision, approval, *ran, verify]  # a person's answer has no timing
    steps_done = timeline(*parts)
    return {
        "status": status,
        "reasons": list((decision or {}).get("reasons") or []),
        "notes": list((decision or {}).get("notes") or []),
        "duplicate_of": duplicate,
        "approval": (decision or {}).get("approval"),
        "approver": (approval or {}).get("responded_by"),
        "decision": dict(approval or {}) or None,
        "error": error,
        "assessment": {"primary": primary, "standby": standby},
        "plan": (decision or {}).get("plan"),
        "permissions": (decision or {}).get("permissions"),
        "steps": {s["step"]: {k: v for k, v in s.items() if k != "timing"} for s in ran},
        "verification": verify,
        "timeline": steps_done,
        "rto": rto(request, run, steps_done, verify, approval) if status == "failed_over" else None,
    }


def with_items(decision: Mapping[str, Any], items: Sequence[Item]) -> dict[str, Any]:
    return {**dict(decision), "items": to_dicts(items)}

