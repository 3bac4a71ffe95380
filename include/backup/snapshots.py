"""The ``backup_snapshots`` runbook's own part: its request, the tagged resources, the plan, the reports.

What a run does, per snapshot policy (``snapshot_policies`` in ``config/backup/policies.yaml``):

1. **select**: the policies asked for (all by default), fixed for the whole run as they were read (the plan,
   the apply and the verification use the same policy even if the file changes meanwhile), the run's clock
   (``now``, taken once), its ledger key and ``force``. An unknown policy or parameter is one
   :class:`~include.changes.model.RequestError` naming the known ones.
2. **find**: the resources of the policy's target that carry ``tag_key`` (= ``tag_value``), through the snapshots
   capability. An untagged resource is never selected.
3. **plan**: for each resource a ``snapshots.create`` item (due when the policy's schedule fired since our
   newest snapshot of it) and, when the policy names ``copy_to_region`` and the cloud can copy that kind, a
   ``snapshots.copy`` item depending on it; then retention: for each series (one source resource in one
   region) of *our* snapshots under the policy, the GFS set is computed over the existing points plus the
   ones this run adds, and every point it does not keep becomes a ``snapshots.delete`` item, depending on the
   create / copy of that series (no pruning while the new snapshot failed). Snapshots without our marks are
   never listed, so never planned for deletion; snapshots still being created are never deleted; failed
   ones of ours (never restorable) are deleted.
4. **apply** under :data:`RATE` and the ledger (key ``backup_snapshots:<run id>``), **verify** (bounded waits),
   **report** one result per policy: ``data/backup/snapshots/<policy>/runs/<run id>.json``.

Approval: none at run time. The snapshot policy, reviewed like any change to the repository, is the approval
of what the runbook does on its schedule; it deletes nothing but snapshots this platform made under that
policy (see ``docs/backup-snapshots.md``). A manual or API run is a dry run unless ``dry_run`` is false.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from include.backup.policies import BackupConfig, BackupPolicyError, SnapshotPolicy, load_policies
from include.backup.snapshots_retention import Point, keep
from include.backup.snapshots_steps import (
    COPY,
    CREATE,
    DELETE,
    NEW,
    STEPS,
    snapshot_due,
    split_step,
    step_id,
)
from include.capabilities.snapshots import SNAPSHOT_KIND, Resource, Snapshot, Snapshots, run_token
from include.changes import engine
from include.changes.engine import Item, StepCache, changes, plan_errors
from include.changes.ledger import Ledger
from include.changes.model import RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording, plan_lines, summarise
from include.changes.runbook import ChangeSet
from include.fileio import atomic_write_text
from include.paths import DataPath, data_root, safe_segment
from include.records import ResourceRecord, service_of, utc_iso
from include.targets import Target, TargetsConfig, load_targets

RUNBOOK = "backup_snapshots"
WORDING = Wording(
    title="Snapshot tagged resources",
    results_dir="backup/snapshots",
    noun="snapshot change",
    done_status="backed_up",
    nothing_status="up_to_date",
    in_state="up to date",
)
#: Four changes at once (each a snapshot, a copy or a delete; AWS allows 20 concurrent copies per
#: destination region), and every change is attempted: one resource failing does not stop the others.
RATE = RateControl(max_concurrency="4", max_errors="100%")
#: Bound on each wait for a snapshot to become available (EBS / RDS take minutes to hours on AWS).
DEFAULT_WAIT = 3600.0
DEFAULT_INTERVAL = 30.0

CapabilityFor = Callable[[Target], Snapshots]


def _capability(target: Target) -> Snapshots:
    from include.capabilities import snapshots_for

    return snapshots_for(target)


# ---- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """One run: its policies (as read when it started), clock, ledger key, force, dry run, wait bounds."""

    policies: dict[str, dict[str, Any]]  # name -> the SnapshotPolicy as JSON
    now: str  # ISO-8601 UTC: the run's clock, taken once
    run_key: str  # the ledger key: backup_snapshots:<idempotency key or run id>
    force: bool = False
    dry_run: bool = True
    wait: float = DEFAULT_WAIT
    interval: float = DEFAULT_INTERVAL

    @property
    def names(self) -> list[str]:
        return list(self.policies)

    def policy(self, name: str) -> SnapshotPolicy:
        return SnapshotPolicy.model_validate(self.policies[name])

    @property
    def moment(self) -> datetime:
        return datetime.fromisoformat(self.now.replace("Z", "+00:00")).astimezone(UTC)

    @property
    def token(self) -> str:
        return run_token(self.run_key)

    def options(self, policy: str) -> dict[str, Any]:
        """What the steps of ``policy`` read (see :class:`~include.backup.snapshots_steps.RunOptions`)."""
        return {"policy": self.policies[policy], "now": self.now, "token": self.token, "force": self.force,
                "wait": self.wait, "interval": self.interval}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def select(
    params: Mapping[str, Any], *, dry_run: bool, run_key: str, now: datetime, config: BackupConfig | None = None,
    wait: float = DEFAULT_WAIT, interval: float = DEFAULT_INTERVAL,
) -> Request:
    """The request from the runbook's parameters: one RequestError naming every problem (nothing is read yet)."""
    try:
        loaded = config or load_policies()
    except BackupPolicyError as exc:
        raise RequestError(str(exc)) from None
    known = [p.name for p in loaded.snapshot_policies]
    if not known:
        raise RequestError("no snapshot policies are defined (snapshot_policies in the backup policies file)")
    asked = params.get("policies")
    problems = []
    if asked in (None, "", []):
        names = known
    elif not isinstance(asked, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in asked):
        raise RequestError("policies must be a list of snapshot policy names")
    else:
        names = list(dict.fromkeys(n.strip() for n in asked))
        unknown = [n for n in names if n not in known]
        if unknown:
            problems.append(f"unknown snapshot policies: {', '.join(unknown)}; known: {', '.join(known)}")
    force = params.get("force")
    if force not in (None, True, False):
        problems.append(f"force must be true, false or empty, not {force!r}")
    if problems:
        raise RequestError("; ".join(problems))
    chosen = {name: loaded.snapshot_policy(name).model_dump(mode="json") for name in names}
    return Request(policies=chosen, now=str(utc_iso(now)), run_key=run_key, force=force is True, dry_run=dry_run,
                   wait=wait, interval=interval)


