"""One backup run of one object-store policy, start to end, and the ``backup_object_stores`` task bodies.

:func:`back_up` is the whole run (what the DAG's mapped task calls, and what tests and the restore drill
call to make a point in time)::

    from include.backup.policies import load_policies
    from include.backup.runner import back_up

    report = back_up(load_policies().get("gcp-app-data-to-azure"), run_id="manual__1", dry_run=False)
    report["status"], report["point_id"], report["totals"]

Steps of a real run, holding the policy's lease in the change ledger (``backup:<policy>``) so that two runs
of one policy, and a run and a prune, never overlap:

1. read the newest readable point (the previous manifest) and list the source;
2. copy what is new or changed (:mod:`include.backup.copier`), verified at the destination;
3. if every object verified: build the manifest, check its structure (:func:`include.backup.manifest.structure_problems`;
   with ``validate`` and not ``defer_validation`` also great-expectations, :mod:`include.backup.validation`), and
   only if it holds, write it (the last write). The runbook defers great-expectations to its ``validate_points``
   task (:func:`validate_point`), so that the copying process never imports it;
4. prune by retention (:mod:`include.backup.retention`), each deletion audited;
5. write the run report and a history line (:mod:`include.backup.report`); a failed run raises
   :class:`BackupFailed` after writing them.

A dry run lists, compares and plans for real (what would be copied, what retention would delete) and writes
nothing but its report.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from include.audit import AuditContext, write_audit
from include.backup.copier import (
    Copier,
    CopyPlan,
    Outcome,
    Place,
    brief_error,
    copy_all,
    list_source,
    plan_copy,
    reused_entry,
)
from include.backup.manifest import (
    Manifest,
    ManifestEntry,
    list_points,
    point_time,
    read_manifest,
    structure_problems,
    write_manifest,
    write_object,
)
from include.backup.policies import BackupPolicy, Location
from include.backup.report import (
    REPORT_FORMAT,
    HistoryLine,
    append_history,
    read_listing,
    read_run_report,
    render_history_html,
    write_listing,
    write_run_report,
)
from include.backup.retention import prune
from include.backup.schedule import Due, is_due
from include.capabilities.object_store import ObjectInfo, ObjectLock, ObjectStore
from include.targets import TargetsConfig, load_targets

log = logging.getLogger(__name__)

RUNBOOK = "backup_object_stores"
#: Dry-run reports list at most this many objects to copy (the totals count all of them).
MAX_PLAN_LINES = 1000
#: A warning when the source lists fewer than this share of the previous point's objects.
SHRINK_WARNING = 0.5
#: Immutable policies lock new blobs for this many times their ``days`` (see :func:`object_lock`).
LOCK_HEADROOM = 1.5

_AZURE_BLOBS = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
#: What the connections of a policy need, by role and cloud (style rule 7). kms:* only for SSE-KMS buckets.
PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "source": {
        "aws": ("s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"),
        "gcp": ("storage.objects.list", "storage.objects.get"),
        "azure": (f"{_AZURE_BLOBS}/read",),
    },
    "destination": {
        "aws": ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject",
                "kms:GenerateDataKey", "kms:Decrypt"),
        "gcp": ("storage.objects.list", "storage.objects.get", "storage.objects.create", "storage.objects.delete"),
        "azure": (f"{_AZURE_BLOBS}/read", f"{_AZURE_BLOBS}/write", f"{_AZURE_BLOBS}/delete"),
    },
    "immutability": {
        "aws": ("s3:PutObjectRetention", "s3:GetObjectRetention", "s3:GetBucketObjectLockConfiguration"),
    },
}


class BackupFailed(RuntimeError):
    """A run of a policy did not produce a complete, verified point in time (its report says why)."""

    def __init__(self, message: str, report: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.report = dict(report)


class BackupConfigError(ValueError):
    """The policy cannot run as configured (e.g. immutability on a bucket without Object Lock): retrying won't help."""


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---- where a policy's data is ---------------------------------------------------------------------------------
def _place(location: Location, targets: TargetsConfig) -> Place:
    # capability(), not the object_store() shortcut: once include.capabilities.object_store is imported, the
    # package attribute of that name is the submodule.
    from include.capabilities import capability

    target = targets.get(location.target)
    # S3 clients are regional; the other stores are not.
    kwargs = {"region": location.region} if target.cloud == "aws" and location.region else {}
    store: ObjectStore = capability("object_store", target, **kwargs)
    return Place(store, location.container, location.prefix, location.describe())


