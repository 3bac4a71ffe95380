"""Run a remediation request: resolve -> plan -> (approval, outside) -> apply -> verify -> result.

The request names what to fix in one of two forms:

- ``finding_ids``: findings of the latest compliance scan; each carries its rule's fixer;
- ``rule`` + ``resources``: a rule id (its metadata names the fixer) and resource ids (or unique names)
  from the latest inventory.

Everything is checked before anything changes: unknown finding ids, unknown resources, a rule without a
fixer, a resource type the fixer does not handle, missing fixer options: one :class:`RemediationError`
lists every problem. Then every resource is planned (reads only); each is applied on its own (a failing
fixer is recorded and the others still run); each is verified by re-reading it; every step writes one
audit record per resource.

Each step takes and returns plain lists of :class:`Entry`, serialisable for XCom between DAG tasks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.audit import AuditContext, scrub, write_audit
from include.compliance.model import Finding
from include.compliance.remediation.registry import (
    Applied,
    Change,
    Fixer,
    RemediationError,
    get_fixer,
    permissions_for,
)
from include.inventory.store import atomic_write_text, data_dir, safe_run_id
from include.records import ResourceRecord
from include.targets import TargetsConfig, TargetsError, load_targets

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 7


# ---- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """What to remediate and with which values (validated; built from the DAG params)."""

    finding_ids: tuple[str, ...] = ()
    rule: str | None = None
    resources: tuple[str, ...] = ()
    tag_values: dict[str, str] = field(default_factory=dict)
    retention_days: int = DEFAULT_RETENTION_DAYS
    kms_key_id: str | None = None
    reason: str = ""
    dry_run: bool = True

    def __post_init__(self) -> None:
        # Lists arrive from JSON (run conf, XCom): keep tuples so the request stays immutable.
        object.__setattr__(self, "finding_ids", tuple(self.finding_ids))
        object.__setattr__(self, "resources", tuple(self.resources))
        problems: list[str] = []
        by_findings = bool(self.finding_ids)
        by_rule = bool(self.rule) or bool(self.resources)
        if by_findings and by_rule:
            problems.append("give either finding_ids, or rule + resources, not both")
        elif not by_findings and not by_rule:
            problems.append("nothing selected: give finding_ids, or rule + resources")
        elif by_rule and not self.rule:
            problems.append("resources given without a rule")
        elif by_rule and not self.resources:
            problems.append(f"rule {self.rule} given without resources")
        if any(not isinstance(f, str) or not f.strip() for f in self.finding_ids):
            problems.append("finding_ids must be non-empty strings")
        if any(not isinstance(r, str) or not r.strip() for r in self.resources):
            problems.append("resources must be non-empty strings")
        if not isinstance(self.retention_days, int) or isinstance(self.retention_days, bool) or not (
            1 <= self.retention_days <= 35
        ):
            problems.append(f"retention_days must be an integer 1..35, not {self.retention_days!r}")
        if not isinstance(self.tag_values, Mapping) or any(
            not str(k).strip() or not isinstance(v, str) for k, v in self.tag_values.items()
        ):
            problems.append("tag_values must map tag keys to string values")
        if problems:
            raise RemediationError("; ".join(problems))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        """Build from DAG params / run conf (empty strings and lists mean "not given")."""

        def strings(value: Any, name: str) -> tuple[str, ...]:
            if value in (None, "", []):
                return ()
            if isinstance(value, str):
                return (value,)
            if not isinstance(value, (list, tuple)):
                raise RemediationError(f"{name} must be a list of strings")
            return tuple(str(v).strip() for v in value)

        retention = params.get("retention_days")
        return cls(
            finding_ids=tuple(dict.fromkeys(strings(params.get("finding_ids"), "finding_ids"))),
            rule=(str(params.get("rule")).strip() or None) if params.get("rule") else None,
            resources=tuple(dict.fromkeys(strings(params.get("resources"), "resources"))),
            tag_values={str(k).strip(): v if isinstance(v, str) else str(v) if isinstance(v, (int, float)) else v
                        for k, v in dict(params.get("tag_values") or {}).items()},
            retention_days=DEFAULT_RETENTION_DAYS if retention in (None, "") else retention,
            kms_key_id=(str(params.get("kms_key_id")).strip() or None) if params.get("kms_key_id") else None,
            reason=str(params.get("reason") or ""),
            dry_run=bool(params.get("dry_run", True)),
        )

    @property
    def options(self) -> dict[str, Any]:
        """What the fixers read: ``tag_values``, ``retention_days``, ``kms_key_id``."""
        return {"tag_values": dict(self.tag_values), "retention_days": self.retention_days,
                "kms_key_id": self.kms_key_id}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- one resource through the steps ----------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One (fixer, resource) pair and what each step did to it."""

    fixer: str
    record: ResourceRecord
    finding_ids: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    planned: bool = False
    change: Change | None = None
    plan_error: str | None = None
    #: The plan failed for want of a parameter (e.g. no ``tag_values``), not because of the cloud: a dry
    #: run reports it as "needs input" instead of failing, so it can show what a real run would need.
    needs_input: bool = False
    outcome: str | None = None  # apply: changed | unchanged | failed | skipped
    applied: Applied | None = None
    apply_error: str | None = None
    verified: bool | None = None
    verify_error: str | None = None

    @property
    def resource_id(self) -> str:
        return self.record.resource_id

    @property
    def failed(self) -> bool:
        return bool(self.plan_error or self.apply_error or self.outcome == "failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "fixer": self.fixer,
            "record": self.record.to_dict(),
            "finding_ids": list(self.finding_ids),
            "rule_ids": list(self.rule_ids),
            "planned": self.planned,
            "change": self.change.to_dict() if self.change else None,
            "plan_error": self.plan_error,
            "needs_input": self.needs_input,
            "outcome": self.outcome,
            "applied": self.applied.to_dict() if self.applied else None,
            "apply_error": self.apply_error,
            "verified": self.verified,
            "verify_error": self.verify_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Entry:
        return cls(
            fixer=data["fixer"],
            record=ResourceRecord.from_dict(data["record"]),
            finding_ids=tuple(data.get("finding_ids") or ()),
            rule_ids=tuple(data.get("rule_ids") or ()),
            planned=bool(data.get("planned")),
            change=Change.from_dict(data["change"]) if data.get("change") else None,
            plan_error=data.get("plan_error"),
            needs_input=bool(data.get("needs_input")),
            outcome=data.get("outcome"),
            applied=Applied(**data["applied"]) if data.get("applied") else None,
            apply_error=data.get("apply_error"),
            verified=data.get("verified"),
            verify_error=data.get("verify_error"),
        )


def to_dicts(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    return [e.to_dict() for e in entries]


def from_dicts(data: Iterable[Mapping[str, Any]]) -> list[Entry]:
    return [Entry.from_dict(d) for d in data]


def _error_text(exc: BaseException, limit: int = 600) -> str:
    text = scrub(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- resolve -----------------------------------------------------------------------------------------
def _latest_findings() -> list[Finding]:
    from include.compliance.store import load_latest_findings

    return list(load_latest_findings())


def _latest_inventory() -> list[ResourceRecord]:
    from include.inventory.store import load_latest

    try:
        return load_latest()
    except FileNotFoundError as exc:
        raise RemediationError("no inventory has been collected yet: run the inventory runbook first") from exc


def _rule_fixer(rule_id: str) -> tuple[str | None, tuple[str, ...]]:
    """(fixer id, resource types) of a rule from the compliance rule registry."""
    from include.compliance.registry import get_rule

    try:
        meta = get_rule(rule_id).meta
    except KeyError as exc:
        raise RemediationError(f"unknown rule {rule_id!r}") from exc
    return meta.fixer, tuple(meta.resource_types)


def _record_from_finding(finding: Finding) -> ResourceRecord:
    parts = finding.resource_type.split(".")
    return ResourceRecord(
        cloud=finding.cloud,
        target=finding.target,
        account=finding.account,
        region=finding.region,
        service=parts[1] if len(parts) > 2 else finding.resource_type,
        resource_type=finding.resource_type,
        resource_id=finding.resource_id,
        name=finding.resource_name,
    )


def resolve(
    request: Request,
    *,
    findings: Callable[[], Sequence[Finding | Mapping[str, Any]]] | None = None,
    inventory: Callable[[], Sequence[ResourceRecord]] | None = None,
    targets: TargetsConfig | None = None,
) -> list[Entry]:
    """Turn the request into (fixer, resource) entries; raise one error listing every problem.

    Two findings that need the same fixer on the same resource become one entry.
    """
    problems: list[str] = []
    wanted: dict[tuple[str, str], Entry] = {}

    def add(fixer_id: str, record: ResourceRecord, finding_id: str | None, rule_id: str) -> None:
        key = (fixer_id, record.key)
        entry = wanted.get(key) or Entry(fixer=fixer_id, record=record)
        wanted[key] = replace(
            entry,
            finding_ids=entry.finding_ids + ((finding_id,) if finding_id and finding_id not in entry.finding_ids
                                             else ()),
            rule_ids=entry.rule_ids + ((rule_id,) if rule_id not in entry.rule_ids else ()),
        )

    if request.finding_ids:
        loaded = [f if isinstance(f, Finding) else Finding.from_dict(dict(f)) for f in (findings or _latest_findings)()]
        by_id = {f.finding_id: f for f in loaded}
        unknown = [fid for fid in request.finding_ids if fid not in by_id]
        if unknown:
            where = "the latest compliance scan" if loaded else "any scan (no compliance scan has run yet)"
            problems.append(f"unknown finding ids (not in {where}): {', '.join(unknown)}")
        for fid in request.finding_ids:
            finding = by_id.get(fid)
            if finding is None:
                continue
            if not finding.fixer:
                problems.append(f"finding {fid}: rule {finding.rule_id} has no fixer (fix it by hand: "
                                f"{finding.remediation})")
                continue
            add(finding.fixer, _record_from_finding(finding), fid, finding.rule_id)
    else:
        assert request.rule is not None
        fixer_id, rule_types = _rule_fixer(request.rule)
        if not fixer_id:
            raise RemediationError(f"rule {request.rule} has no fixer: it cannot be remediated by this runbook")
        records = list((inventory or _latest_inventory)())
        for wanted_id in request.resources:
            matches = [r for r in records if wanted_id in (r.resource_id, r.key)]
            if not matches:
                matches = [r for r in records if r.name == wanted_id and r.resource_type in rule_types]
            if not matches:
                problems.append(f"unknown resource {wanted_id!r} (not in the latest inventory)")
                continue
            if len(matches) > 1:
                problems.append(f"resource {wanted_id!r} is ambiguous: "
                                f"{', '.join(m.key for m in matches)}; give the full resource id")
                continue
            record = matches[0]
            if record.resource_type not in rule_types:
                problems.append(f"resource {wanted_id!r} is a {record.resource_type}; rule {request.rule} applies "
                                f"to {', '.join(rule_types)}")
                continue
            add(fixer_id, record, None, request.rule)

    entries = list(wanted.values())
    config: TargetsConfig | None = targets
    for entry in entries:
        try:
            get_fixer(entry.fixer, entry.record.resource_type)
        except RemediationError as exc:
            problems.append(f"{entry.resource_id}: {exc}")
        try:
            config = config or load_targets()
            config.get(entry.record.target)
        except TargetsError as exc:
            problems.append(f"{entry.resource_id}: {exc}")
    if any(e.fixer == "tags.required" for e in entries) and not request.tag_values and not request.dry_run:
        # A dry run still plans everything else and reports these resources as needing input.
        problems.append('tags.required needs tag_values, e.g. {"owner": "platform-team", "cost-center": "cc-1"}')
    if problems:
        raise RemediationError("cannot remediate:\n- " + "\n- ".join(dict.fromkeys(problems)))
    return sorted(entries, key=lambda e: (e.fixer, e.record.target, e.resource_id))


# ---- the steps -----------------------------------------------------------------------------------
class _Fixers:
    """One fixer instance per (fixer id, cloud) for a step, so hook clients are reused."""

    def __init__(self, options: Mapping[str, Any], targets: TargetsConfig | None) -> None:
        self.options = options
        self.targets = targets
        self._made: dict[tuple[str, str], Fixer] = {}

    def __call__(self, entry: Entry) -> Fixer:
        spec = get_fixer(entry.fixer, entry.record.resource_type)
        key = (spec.id, spec.cloud)
        if key not in self._made:
            self._made[key] = spec.create(self.options, self.targets)
        return self._made[key]


def _audit(audit: AuditContext | None, **fields: Any) -> None:
    if audit is not None:
        write_audit(audit.record(**fields))


def plan(
    entries: Iterable[Entry],
    options: Mapping[str, Any],
    *,
    audit: AuditContext | None = None,
    targets: TargetsConfig | None = None,
) -> list[Entry]:
    """Read every resource and compute its change (reads only; a read error is kept on the entry)."""
    fixers = _Fixers(options, targets)
    planned: list[Entry] = []
    for entry in entries:
        try:
            change = fixers(entry).plan(entry.record)
        except Exception as exc:  # kept per resource, reported, and fails the run
            error = _error_text(exc)
            needs_input = isinstance(exc, RemediationError)
            log.error("plan %s %s: %s", entry.fixer, entry.resource_id, error)
            planned.append(replace(entry, planned=True, plan_error=error, needs_input=needs_input))
            _audit(audit, step="plan", action=entry.fixer, outcome="failed", resource=entry.resource_id, error=error)
            continue
        planned.append(replace(entry, planned=True, change=change))
        if change is None:
            log.info("plan %s %s: already compliant, nothing to change", entry.fixer, entry.resource_id)
            _audit(audit, step="plan", action=entry.fixer, outcome="unchanged", resource=entry.resource_id)
        else:
            log.info("plan %s %s: %s via %s %s", entry.fixer, entry.resource_id, change.summary, change.action,
                     json.dumps(change.request, sort_keys=True, default=str))
            # The plan step itself never writes: the change it found is "skipped" here.
            _audit(audit, step="plan", action=change.action, outcome="skipped", resource=entry.resource_id,
                   before=change.before, after=change.after)
    return planned


def apply(
    entries: Iterable[Entry],
    options: Mapping[str, Any],
    *,
    audit: AuditContext | None = None,
    targets: TargetsConfig | None = None,
) -> list[Entry]:
    """Apply each planned change on its own; a failure is recorded and the others still run."""
    fixers = _Fixers(options, targets)
    done: list[Entry] = []
    for entry in entries:
        if entry.plan_error:
            done.append(replace(entry, outcome="skipped"))
            _audit(audit, step="apply", action=entry.fixer, outcome="skipped", resource=entry.resource_id,
                   error=f"not applied: the plan failed: {entry.plan_error}")
            continue
        if entry.change is None:
            done.append(replace(entry, outcome="unchanged"))
            _audit(audit, step="apply", action=entry.fixer, outcome="unchanged", resource=entry.resource_id)
            continue
        change = entry.change
        try:
            applied = fixers(entry).apply(change)
        except Exception as exc:  # one resource failing must not stop the others
            error = _error_text(exc)
            log.error("apply %s %s failed: %s", entry.fixer, entry.resource_id, error)
            done.append(replace(entry, outcome="failed", apply_error=error))
            _audit(audit, step="apply", action=change.action, outcome="failed", resource=entry.resource_id,
                   before=change.before, after=change.after, error=error)
            continue
        outcome = "changed" if applied.changed else "unchanged"
        log.info("apply %s %s: %s (%s)", entry.fixer, entry.resource_id, outcome, change.summary)
        done.append(replace(entry, outcome=outcome, applied=applied))
        _audit(audit, step="apply", action=change.action, outcome=outcome, resource=entry.resource_id,
               before=applied.before, after=applied.after)
    return done


def verify(
    entries: Iterable[Entry],
    options: Mapping[str, Any],
    *,
    audit: AuditContext | None = None,
    targets: TargetsConfig | None = None,
) -> list[Entry]:
    """Re-read every resource and record whether it complies now (fixed / not fixed)."""
    fixers = _Fixers(options, targets)
    checked: list[Entry] = []
    for entry in entries:
        try:
            ok = fixers(entry).verify(entry.record)
            error = None if ok else "still not compliant after remediation"
        except Exception as exc:  # a resource we cannot re-read is "not fixed"
            ok, error = False, _error_text(exc)
        log.log(logging.INFO if ok else logging.ERROR, "verify %s %s: %s", entry.fixer, entry.resource_id,
                "fixed" if ok else f"NOT fixed: {error}")
        checked.append(replace(entry, verified=ok, verify_error=error))
        _audit(audit, step="verify", action=f"verify {entry.fixer}", outcome="unchanged" if ok else "failed",
               resource=entry.resource_id, error=error)
    return checked


# ---- results -------------------------------------------------------------------------------------
def changes(entries: Iterable[Entry]) -> list[Entry]:
    return [e for e in entries if e.change is not None]


def plan_errors(entries: Iterable[Entry], *, include_needs_input: bool = True) -> list[Entry]:
    """Entries whose plan failed (optionally leaving out those that only lack a parameter)."""
    return [e for e in entries if e.plan_error and (include_needs_input or not e.needs_input)]


def plan_lines(entries: Iterable[Entry]) -> list[str]:
    """One line per resource: the exact change, "compliant", or the plan error."""
    lines = []
    for e in entries:
        where = f"[{e.record.target}] {e.resource_id}"
        if e.plan_error and e.needs_input:
            lines.append(f"{where}: NEEDS INPUT ({e.fixer}): {e.plan_error}")
        elif e.plan_error:
            lines.append(f"{where}: PLAN FAILED ({e.fixer}): {e.plan_error}")
        elif e.change is None:
            lines.append(f"{where}: compliant, no change ({e.fixer})")
        else:
            request = json.dumps(e.change.request, sort_keys=True, default=str)
            lines.append(f"{where}: {e.change.summary} -- {e.change.action} {request}")
    return lines


def approval_text(entries: Sequence[Entry], *, reason: str = "", run_id: str = "") -> tuple[str, str]:
    """Subject and Markdown body of the approval request, listing every planned change."""
    planned = changes(entries)
    targets = sorted({e.record.target for e in planned})
    subject = f"Apply {len(planned)} compliance fix(es) on {', '.join(targets) or 'no target'}?"
    body = [f"**Run** `{run_id}`" if run_id else "", f"**Reason:** {reason}" if reason else "",
            f"**{len(planned)} change(s)** will be made (read -> plan done; nothing changed yet):", ""]
    for e in planned:
        assert e.change is not None
        request = json.dumps(e.change.request, sort_keys=True, default=str)
        flag = " **(destructive)**" if e.change.destructive else ""
        body.append(f"- `{e.change.fixer}` on `{e.resource_id}` ({e.record.target}){flag}: {e.change.summary}  \n"
                    f"  call `{e.change.action}` `{request}`")
    compliant = [e for e in entries if e.change is None and not e.plan_error]
    if compliant:
        body += ["", f"{len(compliant)} resource(s) already compliant: no change."]
    failed = plan_errors(entries)
    if failed:
        body += ["", f"**{len(failed)} resource(s) could not be planned** (will not be changed):"]
        body += [f"- `{e.resource_id}`: {e.plan_error}" for e in failed]
    if planned:
        body += ["", "Permissions the connections need for this: " + "; ".join(
            f"{cloud}: {', '.join(permissions_for({e.fixer for e in planned if e.record.cloud == cloud}, cloud))}"
            for cloud in sorted({e.record.cloud for e in planned}))]
    body += ["", "Approve to apply exactly these changes; Reject (or no answer before the timeout) changes nothing."]
    return subject, "\n".join(line for line in body if line is not None).strip()


def summarise(
    entries: Sequence[Entry],
    *,
    request: Request,
    status: str,
    run_id: str,
    approver: str | None = None,
) -> dict[str, Any]:
    """The result document: per resource what was planned, applied and verified, and the failures."""
    def row(e: Entry, **extra: Any) -> dict[str, Any]:
        return {"resource_id": e.resource_id, "target": e.record.target, "fixer": e.fixer, **extra}

    # In a dry run, a resource whose plan only lacks a parameter is listed as needing input, not failed.
    needs_input = [row(e, error=e.plan_error) for e in entries if e.needs_input and request.dry_run]
    failed = [
        row(e, step="plan" if e.plan_error else "apply", error=e.plan_error or e.apply_error)
        for e in entries if e.failed and not (e.needs_input and request.dry_run)
    ]
    not_fixed = [
        {"resource_id": e.resource_id, "target": e.record.target, "fixer": e.fixer, "error": e.verify_error}
        for e in entries if e.verified is False
    ]
    return {
        "run_id": run_id,
        "status": status,
        "dry_run": request.dry_run,
        "reason": request.reason,
        "approver": approver,
        "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request": request.to_dict(),
        "totals": {
            "resources": len(entries),
            "planned_changes": len(changes(entries)),
            "compliant_already": sum(1 for e in entries if e.planned and e.change is None and not e.plan_error),
            "needs_input": len(needs_input),
            "changed": sum(1 for e in entries if e.outcome == "changed"),
            "failed": len(failed),
            "fixed": sum(1 for e in entries if e.verified is True),
            "not_fixed": len(not_fixed),
        },
        "failed": failed,
        "needs_input": needs_input,
        "not_fixed": not_fixed,
        "plan": plan_lines(entries),
        "resources": to_dicts(entries),
    }


def result_path(run_id: str, base: Path | None = None) -> Path:
    return (base or data_dir()) / "remediation" / safe_run_id(run_id) / "result.json"


def write_result(result: Mapping[str, Any], base: Path | None = None) -> Path:
    path = result_path(str(result["run_id"]), base)
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
    return path


def remediate(
    request: Request,
    *,
    audit: AuditContext | None = None,
    findings: Callable[[], Sequence[Finding | Mapping[str, Any]]] | None = None,
    inventory: Callable[[], Sequence[ResourceRecord]] | None = None,
    targets: TargetsConfig | None = None,
    run_id: str = "manual",
) -> dict[str, Any]:
    """The whole runbook without Airflow (approval assumed): resolve, plan, and unless dry-run apply + verify."""
    entries = resolve(request, findings=findings, inventory=inventory, targets=targets)
    entries = plan(entries, request.options, audit=audit, targets=targets)
    if request.dry_run:
        return summarise(entries, request=request, status="dry_run", run_id=run_id)
    entries = apply(entries, request.options, audit=audit, targets=targets)
    entries = verify(entries, request.options, audit=audit, targets=targets)
    status = "failed" if any(e.failed or e.verified is False for e in entries) else "fixed"
    return summarise(entries, request=request, status=status, run_id=run_id,
                     approver=audit.approver if audit else None)


# ---- Airflow glue (kept here so the DAG file stays a readable runbook) ---------------------------------
RUNBOOK = "remediate_findings"


def audit_context(context: Mapping[str, Any], request: Request, approver: str | None = None) -> AuditContext:
    """The audit fields shared by every record of this run, from the Airflow task context."""
    from include.audit import actor_from_context

    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "") or "")
    return AuditContext(
        runbook=str(getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", None) or RUNBOOK),
        run_id=run_id,
        actor=actor_from_context(context),
        dry_run=request.dry_run,
        params=dict(context.get("params") or request.to_dict()),
        # A caller that retries a trigger sends the same key (or the same deterministic run id).
        idempotency_key=str(conf.get("idempotency_key") or run_id),
        approver=approver,
    )


def approval_of(decision: Mapping[str, Any] | None, *, require_approved: bool = False) -> str | None:
    """Who answered the approval (None: nobody, e.g. the timeout default); optionally insist on Approve.

    ``decision`` is what :class:`include.approval.RecordedApprovalOperator` pushes to XCom ``decision``.
    """
    if not decision:
        if require_approved:
            raise RemediationError("no approval recorded for this run: refusing to apply")
        return None
    chosen = list(decision.get("chosen_options") or [])
    if require_approved and chosen != ["Approve"]:
        raise RemediationError(f"the plan was not approved (answer: {chosen or 'none'}): refusing to apply")
    who = decision.get("responded_by")
    return str(who) if who else None


def final_report(context: Mapping[str, Any], verified: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``report`` task: write result.json for the approval path and fail on any failure.

    Runs whatever happened upstream (trigger rule ``all_done``): skips itself on the dry-run path,
    records a rejection (or a timeout's default Reject) without failing, and fails when apply or verify
    did not finish or any resource failed / is not fixed.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    ti = context["ti"]
    run_id = str(context["run_id"])
    if ti.xcom_pull(task_ids="choose_path", key="path") != "approve_changes":
        raise AirflowSkipException("dry run or nothing to change: report_plan wrote the result")
    planned = ti.xcom_pull(task_ids="plan_changes")
    if not planned:
        raise AirflowFailException("plan_changes left no plan")
    request = Request(**planned["request"])
    decision = ti.xcom_pull(task_ids="approve_changes", key="decision")
    if not decision:
        raise AirflowFailException("approve_changes did not complete (failed, or timed out without a default)")
    chosen = list(decision.get("chosen_options") or [])
    approver = approval_of(decision)
    audit = audit_context(context, request, approver=approver)
    if chosen != ["Approve"]:
        entries = from_dicts(planned["entries"])
        who = "nobody: no answer before the timeout (default Reject)" if decision.get("timed_out") else approver
        result = summarise(entries, request=request, status="rejected", run_id=run_id, approver=approver)
        result["decision"] = dict(decision)
        path = write_result(result)
        write_audit(audit.record(step="approve", action=f"rejected by {who}", outcome="skipped",
                                 after={**decision, "planned_changes": len(changes(entries))}))
        print(f"rejected by {who}: nothing was changed; result: {path}")
        return {"status": "rejected", "path": str(path), "approver": approver}
    if not verified:
        applied = ti.xcom_pull(task_ids="apply_changes")
        step = "verify_changes" if applied else "apply_changes"
        if applied:
            result = summarise(from_dicts(applied["entries"]), request=request, status="failed", run_id=run_id,
                               approver=approver)
            write_result(result)
        raise AirflowFailException(f"{step} did not finish: see its log (changes made so far are in the audit "
                                   "trail); re-running the same request is safe, fixers are idempotent")
    entries = from_dicts(verified["entries"])
    failed = [e for e in entries if e.failed or e.verified is False]
    result = summarise(entries, request=request, status="failed" if failed else "fixed", run_id=run_id,
                       approver=approver)
    path = write_result(result)
    totals = result["totals"]
    print(f"{totals['changed']} changed, {totals['fixed']}/{totals['resources']} verified fixed, "
          f"{totals['failed']} failed, {totals['not_fixed']} not fixed; approved by {approver}; result: {path}")
    if failed:
        lines = [f"{e.resource_id} ({e.fixer}): "
                 + (f"plan failed: {e.plan_error}" if e.plan_error else
                    f"apply failed: {e.apply_error}" if e.apply_error else f"not fixed: {e.verify_error}")
                 for e in failed]
        raise AirflowFailException(f"{len(failed)} resource(s) failed or not fixed (result: {path}):\n"
                                   + "\n".join(lines))
    return {"status": "fixed", "path": str(path), "totals": totals}