# ---- records -------------------------------------------------------------------------------------
def resource_record(target: Target, resource: Resource) -> ResourceRecord:
    """A tagged resource as the engine's record."""
    return ResourceRecord(
        cloud=target.cloud, target=target.name, account=target.account, region=resource.region,
        service=service_of(resource.resource_type), resource_type=resource.resource_type,
        resource_id=resource.resource_id, name=resource.name, tags=dict(resource.tags),
        attributes=dict(resource.attributes),
    )


def snapshot_record(target: Target, snap: Snapshot, reason: str) -> ResourceRecord:
    """One of our snapshots as the record a delete item is about."""
    return ResourceRecord(
        cloud=target.cloud, target=target.name, account=target.account, region=snap.region,
        service=service_of(snap.kind), resource_type=snap.kind, resource_id=snap.resource_id,
        name=snap.name or snap.snapshot_id, tags=dict(snap.tags),
        attributes={"snapshot_id": snap.snapshot_id, "status": snap.status, "reason": reason,
                    "point_time": utc_iso(snap.point_time), "source": snap.marks.source if snap.marks else None,
                    "policy": snap.marks.policy if snap.marks else None},
    )


# ---- find ----------------------------------------------------------------------------------------
def find_resources(
    request: Request, *, targets: TargetsConfig | None = None, capability: CapabilityFor = _capability,
) -> dict[str, list[ResourceRecord]]:
    """Per policy, the resources of its target that carry its tag (reads only)."""
    config = targets or load_targets()
    found: dict[str, list[ResourceRecord]] = {}
    for name in request.names:
        policy = request.policy(name)
        target = config.get(policy.target)
        resources = capability(target).tagged_resources(policy.tag_key, policy.tag_value, policy.resource_types)
        found[name] = [resource_record(target, r) for r in resources]
    return found


# ---- plan ----------------------------------------------------------------------------------------
Series = tuple[str, str]  # (source resource id, region)