def places(policy: BackupPolicy, targets: TargetsConfig | None = None) -> tuple[Place, Place]:
    """The policy's source and backup store, each bound to its target's object store."""
    config = targets or load_targets()
    return _place(policy.source, config), _place(policy.destination, config)


def backup_store(policy: BackupPolicy, targets: TargetsConfig | None = None) -> Place:
    """The policy's backup store only (what a restore reads)."""
    return _place(policy.destination, targets or load_targets())


def newest_point(place: Place) -> str | None:
    points = list_points(place.store, place.container, place.prefix)
    return points[-1] if points else None


def due_state(policy: BackupPolicy, place: Place, now: datetime) -> Due:
    """Whether the policy's schedule fired since its newest point."""
    newest = newest_point(place)
    return is_due(policy.schedule, point_time(newest) if newest else None, now)


def previous_manifest(place: Place) -> tuple[Manifest | None, list[str]]:
    """The newest point that can be read (and warnings for newer ones that cannot)."""
    warnings: list[str] = []
    for point in reversed(list_points(place.store, place.container, place.prefix)):
        try:
            return read_manifest(place.store, place.container, place.prefix, point), warnings
        except Exception as exc:
            warnings.append(f"point {point} cannot be read, compared with an older one instead: {brief_error(exc)}")
    return None, warnings


def object_lock(policy: BackupPolicy, started: datetime) -> ObjectLock | None:
    """The S3 Object Lock retention that blobs and manifests of a run get (None without immutability).

    ``LOCK_HEADROOM`` x the policy's days: a later point that reuses a blob needs it locked ``days`` past its own
    time, and the headroom lets it extend reused blobs only every half period instead of on every run.
    """
    if policy.immutability is None:
        return None
    until = started + timedelta(days=policy.immutability.days) * LOCK_HEADROOM
    if policy.immutability.mode == "compliance":
        return ObjectLock(mode="COMPLIANCE", retain_until=until)
    return ObjectLock(mode="GOVERNANCE", retain_until=until)


def extend_locks(run: Run, plan: CopyPlan, outcomes: list[Outcome], previous: Manifest | None) -> str | None:
    """Keep every blob the new point names locked at least ``days`` after the point; return the point's lock end.

    Blobs written by this run carry its lock. A deduplicated blob may be older: its lock is extended. Reused
    blobs carry at least the previous point's ``locked_until``; when that ends less than ``days`` after this
    point, they are extended too (so about every ``(LOCK_HEADROOM - 1) x days``, not every run).
    """
    lock = object_lock(run.policy, plan.started_at)
    if lock is None or run.policy.immutability is None:
        return None
    needed = plan.started_at + timedelta(days=run.policy.immutability.days)
    s3: Any = run.destination.store  # S3ObjectStore.extend_lock: not part of the ObjectStore protocol
    extend: Callable[[str, str, ObjectLock], ObjectLock] = s3.extend_lock
    recorded = (previous.stats.get("locked_until") if previous else None) or ""
    previous_until = datetime.fromisoformat(recorded.replace("Z", "+00:00")) if recorded else None
    blobs = {o.entry.blob for o in outcomes if o.status == "deduplicated" and o.entry is not None}
    floor = lock.retain_until
    reused = {item.previous.blob for item in plan.to_reuse if item.previous is not None}
    if previous_until is not None and previous_until >= needed:
        floor = min(floor, previous_until)
    else:
        blobs |= reused
    with ThreadPoolExecutor(max_workers=run.policy.concurrency, thread_name_prefix="backup-lock") as pool:
        list(pool.map(lambda blob: extend(run.destination.container, blob, lock), sorted(blobs)))
    log.info("%s: extended the Object Lock of %d reused blobs to %s", run.policy.name, len(blobs), lock.retain_until)
    return _iso(floor)


def check_immutability(policy: BackupPolicy, destination: Place) -> None:
    """An immutable policy needs a destination bucket with Object Lock enabled; say so before copying."""
    if policy.immutability is None:
        return
    probe: Callable[[str], bool] | None = getattr(destination.store, "object_lock_enabled", None)
    if probe is None:
        raise BackupConfigError(f"policy {policy.name}: immutability needs an S3 destination with Object Lock; "
                                f"{destination.label} cannot hold locked objects")
    if not probe(destination.container):
        raise BackupConfigError(
            f"policy {policy.name}: bucket {destination.container} does not have S3 Object Lock enabled (it can only "
            "be enabled when the bucket is created: create_bucket(..., ObjectLockEnabledForBucket=True))"
        )


# ---- one run ------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What one run of one policy is about (the parts every step needs)."""

    policy: BackupPolicy
    run_id: str
    dry_run: bool
    source: Place
    destination: Place
    audit: AuditContext
    clock: Callable[[], datetime]
    base: Path | None = None

    def record(self, **fields: Any) -> None:
        write_audit(self.audit.record(**fields), self.base)


def _totals(plan: CopyPlan | None, outcomes: list[Outcome]) -> dict[str, int]:
    by = {status: [o for o in outcomes if o.status == status]
          for status in ("copied", "deduplicated", "failed", "not_attempted")}
    return {
        "listed": len(plan.listed) if plan else 0,
        "reused": len(plan.to_reuse) if plan else 0,
        "to_copy": len(plan.to_copy) if plan else 0,
        "copied": len(by["copied"]),
        "deduplicated": len(by["deduplicated"]),
        "failed": len(by["failed"]),
        "not_attempted": len(by["not_attempted"]),
        "bytes_copied": sum(o.bytes_copied for o in outcomes),
        "bytes_read": sum(o.bytes_read for o in outcomes),
        "bytes_to_copy": plan.bytes_to_copy if plan else 0,
        "bytes_total": plan.bytes_total if plan else 0,
    }


def _manifest(run: Run, plan: CopyPlan, outcomes: list[Outcome], point_id: str, stats: dict[str, Any]) -> Manifest:
    copied = {o.key: o.entry for o in outcomes if o.entry is not None}
    entries: list[ManifestEntry] = []
    for item in plan.items:
        if item.action == "reuse" and item.previous is not None:
            entries.append(reused_entry(item.info, item.previous))
        else:
            entry = copied.get(item.info.key)
            if entry is None:  # the caller writes no manifest unless every copy verified
                raise AssertionError(f"no verified copy of {item.info.key}")
            entries.append(entry)
    return Manifest(
        policy=run.policy.name, point_id=point_id, run_id=run.run_id, started_at=_iso(plan.started_at),
        finished_at=_iso(run.clock()), source=run.policy.source.model_dump(),
        destination=run.policy.destination.model_dump(), entries=tuple(sorted(entries, key=lambda e: e.key)),
        stats=stats,
    )


def rpo_status(policy: BackupPolicy, place: Place, now: datetime, written: Manifest | None = None) -> dict[str, Any]:
    """Age of the newest restorable point (``written``, else the newest in the store) against the policy's RPO."""
    newest: str | None
    if written is not None:
        newest, taken = written.point_id, datetime.fromisoformat(written.started_at.replace("Z", "+00:00"))
    else:
        try:
            newest = newest_point(place)
        except Exception as exc:
            return {"objective_seconds": policy.rpo.total_seconds(), "newest_point": None, "age_seconds": None,
                    "breached": True, "error": f"the backup store cannot be listed: {brief_error(exc)}"}
        taken = point_time(newest) if newest else now
    age = (now - taken).total_seconds() if newest else None
    return {
        "objective_seconds": policy.rpo.total_seconds(), "newest_point": newest, "age_seconds": age,
        "breached": age is None or age > policy.rpo.total_seconds(),
    }