@dataclass
class _PolicyPlan:
    """The items of one policy and what its report says about them."""

    items: list[Item] = field(default_factory=list)
    due: dict[str, str] = field(default_factory=dict)
    not_copied: list[dict[str, str]] = field(default_factory=list)
    retention: dict[str, Any] = field(default_factory=dict)
    #: Points this run adds to a series (a new snapshot, a new copy), and the item each depends on.
    adds: dict[Series, tuple[datetime, str]] = field(default_factory=dict)


def _ours_by_series(cap: Snapshots, policy: SnapshotPolicy, regions: Sequence[str]) -> dict[Series, list[Snapshot]]:
    kinds = [SNAPSHOT_KIND[t] for t in policy.resource_types]
    series: dict[Series, list[Snapshot]] = {}
    for region in regions:
        for snap in cap.ours(policy.name, region, kinds=kinds):
            if snap.marks is not None:
                series.setdefault((snap.marks.source, region), []).append(snap)
    return series


def _plan_resource(
    request: Request, policy: SnapshotPolicy, record: ResourceRecord, cap: Snapshots,
    series: Mapping[Series, list[Snapshot]], plan: _PolicyPlan,
) -> None:
    """The create (and copy) item of one tagged resource, and the points they add to its series."""
    now = request.moment
    home = series.get((record.resource_id, record.region), [])
    due = snapshot_due(policy, home, now, force=request.force)
    create = Item(step=step_id(CREATE, policy.name), record=record, labels={"policy": policy.name, "due": due.reason})
    plan.items.append(create)
    plan.due[record.resource_id] = due.reason
    if due.due:
        plan.adds[(record.resource_id, record.region)] = (now, create.id)
    region = policy.copy_to_region
    if not region:
        return
    refusal = cap.copy_refusal(record.resource_type)
    if refusal or record.region == region:
        why = refusal or f"it lives in {region}, the policy's copy region"
        plan.not_copied.append({"resource_id": record.resource_id, "name": record.name, "reason": why})
        return
    copy = Item(step=step_id(COPY, policy.name), record=record, labels={"policy": policy.name, "region": region},
                depends_on=(create.id,))
    plan.items.append(copy)
    usable = [s for s in home if s.status in ("available", "creating")]
    copies = series.get((record.resource_id, region), [])
    newest = usable[-1] if usable else None
    if due.due:
        plan.adds[(record.resource_id, region)] = (now, copy.id)
    elif newest is not None and newest.point_time is not None and not any(
        c.marks is not None and c.marks.copy_of == newest.snapshot_id for c in copies
    ):
        plan.adds[(record.resource_id, region)] = (newest.point_time, copy.id)


def _plan_retention(
    policy: SnapshotPolicy, target: Target, series: Mapping[Series, list[Snapshot]], plan: _PolicyPlan,
) -> None:
    """Delete items for our points the GFS set does not keep (each after its series' new point is made)."""
    for (source, region), snaps in sorted(series.items()):
        points = [Point(s.snapshot_id, s.point_time) for s in snaps if s.status != "failed" and s.point_time]
        added = plan.adds.get((source, region))
        if added:
            points.append(Point(NEW, added[0]))
        kept = keep(points, policy.retention)
        expired = []
        for snap in snaps:
            if snap.status in ("creating", "deleting") or (snap.status != "failed" and snap.snapshot_id in kept):
                continue
            reason = ("failed: never restorable" if snap.status == "failed" else
                      f"not kept by the retention ({_describe(policy)})")
            plan.items.append(Item(
                step=step_id(DELETE, policy.name), record=snapshot_record(target, snap, reason),
                labels={"policy": policy.name, "source": source, "reason": reason},
                depends_on=(added[1],) if added else (),
            ))
            expired.append(snap.snapshot_id)
        plan.retention[f"{source} @ {region}"] = {"kept": kept, "expired": expired}


def _describe(policy: SnapshotPolicy) -> str:
    rules = policy.retention.model_dump()
    return ", ".join(f"{rule} {count}" for rule, count in rules.items() if count)