def _copy_phase(run: Run, lease: Any, progress: Callable[[Outcome], None] | None) -> dict[str, Any]:
    """List, compare, copy and verify; return the parts of the report (and the plan and outcomes)."""
    # The previous point is read while the first page of the source is listed (both mostly wait on a store), then
    # each object is compared with it as the listing streams: the listing of a large prefix is the longest step
    # of an unchanged run (10,000 unchanged objects from moto: listing ~1.9 s; reading the previous manifest
    # ~0.1 s and comparing ~0.03 s, both within it).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-previous") as pool:
        reading = pool.submit(previous_manifest, run.destination)
        started = run.clock()
        listing = list_source(run.source)
        try:
            first = next(listing, None)
            previous, warnings = reading.result()
        except BaseException:
            getattr(listing, "close", lambda: None)()  # stops a store's page prefetching now, not at garbage collection
            raise
    plan = plan_copy(itertools.chain([first] if first is not None else [], listing),
                     previous.by_key if previous else {}, started_at=started,
                     previous_point=previous.point_id if previous else None)
    log.info("%s: %d objects listed, %d unchanged, %d to copy (%d bytes)", run.policy.name, len(plan.listed),
             len(plan.to_reuse), len(plan.to_copy), plan.bytes_to_copy)
    if previous is not None and len(plan.listed) < len(previous.entries) * SHRINK_WARNING:
        # Not an error (deleting data is allowed), but worth a look: the older points still hold what went.
        warnings.append(f"the source shrank from {len(previous.entries)} objects (point {previous.point_id}) to "
                        f"{len(plan.listed)}; the older points keep the objects that are gone")
    outcomes: list[Outcome] = []
    copier: Copier | None = None
    if not run.dry_run:
        copier = Copier(run.source, run.destination, run.policy.name, lock=object_lock(run.policy, started))
        if plan.to_copy:
            copier.index_blobs()
        outcomes = copy_all(
            copier, [item.info for item in plan.to_copy], concurrency=run.policy.concurrency,
            should_stop=(lambda: lease.lost) if lease is not None else (lambda: None), progress=progress,
        )
    # The copier's index of the store's blobs (listed before copying, plus what it wrote): retention sweeps it
    # instead of listing every blob a second time.
    blobs = copier.blobs if copier is not None else None
    return {"plan": plan, "outcomes": outcomes, "warnings": warnings, "previous": previous, "blobs": blobs}


def _finish_real(run: Run, report: dict[str, Any], phase: Mapping[str, Any], lease: Any,
                 validate: bool, defer_validation: bool = False) -> Manifest | None:
    """Validate and write the manifest when every object verified, then prune. Fills ``report``."""
    from include.backup.manifest import new_point_id

    plan: CopyPlan = phase["plan"]
    outcomes: list[Outcome] = phase["outcomes"]
    failures = [o for o in outcomes if o.status in ("failed", "not_attempted")]
    if failures:
        report["errors"].append(f"{len(failures)} of {len(plan.to_copy)} objects were not backed up: no point was "
                                "written (the verified blobs stay and the next run reuses them)")
        return None
    point_id = new_point_id(plan.started_at, run.run_id)
    locked_until = extend_locks(run, plan, outcomes, phase["previous"])
    stats = {**report["totals"], "previous_point": plan.previous_point, "locked_until": locked_until,
             "seconds": round((run.clock() - plan.started_at).total_seconds(), 3)}
    manifest = _manifest(run, plan, outcomes, point_id, stats)
    listed_keys = [info.key for info in plan.listed]
    # The same structural rules great-expectations checks, in plain Python (no GX import in the copying process):
    # a manifest that breaks one is never written, whether GX runs here, later in its own task, or not at all.
    problems = structure_problems(manifest, listed_keys, run.destination.prefix)
    if problems:
        report["errors"].append("the manifest is malformed, it was not written: " + "; ".join(problems))
        return None
    if validate and not defer_validation:
        from include.backup.validation import validate_manifest

        checked = validate_manifest(manifest, rpo=run.policy.rpo, now=run.clock(),
                                    listed_keys=listed_keys, prefix=run.destination.prefix)
        report["validation"] = checked.to_dict()
        if not checked.structural_success:
            report["errors"].append("the manifest failed validation, it was not written: " + "; ".join(checked.failed()))
            return None
    if lease is not None and lease.lost:
        report["errors"].append(f"not writing the manifest: {lease.lost}")
        return None
    key = write_manifest(run.destination.store, run.destination.container, run.destination.prefix, manifest,
                         lock=object_lock(run.policy, plan.started_at))
    report["point_id"], report["manifest"] = point_id, key
    if validate and defer_validation:
        # great-expectations runs in the runbook's next task (validate_points), on the manifest as stored and this
        # listing: the copying process never imports it. Until then the point is written but not yet validated.
        write_listing(run.policy.name, run.run_id, point_id, listed_keys, run.base)
        report["validation_pending"] = True
    run.record(step="backup", action="write backup point", outcome="changed", resource=run.destination.url(key),
               after={k: report["totals"][k] for k in ("listed", "copied", "deduplicated", "reused", "bytes_copied")})
    _prune(run, report, manifest, lease, previous=phase["previous"], blobs=phase["blobs"])
    return manifest


def _stored_blobs(report: Mapping[str, Any]) -> bool:
    """Whether this run wrote or touched blobs (copied, deduplicated onto, or failed part-way)."""
    totals = report["totals"]
    return bool(totals["copied"] or totals["deduplicated"] or totals["failed"] or totals["not_attempted"])


def _prune(run: Run, report: dict[str, Any], manifest: Manifest | None, lease: Any,
           previous: Manifest | None = None, blobs: Mapping[str, ObjectInfo] | None = None) -> None:
    """Retention after a run; ``manifest`` (written now) and ``previous`` (read at the start, under the same lease:
    manifests are never rewritten) are not read again, nor are the store's blobs listed again when the run's
    copier indexed them (``blobs``)."""
    if lease is not None and lease.lost:
        report["errors"].append(f"not pruning: {lease.lost}")
        return

    def deleted(kind: str, key: str, size: int) -> None:
        action = "delete expired point manifest" if kind == "point" else "delete unreferenced blob"
        run.record(step="prune", action=action, outcome="changed", resource=run.destination.url(key),
                   before={"size": size} if kind == "blob" else None)

    try:
        result = prune(
            run.destination, run.policy.retention, dry_run=run.dry_run,
            known={m.point_id: m for m in (previous, manifest) if m is not None},
            extra_point=report["point_id"] if run.dry_run else None, on_delete=None if run.dry_run else deleted,
            sweep_blobs=run.dry_run or _stored_blobs(report), blobs=blobs.values() if blobs is not None else None,
        )
    except Exception as exc:
        report["errors"].append(f"retention failed part-way (what was deleted is audited): {brief_error(exc)}")
        return
    report["retention"] = result.to_dict()
    report["errors"].extend(f"retention: {e}" for e in result.errors)