def build_items(
    request: Request, found: Mapping[str, Sequence[ResourceRecord]], *, targets: TargetsConfig | None = None,
    capability: CapabilityFor = _capability,
) -> tuple[list[Item], dict[str, Any]]:
    """The run's items (creates, copies, deletes of every policy) and each policy's report data (reads only)."""
    config = targets or load_targets()
    items: list[Item] = []
    extra: dict[str, Any] = {}
    for name in request.names:
        policy = request.policy(name)
        target = config.get(policy.target)
        cap = capability(target)
        regions = sorted({*target.regions, *([policy.copy_to_region] if policy.copy_to_region else [])})
        series = _ours_by_series(cap, policy, regions)
        plan = _PolicyPlan()
        for record in found.get(name, []):
            _plan_resource(request, policy, record, cap, series, plan)
        _plan_retention(policy, target, series, plan)
        order = {CREATE: 0, COPY: 1, DELETE: 2}
        items += sorted(plan.items, key=lambda i: order[split_step(i.step)[0]])
        extra[name] = {
            "policy": request.policies[name], "resources": [r.resource_id for r in found.get(name, [])],
            "due": plan.due, "not_copied": plan.not_copied, "retention": plan.retention,
        }
    return items, {"policies": extra}


def resolver(request: Request, targets: TargetsConfig | None = None) -> StepCache:
    """The engine's step resolver: the step of each item, bound to its policy and the run's options."""
    def make(item: Item) -> Any:
        base, policy = split_step(item.step)
        return STEPS[base](request.options(policy), targets)

    return StepCache(make)


def plan(
    request: Request, found: Mapping[str, Sequence[ResourceRecord]], *, targets: TargetsConfig | None = None,
    audit: Any = None, capability: CapabilityFor = _capability,
) -> ChangeSet:
    """Build the items and plan each (reads only; a dry run runs it for real)."""
    items, extra = build_items(request, found, targets=targets, capability=capability)
    planned = engine.plan_items(items, resolver(request, targets), audit=audit)
    return ChangeSet(request=request.to_dict(), items=tuple(planned), dry_run=request.dry_run,
                     reason=f"snapshot policies {', '.join(request.names)}", extra=extra)


def approver(request: Request) -> str:
    """Who approved the changes of a run: the reviewed policies (no human at run time)."""
    return "policy:" + ",".join(request.names)


def apply(
    change_set: ChangeSet, *, ledger: Ledger, ledger_key: str, holder: str, audit: Any = None,
    targets: TargetsConfig | None = None,
) -> ChangeSet:
    """Apply the planned changes in dependency order under :data:`RATE`, each recorded in the ledger."""
    if change_set.dry_run:
        raise RequestError("a dry run never applies anything")
    request = Request.from_dict(change_set.request)
    items = engine.apply_items(change_set.items, resolver(request, targets), rate=RATE, ledger=ledger,
                               ledger_key=ledger_key, holder=holder, audit=audit)
    return replace(change_set, items=tuple(items), approver=approver(request))


def verify(change_set: ChangeSet, *, audit: Any = None, targets: TargetsConfig | None = None) -> ChangeSet:
    """Re-read every item: snapshots and copies available, expired snapshots gone (bounded waits)."""
    request = Request.from_dict(change_set.request)
    return change_set.with_items(engine.verify_items(change_set.items, resolver(request, targets), audit=audit))


# ---- reports -------------------------------------------------------------------------------------
def report_path(policy: str, run_id: str, base: DataPath | None = None) -> DataPath:
    """``<data>/backup/snapshots/<policy>/runs/<run id>.json``."""
    return (base or data_root()) / "backup" / "snapshots" / safe_segment(policy) / "runs" / f"{safe_segment(run_id)}.json"


def problems(items: Sequence[Item]) -> list[str]:
    """One line per item that failed, was not attempted or is not as wanted afterwards."""
    lines = []
    for i in items:
        where = f"{i.resource_id} ({i.step})"
        if i.plan_error:
            lines.append(f"{where}: plan failed: {i.plan_error}")
        elif i.apply_error:
            lines.append(f"{where}: apply failed: {i.apply_error}")
        elif i.outcome == "not_attempted":
            lines.append(f"{where}: not attempted: {i.note}")
        elif i.verified is False:
            lines.append(f"{where}: not as wanted afterwards: {i.verify_error}")
    return lines