def back_up(
    policy: BackupPolicy,
    *,
    run_id: str,
    dry_run: bool,
    actor: str = "api",
    targets: TargetsConfig | None = None,
    ledger: Any = None,
    holder: str | None = None,
    stores: tuple[Place, Place] | None = None,
    clock: Callable[[], datetime] = utc_now,
    progress: Callable[[Outcome], None] | None = None,
    validate: bool = True,
    defer_validation: bool = False,
    params: Mapping[str, Any] | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Run one backup of ``policy`` (or plan it: ``dry_run``); return its report (also written to disk).

    ``ledger``: the change ledger holding the policy's lease (default: the ``runbooks_state`` connection);
    ``holder``: who holds it (default ``backup_object_stores:<run id>``: a retry of the same run takes it back);
    ``stores``: (source, destination) places to use instead of the policy's targets (tests);
    ``progress``: called with each object's outcome as it completes;
    ``validate``: check the manifest with great-expectations before writing it (``False``: only the plain-Python
    structure check of :func:`include.backup.manifest.structure_problems`, which always runs);
    ``defer_validation``: write the manifest after the structure check and leave great-expectations to
    :func:`validate_point` in another process (the runbook's ``validate_points`` task): the report says
    ``validation_pending`` and the history line is written by :func:`validate_point`, with the verdict.
    Raises :class:`BackupFailed` (after writing the report and history) when the run did not write a complete,
    verified point; :class:`BackupConfigError` when the policy cannot run as configured.
    """
    begun = time.monotonic()
    source, destination = stores or places(policy, targets)
    run = Run(policy, run_id, dry_run, source, destination, clock=clock, base=base,
              audit=AuditContext(runbook=RUNBOOK, run_id=run_id, actor=actor, dry_run=dry_run,
                                 params={"policy": policy.name, **dict(params or {})}))
    report: dict[str, Any] = {
        "format": REPORT_FORMAT, "runbook": RUNBOOK, "policy": policy.name, "run_id": run_id, "dry_run": dry_run,
        "source": source.label, "destination": destination.label, "started_at": _iso(clock()),
        "status": "planned" if dry_run else "failed", "point_id": None, "manifest": None, "previous_point": None,
        "totals": _totals(None, []), "plan": [], "failures": [], "errors": [], "warnings": [],
        "validation": None, "retention": None, "rpo": None,
        "immutability": policy.immutability.model_dump() if policy.immutability else None,
    }
    written: Manifest | None = None
    refused: BackupConfigError | None = None
    try:
        if not dry_run:
            check_immutability(policy, destination)
        if dry_run:
            _plan_only(run, report)
        else:
            from include.changes.ledger import Ledger

            with (ledger or Ledger.from_connection()).lease(f"backup:{policy.name}", holder or f"{RUNBOOK}:{run_id}") as lease:
                phase = _copy_phase(run, lease, progress)
                _fill(report, phase)
                written = _finish_real(run, report, phase, lease, validate, defer_validation)
    except BackupConfigError as exc:
        refused = exc
        report["errors"].append(str(exc))
    except Exception as exc:
        log.exception("%s: backup run failed", policy.name)
        report["errors"].append(brief_error(exc))
    report["finished_at"] = _iso(clock())
    report["seconds"] = round(time.monotonic() - begun, 3)
    report["rpo"] = rpo_status(policy, destination, clock(), written)
    if report["errors"]:
        report["status"] = "failed"  # a dry run that could not read or plan fails as well
    elif not dry_run:
        report["status"] = "succeeded" if written is not None else "failed"
    report["report"] = str(write_run_report(report, base))
    if not dry_run and not report.get("validation_pending"):
        _history(run.policy, run_id, report, base)
    step, action = ("plan", "plan backup point") if dry_run else ("backup", "write backup point")
    if report["status"] == "failed":
        run.record(step=step, action=action, outcome="failed", resource=destination.label,
                   error="; ".join(report["errors"])[:2000])
        if refused is not None:
            raise refused
        verb = "planning the backup" if dry_run else "backup"
        raise BackupFailed(f"{verb} of {policy.name} failed: " + "; ".join(report["errors"]), report)
    if dry_run:
        run.record(step=step, action=action, outcome="skipped", resource=destination.label,
                   after={k: report["totals"][k] for k in ("listed", "to_copy", "reused", "bytes_to_copy")})
    return report


def _fill(report: dict[str, Any], phase: Mapping[str, Any]) -> None:
    plan: CopyPlan = phase["plan"]
    outcomes: list[Outcome] = phase["outcomes"]
    report["previous_point"] = plan.previous_point
    report["warnings"].extend(phase["warnings"])
    report["totals"] = _totals(plan, outcomes)
    report["failures"] = [
        {"key": o.key, "status": o.status, "kind": o.kind, "error": o.error}
        for o in outcomes if o.status in ("failed", "not_attempted")
    ]


def _plan_only(run: Run, report: dict[str, Any]) -> None:
    """A dry run: every read and decision of a real run, no write."""
    from include.backup.manifest import new_point_id

    phase = _copy_phase(run, None, None)
    _fill(report, phase)
    plan: CopyPlan = phase["plan"]
    report["plan"] = [item.describe() for item in plan.to_copy[:MAX_PLAN_LINES]]
    if len(plan.to_copy) > MAX_PLAN_LINES:
        report["plan"].append(f"... and {len(plan.to_copy) - MAX_PLAN_LINES} more")
    report["point_id"] = new_point_id(plan.started_at, run.run_id)  # the point a real run would write
    _prune(run, report, None, None)


def _history(policy: BackupPolicy, run_id: str, report: Mapping[str, Any], base: Path | None) -> None:
    totals, rpo = report["totals"], report["rpo"] or {}
    validation = report.get("validation")
    append_history(HistoryLine(
        time=str(report["finished_at"]), policy=policy.name, run_id=run_id, status=str(report["status"]),
        point_id=report["point_id"] if report.get("manifest") else None, objects=totals["listed"],
        copied=totals["copied"], reused=totals["reused"], deduplicated=totals["deduplicated"],
        failed=totals["failed"] + totals["not_attempted"], bytes_copied=totals["bytes_copied"],
        bytes_total=totals["bytes_total"], seconds=float(report["seconds"]),
        rpo_age_seconds=rpo.get("age_seconds"), rpo_seconds=policy.rpo.total_seconds(),
        rpo_breached=bool(rpo.get("breached")), validation_success=validation["success"] if validation else None,
    ), base)
    try:
        render_history_html(policy.name, base)
    except Exception as exc:  # the page is a convenience; the history line is what counts
        log.warning("history page of %s not rendered: %s", policy.name, brief_error(exc))



# ---- great-expectations, after the copy, in its own task --------------------------------------------------------
def quarantine_key(prefix: str, point_id: str) -> str:
    """Where a point whose manifest failed validation is moved (outside ``points/``: never restored, listed, kept)."""
    return f"{prefix}quarantine/{point_id}.json"


def validate_point(
    policy: BackupPolicy,
    run_id: str,
    *,
    targets: TargetsConfig | None = None,
    destination: Place | None = None,
    ledger: Any = None,
    holder: str | None = None,
    clock: Callable[[], datetime] = utc_now,
    base: Path | None = None,
) -> dict[str, Any] | None:
    """Validate with great-expectations the point a deferred run (``back_up(..., defer_validation=True)``) wrote.

    Reads the run's report, the manifest as stored and the source listing the run recorded; puts the verdict into
    the report and appends the run's history line. Returns the updated report, or None when the run wrote no point
    awaiting validation (skipped, dry run, failed before its manifest, or already validated).

    A manifest that fails a structural check is moved out of ``points/`` to ``quarantine/`` (holding the policy's
    lease), so no restore, drill or due-check can take it for a point; the report then says ``failed`` and
    :class:`BackupFailed` is raised. Freshness alone is reported, not blocking (as in ``back_up``).
    """
    report = read_run_report(policy.name, run_id, base)
    if report is None or report.get("dry_run") or not report.get("validation_pending"):
        return None
    from include.backup.validation import validate_manifest

    place = destination or backup_store(policy, targets)
    point_id = str(report["point_id"])
    audit = AuditContext(runbook=RUNBOOK, run_id=run_id, actor="api", dry_run=False, params={"policy": policy.name})
    begun = time.monotonic()
    try:
        manifest = read_manifest(place.store, place.container, place.prefix, point_id)
        listed = read_listing(policy.name, run_id, point_id, base)
        checked = validate_manifest(manifest, rpo=policy.rpo, now=clock(), listed_keys=listed, prefix=place.prefix)
    except Exception as exc:
        # Not validated is not valid: the point stays (it passed the structure check before it was written), the
        # task fails loudly, the report keeps ``validation_pending`` (check_results counts it as a failure) and a
        # retry of the task validates again.
        raise BackupFailed(f"validation of {policy.name} point {point_id} failed: {brief_error(exc)}", report) from exc
    report["validation"] = checked.to_dict()
    report["validation_pending"] = False
    report["validation_seconds"] = round(time.monotonic() - begun, 3)
    if not checked.structural_success:
        failed = "; ".join(checked.failed())
        report["errors"].append(f"the manifest failed validation and was quarantined: {failed}")
        report["status"] = "failed"
        from include.changes.ledger import Ledger

        with (ledger or Ledger.from_connection()).lease(f"backup:{policy.name}", holder or f"{RUNBOOK}:{run_id}"):
            moved = quarantine_key(place.prefix, point_id)
            write_object(place.store, place.container, moved, [manifest.to_json().encode()],
                         metadata={"format": "runbooks.backup.quarantine/1"})
            place.store.delete(place.container, str(report["manifest"]))
        write_audit(audit.record(step="validate", action="quarantine invalid backup point", outcome="changed",
                                 resource=place.url(moved), error=failed[:2000]), base)
        report["manifest"], report["quarantined"] = None, moved
        report["rpo"] = rpo_status(policy, place, clock(), None)
    write_run_report(report, base)
    _history(policy, run_id, report, base)
    if report["status"] == "failed":
        raise BackupFailed(f"the manifest of {policy.name} point {point_id} failed validation: "
                           + "; ".join(report["errors"]), report)
    return report