def _outcomes(items: Sequence[Item]) -> dict[str, list[dict[str, Any]]]:
    """What the run made and removed, read from what apply read back."""
    made: dict[str, list[dict[str, Any]]] = {"created": [], "copied": [], "deleted": []}
    for item in items:
        if item.outcome != "changed" or item.applied is None:
            continue
        base = split_step(item.step)[0]
        after = item.applied.after or {}
        if base == CREATE:
            made["created"].append({"resource_id": item.resource_id, "snapshot": after.get("snapshot")})
        elif base == COPY:
            made["copied"].append({"resource_id": item.resource_id, "copy_of": after.get("copy_of"),
                                   "copy": after.get("copy"), "region": after.get("copy_region")})
        else:
            made["deleted"].append({"snapshot": item.record.attributes.get("snapshot_id"),
                                    "region": item.record.region, "reason": item.record.attributes.get("reason")})
    return made


def applies(change_set: ChangeSet) -> bool:
    """The run takes the apply path: not a dry run, and something to change."""
    return not change_set.dry_run and bool(changes(change_set.items))


def write_reports(
    change_set: ChangeSet, *, run_id: str, final: bool, unfinished: bool = False, base: DataPath | None = None,
) -> dict[str, Any]:
    """One result per policy; returns ``{"paths": {policy: path}, "problems": [...], "statuses": {...}}``.

    ``final``: the apply path's report (statuses ``backed_up`` / ``up_to_date`` / ``failed``; ``unfinished``:
    apply or verify did not finish, so every policy is ``failed``); else the plan's (``dry_run`` / ``up_to_date``
    / ``plan_failed``).
    """
    request = Request.from_dict(change_set.request)
    paths: dict[str, str] = {}
    statuses: dict[str, str] = {}
    all_problems: list[str] = []
    for name in request.names:
        items = [i for i in change_set.items if split_step(i.step)[1] == name]
        bad = problems(items) if final else [f"{i.resource_id} ({i.step}): {i.plan_error}" for i in plan_errors(items)]
        if bad or unfinished:
            status = "failed" if final else "plan_failed"
        elif final:
            status = WORDING.done_status if changes(items) else WORDING.nothing_status
        else:
            status = "dry_run" if change_set.dry_run else WORDING.nothing_status
        extra = dict(change_set.extra.get("policies", {}).get(name, {}))
        extra["snapshots"] = _outcomes(items)
        result = summarise(items, WORDING, status=status, run_id=run_id, dry_run=change_set.dry_run,
                           request={**change_set.request, "policies": {name: request.policies[name]}},
                           reason=change_set.reason, approver=change_set.approver, runbook=RUNBOOK, extra=extra)
        path = report_path(name, run_id, base)
        atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
        paths[name], statuses[name] = str(path), status
        all_problems += [f"[{name}] {line}" for line in bad]
    return {"paths": paths, "statuses": statuses, "problems": all_problems}


# ---- the task bodies (the DAG's tasks are one call each) -----------------------------------------
def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _audit(context: Mapping[str, Any], *, dry_run: bool, who: str | None = None) -> Any:
    from include.changes.runbook import audit_context

    return audit_context(context, dry_run=dry_run, approver=who)


def select_task(context: Mapping[str, Any]) -> dict[str, Any]:
    """``select_policies``: refuse unknown parameters and policies (no retry), fix the run's policies and clock."""
    from include.changes.runbook import ledger_key
    from include.params import check_conf, resolve_dry_run

    check_conf(context)
    try:
        request = select(context.get("params") or {}, dry_run=resolve_dry_run(context), run_key=ledger_key(context),
                         now=datetime.now(UTC))
    except RequestError as exc:
        raise _fail(str(exc)) from None
    mode = "dry run (nothing changes)" if request.dry_run else "applying"
    print(f"{mode}; policies: {', '.join(request.names)}; force: {request.force}; clock {request.now}; "
          f"ledger key {request.run_key}")
    return request.to_dict()


def find_task(selected: Mapping[str, Any]) -> dict[str, Any]:
    """``find_tagged_resources``: per policy, the resources that carry its tag."""
    request = Request.from_dict(selected)
    found = find_resources(request)
    for name, records in found.items():
        policy = request.policy(name)
        wanted = f"{policy.tag_key}={policy.tag_value}" if policy.tag_value is not None else policy.tag_key
        print(f"{name}: {len(records)} resource(s) tagged {wanted} on {policy.target}")
        for record in records:
            print(f"  {record.resource_type} {record.name} ({record.region}) {record.resource_id}")
    return {"request": request.to_dict(), "resources": {n: [r.to_dict() for r in rs] for n, rs in found.items()}}


def plan_task(context: Mapping[str, Any], found: Mapping[str, Any]) -> dict[str, Any]:
    """``plan_snapshots``: due snapshots, copies and expired snapshots of ours, each planned (reads only)."""
    request = Request.from_dict(found["request"])
    records = {name: [ResourceRecord.from_dict(r) for r in rs] for name, rs in found["resources"].items()}
    planned = plan(request, records, audit=_audit(context, dry_run=request.dry_run))
    for line in plan_lines(list(planned.items), WORDING):
        print(line)
    for name, data in planned.extra["policies"].items():
        for entry in data["not_copied"]:
            print(f"[{name}] {entry['name']}: not copied: {entry['reason']}")
    print(f"{len(changes(planned.items))} change(s) planned; "
          + ("dry run: nothing will change" if planned.dry_run else "applying them next"))
    return planned.to_dict()


def report_plan_task(context: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, Any]:
    """``report_plan``: the dry run's (or nothing-to-change) result per policy; fail on a plan error."""
    change_set = ChangeSet.from_dict(planned)
    written = write_reports(change_set, run_id=str(context["run_id"]), final=False)
    for name, path in written["paths"].items():
        print(f"{name}: {written['statuses'][name]}; result: {path}")
    if written["problems"]:
        raise _fail(f"{len(written['problems'])} item(s) could not be planned:\n" + "\n".join(written["problems"]))
    return written


def apply_task(context: Mapping[str, Any], planned: Mapping[str, Any]) -> dict[str, Any]:
    """``apply_snapshots``: apply under rate control and the ledger (the reviewed policy is the approval)."""
    from include.changes.runbook import holder, ledger_key

    change_set = ChangeSet.from_dict(planned)
    request = Request.from_dict(change_set.request)
    try:
        applied = apply(change_set, ledger=Ledger.from_connection(), ledger_key=ledger_key(context),
                        holder=holder(context), audit=_audit(context, dry_run=False, who=approver(request)))
    except RequestError as exc:
        raise _fail(str(exc)) from None
    for item in applied.items:
        detail = item.apply_error or item.note
        print(f"{item.outcome}: {item.step} {item.resource_id}" + (f": {detail}" if detail else ""))
    return applied.to_dict()


def verify_task(context: Mapping[str, Any], applied: Mapping[str, Any]) -> dict[str, Any]:
    """``verify_snapshots``: every snapshot and copy available, every expired snapshot gone (bounded waits)."""
    change_set = ChangeSet.from_dict(applied)
    request = Request.from_dict(change_set.request)
    return verify(change_set, audit=_audit(context, dry_run=False, who=approver(request))).to_dict()


def report_task(
    context: Mapping[str, Any], *, planned: Mapping[str, Any] | None, applied: Mapping[str, Any] | None,
    verified: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """``report``: one result per policy; fail listing every failed, not attempted or unverified item."""
    from airflow.sdk.exceptions import AirflowSkipException

    if planned is None:
        raise _fail("the plan task left no plan")
    if not applies(ChangeSet.from_dict(planned)):
        raise AirflowSkipException("dry run or nothing to change: report_plan wrote the results")
    latest = verified or applied or planned
    change_set = ChangeSet.from_dict(latest)
    written = write_reports(change_set, run_id=str(context["run_id"]), final=True, unfinished=verified is None)
    for name, path in written["paths"].items():
        print(f"{name}: {written['statuses'][name]}; result: {path}")
    if verified is None:
        step = "verify_snapshots" if applied is not None else "apply_snapshots"
        raise _fail(f"{step} did not finish: see its log (changes made so far are in the audit trail and the "
                    "ledger; clearing the task resumes under the same key and never repeats a completed change)")
    if written["problems"]:
        raise _fail(f"{len(written['problems'])} item(s) failed, were not attempted or are not as wanted:\n"
                    + "\n".join(written["problems"]))
    return written
