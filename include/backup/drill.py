"""Restore drills: prove on a schedule that the newest point of every backup policy restores, byte for byte.

The ``restore_drill`` runbook maps one task group over the policies; per policy:

1. **create_scratch** (an Airflow *setup* task): a new, unique prefix ``restore-drills/<run id>/<policy>/`` in
   a scratch bucket / container (default: the container of the policy's backup store, so in the backup
   store's cloud; or the location the ``scratch`` parameter names for the policy). It must be empty; a marker
   ``drill.json`` is written into it first, which proves write access before anything is restored.
2. **restore_newest_point**: the restore engine (:mod:`include.backup.restore`: plan, then apply under rate
   control with the blob hashed on the way) restores the policy's newest point under ``<prefix>data/``.
   Every object is new there, so nothing asks for approval. Measured: the **RPO** (drill start minus the
   point's "as of" time, against the policy's objective), the **restore duration** (plan + apply) and bytes/s.
3. **verify_checksums**: for 100% of the point's objects, the size and the MD5 the scratch cloud recorded
   must equal the manifest's; for ``hash_sample_percent`` of them (default 100: all) the restored bytes are
   read back and hashed as well. A mismatch, or a blob the restore refused as corrupted, fails the drill
   naming each object.
4. **remove_scratch** (an Airflow *teardown* task): deletes everything under the prefix and checks that the
   listing is empty. It runs whatever happened before, also after a failure.
5. **record_drills**: one line per policy per drill in ``data/backup/drills/history.jsonl`` and the page
   ``data/backup/drills/report.html`` (inline SVG charts of RPO and restore time per policy over time, no
   JavaScript); fails listing every failed drill, every RPO beyond its objective and any scratch left behind.

**Why a prefix, not a new bucket.** A prefix is removable through the object-store capability on every cloud
and emulator (list + delete). New buckets / containers would need bucket-level permissions, a name unique in
all of S3 / Cloud Storage, and the encryption / access settings an organisation enforces on new buckets;
the capability creates none. Caveats: in a *versioned* scratch container (S3, GCS) deleted objects remain as
noncurrent versions until the container's lifecycle expires them; an S3 backup store with Object Lock keeps
every version it receives, so a policy with ``immutability`` needs a ``scratch`` location elsewhere (the drill
refuses to write into it).

A dry run (by hand without ``dry_run: false``) resolves the newest point, checks that the scratch location is
usable and empty, plans the restore and checks that every blob the point needs is in the backup store with
the manifest's size and recorded MD5 (no bytes read, nothing written, no history line).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from include.audit import AuditContext, actor_from_context, write_audit
from include.backup.manifest import Manifest, read_manifest
from include.backup.policies import BackupPolicy, BackupPolicyError, load_policies
from include.backup.restore import (
    Destination,
    RestoreError,
    check_scratch,
    items_for,
    newest_or_selected,
    resolver,
    step_options,
    store_for,
)
from include.capabilities.object_store import ObjectStore, hash_stream
from include.changes import engine
from include.changes.rate import RateControl
from include.charts import line_chart
from include.clouds.errors import is_not_found
from include.fileio import append_line, atomic_write_text, read_lines
from include.paths import DataPath, data_root, safe_segment
from include.targets import TargetsConfig, TargetsError, load_targets

RUNBOOK = "restore_drill"
DRILL_PREFIX = "restore-drills/"
#: The form's ``scratch`` values: ``<target>:<container>[/<prefix>]`` (the drill adds its unique prefix).
SCRATCH_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}:[A-Za-z0-9][A-Za-z0-9._-]{2,62}(/.*)?$"
#: Mismatches kept per drill in XCom, the history and the failure message (the count is always exact).
MAX_LISTED = 200


class DrillError(RuntimeError):
    """A drill could not run as asked (no point to restore, a scratch location that cannot be used)."""


def drills_dir(base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / "backup" / "drills"


def history_path(base: DataPath | None = None) -> DataPath:
    return drills_dir(base) / "history.jsonl"


def report_path(base: DataPath | None = None) -> DataPath:
    return drills_dir(base) / "report.html"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the scratch location ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scratch:
    """A drill's own prefix: restored objects under ``<prefix>data/``, its marker at ``<prefix>drill.json``."""

    target: str
    container: str
    prefix: str  # ends with "/"; unique per drill run and policy
    region: str | None = None

    @property
    def data_prefix(self) -> str:
        return f"{self.prefix}data/"

    @property
    def marker(self) -> str:
        return f"{self.prefix}drill.json"

    def destination(self) -> Destination:
        return Destination(self.target, self.container, self.data_prefix, self.region)

    def describe(self) -> str:
        return f"{self.target}:{self.container}/{self.prefix}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scratch:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def scratch_for(policy: BackupPolicy, run_id: str, override: str | None, targets: TargetsConfig) -> Scratch:
    """The drill's scratch prefix for ``policy``: in ``override`` (``<target>:<container>[/<prefix>]``) when given,
    else in the backup store's own container; refused where restored objects could mix with the source or the
    store's data, or where S3 Object Lock would keep them."""
    unique = f"{DRILL_PREFIX}{safe_segment(run_id)[:120]}/{policy.name}/"
    if override:
        target_name, _, rest = override.partition(":")
        container, _, base = rest.partition("/")
        base = base if not base or base.endswith("/") else base + "/"
        try:
            target = targets.get(target_name)
        except TargetsError as exc:
            raise DrillError(f"scratch for {policy.name}: {exc}") from None
        scratch = Scratch(target.name, container, f"{base}{unique}")
    else:
        if policy.immutability is not None:
            raise DrillError(
                f"policy {policy.name} writes its backups with Object Lock ({policy.immutability.mode}, "
                f"{policy.immutability.days} days): a drill restored into that bucket could not be removed. Give "
                f"a scratch location for it: scratch = {{\"{policy.name}\": \"<target>:<container>/<prefix>\"}}"
            )
        store = policy.destination
        scratch = Scratch(store.target, store.container, unique, store.region)
    try:
        check_scratch(scratch.destination(), policy, what=f"scratch {scratch.describe()}")
    except RestoreError as exc:
        raise DrillError(str(exc)) from None
    return scratch


# ---- 0. which drills ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DrillSpec:
    """One policy's drill, as it travels to the mapped task group."""

    policy: str
    run_id: str
    dry_run: bool
    hash_sample_percent: int = 100
    scratch: dict[str, Any] | None = None
    problem: str | None = None  # why this drill cannot run (it fails at create_scratch, nothing is written)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrillSpec:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def plan_drills(
    *, run_id: str, dry_run: bool, policies: Sequence[str] | None = None, scratch: Mapping[str, str] | None = None,
    hash_sample_percent: int = 100, config: Any = None, targets: TargetsConfig | None = None,
) -> list[DrillSpec]:
    """One spec per selected policy (all when ``policies`` is empty). Unknown policy names, or a ``scratch``
    entry for a policy that is not drilled, are a :class:`RestoreError` listing the known ones."""
    config = config or load_policies()
    targets = targets or load_targets()
    known = [p.name for p in config.policies]
    wanted = list(dict.fromkeys(policies or known))
    unknown = [name for name in wanted if name not in known]
    stray = sorted(set(scratch or {}) - set(wanted))
    if unknown or stray:
        problems = [f"unknown polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}"] if unknown else []
        problems += [f"scratch names polic{'y' if len(stray) == 1 else 'ies'} not drilled: {', '.join(stray)}"] if stray else []
        raise RestoreError(f"{'; '.join(problems)}; known: {', '.join(known) or 'none'}")
    if not 0 <= hash_sample_percent <= 100:
        raise RestoreError(f"hash_sample_percent must be 0..100, not {hash_sample_percent}")
    specs = []
    for name in wanted:
        try:
            place = scratch_for(config.get(name), run_id, (scratch or {}).get(name), targets)
            specs.append(DrillSpec(name, run_id, dry_run, hash_sample_percent, scratch=place.to_dict()))
        except (DrillError, BackupPolicyError) as exc:
            specs.append(DrillSpec(name, run_id, dry_run, hash_sample_percent, problem=str(exc)))
    return specs


# ---- 1. setup: create the scratch location ------------------------------------------------------------------
def create_scratch(spec: DrillSpec, *, targets: TargetsConfig | None = None,
                   audit: AuditContext | None = None) -> dict[str, Any]:
    """Check the scratch prefix is empty and (unless a dry run) write the drill's marker into it."""
    if spec.problem or spec.scratch is None:
        raise DrillError(spec.problem or "no scratch location")
    scratch = Scratch.from_dict(spec.scratch)
    store = _store(scratch, targets)
    try:
        present = [info.key for info in store.list_objects(scratch.container, scratch.prefix)]
    except Exception as exc:
        if is_not_found(exc):
            raise DrillError(f"scratch {scratch.describe()}: the bucket / container does not exist") from None
        raise
    if present:
        raise DrillError(f"scratch {scratch.describe()} is not empty ({len(present)} objects, e.g. {present[0]}): "
                         "a drill only restores into a prefix of its own")
    if not spec.dry_run:
        marker = {"runbook": RUNBOOK, "run_id": spec.run_id, "policy": spec.policy, "created_at": _iso(_now())}
        store.write(scratch.container, scratch.marker, [json.dumps(marker).encode()])
        if audit is not None:
            write_audit(audit.record(step="setup", action="create scratch prefix", outcome="changed",
                                     resource=scratch.describe(), after={"marker": scratch.marker}))
    return {**scratch.to_dict(), "created": not spec.dry_run, "policy": spec.policy}


def _store(scratch: Scratch, targets: TargetsConfig | None) -> ObjectStore:
    return store_for((targets or load_targets()).get(scratch.target), scratch.region)


# ---- 2. restore the newest point ---------------------------------------------------------------------------
def restore_newest_point(
    spec: DrillSpec, scratch: Scratch, *, targets: TargetsConfig | None = None, config: Any = None,
    clock: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Restore the policy's newest point into the scratch prefix with the restore engine; measure RPO and time.

    Returns the drill's measurements and every object that could not be restored (``failures``). A policy
    without any point is a failed drill (its RPO is unbounded), not an error of the task.
    """
    targets = targets or load_targets()
    policy = (config or load_policies()).get(spec.policy)
    started = clock()
    result: dict[str, Any] = {
        "policy": policy.name, "run_id": spec.run_id, "dry_run": spec.dry_run, "started_at": _iso(started),
        "scratch": scratch.describe(), "rpo_objective_seconds": policy.rpo.total_seconds(), "point_id": None,
        "point_as_of": None, "rpo_seconds": None, "objects": 0, "bytes": 0, "restored_objects": 0,
        "restored_bytes": 0, "restore_seconds": 0.0, "bytes_per_second": None, "failures": [], "error": None,
    }
    backup = store_for(targets.get(policy.destination.target), policy.destination.region)
    try:
        manifest = newest_or_selected(backup, policy.destination, None)
    except ValueError as exc:  # ManifestError: no point yet, or an unreadable manifest
        result["error"] = str(exc)
        return result
    as_of = datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
    result.update(point_id=manifest.point_id, point_as_of=manifest.started_at, objects=len(manifest.entries),
                  bytes=manifest.total_bytes, rpo_seconds=round((started - as_of).total_seconds(), 3))
    items = items_for(manifest, scratch.destination(), targets.get(scratch.target))
    resolve = resolver(step_options(policy, manifest), targets)
    begun = time.monotonic()
    planned = engine.plan_items(items, resolve)
    if engine.needs_approval(planned, dry_run=False, rule=engine.destructive_changes):
        raise DrillError(f"scratch {scratch.describe()}: the restore would overwrite objects; a drill never does")
    if spec.dry_run:
        done = planned
        result["failures"] = _missing_blobs(backup, policy, manifest)
    else:
        rate = RateControl(str(policy.concurrency), "100%")  # every object is attempted: the drill lists all
        done = engine.apply_items(planned, resolve, rate=rate)
        result["failures"] = [{"key": i.labels.get("source_key", i.record.name), "problem": i.plan_error or
                               i.apply_error or i.note or i.outcome} for i in done if i.failed or
                              i.outcome == "not_attempted"]
    seconds = time.monotonic() - begun
    restored = [i for i in done if i.outcome == "changed"]
    restored_bytes = sum(int(i.record.attributes["size"]) for i in restored)
    result.update(restored_objects=len(restored), restored_bytes=restored_bytes, restore_seconds=round(seconds, 3),
                  bytes_per_second=round(restored_bytes / seconds, 1) if restored and seconds > 0 else None)
    result["failure_count"] = len(result["failures"])
    result["failures"] = result["failures"][:MAX_LISTED]
    return result


def _missing_blobs(backup: ObjectStore, policy: BackupPolicy, manifest: Manifest) -> list[dict[str, Any]]:
    """Entries whose blob is missing from the backup store or recorded with another size / MD5 (stat only)."""
    found: list[dict[str, Any]] = []
    seen: dict[str, str | None] = {}
    for entry in manifest.entries:
        if entry.blob not in seen:
            try:
                info = backup.stat(policy.destination.container, entry.blob)
                ok = info.size == entry.size and (info.md5 is None or info.md5 == entry.md5)
                seen[entry.blob] = None if ok else (f"blob {entry.blob} is recorded as {info.size} bytes md5 {info.md5}, "
                                                    f"the manifest says {entry.size} bytes md5 {entry.md5}")
            except KeyError:
                seen[entry.blob] = f"blob {entry.blob} is missing from the backup store"
        if seen[entry.blob]:
            found.append({"key": entry.key, "problem": seen[entry.blob]})
    return found


# ---- 3. verify every checksum ------------------------------------------------------------------------------
def in_sample(key: str, percent: int) -> bool:
    """A stable sample: the same keys for the same percentage, drill after drill (100 = all, 0 = none)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100 < percent


def verify_checksums(
    spec: DrillSpec, scratch: Scratch, restored: Mapping[str, Any], *, targets: TargetsConfig | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """Check 100% of the restored objects against the manifest (recorded size + MD5; the bytes of the sample
    hashed). Returns the drill's result with ``mismatches`` (each object and what is wrong) and ``success``."""
    result = dict(restored)
    mismatches: list[dict[str, Any]] = [dict(f) for f in restored.get("failures") or []]
    count = int(restored.get("failure_count") or len(mismatches))
    verified = hashed = hashed_bytes = 0
    begun = time.monotonic()
    if restored.get("point_id") and not spec.dry_run:
        targets = targets or load_targets()
        policy = (config or load_policies()).get(spec.policy)
        backup = store_for(targets.get(policy.destination.target), policy.destination.region)
        manifest = read_manifest(backup, policy.destination.container, policy.destination.prefix,
                                 str(restored["point_id"]))
        failed = {f["key"] for f in mismatches}
        store = _store(scratch, targets)
        for entry in manifest.entries:
            if entry.key in failed:
                continue  # already listed: the restore refused it (e.g. a corrupted blob)
            problem, bytes_hashed = _check_one(store, scratch, entry.key, entry.size, entry.md5,
                                               in_sample(entry.key, spec.hash_sample_percent))
            verified += problem is None
            hashed += bytes_hashed is not None
            hashed_bytes += bytes_hashed or 0
            if problem:
                count += 1
                if len(mismatches) < MAX_LISTED:
                    mismatches.append({"key": entry.key, "problem": problem})
    seconds = time.monotonic() - begun
    result.update(
        verified=verified, hashed=hashed, hashed_bytes=hashed_bytes, verify_seconds=round(seconds, 3),
        verified_bytes_per_second=round(hashed_bytes / seconds, 1) if hashed_bytes and seconds > 0 else None,
        mismatches=mismatches, mismatch_count=count,
    )
    result["success"] = bool(restored.get("point_id")) and not restored.get("error") and count == 0
    return result


def _check_one(store: ObjectStore, scratch: Scratch, key: str, size: int, md5: str,
               hash_bytes: bool) -> tuple[str | None, int | None]:
    """(what is wrong or None, bytes hashed or None) for one restored object."""
    location = f"{scratch.container}/{scratch.data_prefix}{key}"
    try:
        info = store.stat(scratch.container, f"{scratch.data_prefix}{key}")
    except KeyError:
        return f"missing at {location}", None
    if info.size != size:
        return f"size {info.size} at {location}, the manifest says {size}", None
    if info.md5 is not None and info.md5 != md5:
        return f"recorded md5 {info.md5} at {location}, the manifest says {md5}", None
    if not hash_bytes and info.md5 is None:
        hash_bytes = True  # no recorded MD5 to compare: the bytes must be hashed
    if not hash_bytes:
        return None, None
    digest, length = hash_stream(store.read(scratch.container, info.key, pin=info))
    if (digest, length) != (md5, size):
        return f"bytes hash to md5 {digest} ({length} bytes) at {location}, the manifest says {md5} ({size})", length
    return None, length


# ---- 4. teardown: remove the scratch location ---------------------------------------------------------------
def remove_scratch(scratch: Mapping[str, Any] | None, *, targets: TargetsConfig | None = None,
                   audit: AuditContext | None = None) -> dict[str, Any]:
    """Delete everything under the drill's prefix, then check the listing is empty (raises when it is not)."""
    if not scratch:
        return {"removed": 0, "scratch": None, "left": 0}
    place = Scratch.from_dict(scratch)
    store = _store(place, targets)
    removed = 0
    for info in list(store.list_objects(place.container, place.prefix)):
        store.delete(place.container, info.key)
        removed += 1
    left = [info.key for info in store.list_objects(place.container, place.prefix)]
    if audit is not None and removed:
        write_audit(audit.record(step="teardown", action="remove scratch prefix", outcome="changed",
                                 resource=place.describe(), before={"objects": removed}, after={"objects": len(left)}))
    if left:
        raise DrillError(f"scratch {place.describe()} still holds {len(left)} object(s) after the teardown, e.g. {left[0]}")
    return {"removed": removed, "scratch": place.describe(), "left": 0}


# ---- 5. history and report ---------------------------------------------------------------------------------
HISTORY_FIELDS = ("time", "run_id", "policy", "point_id", "rpo_seconds", "rpo_objective_seconds", "rpo_met",
                  "restore_seconds", "verify_seconds", "objects", "bytes", "bytes_per_second",
                  "verified_bytes_per_second", "hashed", "mismatches", "mismatched", "scratch_removed", "success",
                  "error")


def history_line(spec: DrillSpec, result: Mapping[str, Any] | None, teardown: Mapping[str, Any] | None,
                 at: datetime, scratch: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The drill's history line (also for a drill that never got as far as a result).

    ``scratch`` is what create_scratch returned (None: it created nothing, so nothing needs removing)."""
    data = dict(result or {})
    rpo, objective = data.get("rpo_seconds"), data.get("rpo_objective_seconds")
    if data.get("error") or spec.problem:
        error = data.get("error") or spec.problem
    elif not result:
        error = "the drill did not finish (scratch or restore): see its task logs"
    elif "success" not in data:
        error = "the verification did not finish: see the log of verify_checksums"
    else:
        error = None
    removed = bool(teardown) and int((teardown or {}).get("left", 1)) == 0
    created = bool(scratch and scratch.get("created"))
    line = {
        "time": _iso(at), "run_id": spec.run_id, "policy": spec.policy, "point_id": data.get("point_id"),
        "rpo_seconds": rpo, "rpo_objective_seconds": objective,
        "rpo_met": rpo is not None and objective is not None and rpo <= objective,
        "restore_seconds": data.get("restore_seconds"), "verify_seconds": data.get("verify_seconds"),
        "objects": data.get("objects", 0), "bytes": data.get("bytes", 0),
        "bytes_per_second": data.get("bytes_per_second"),
        "verified_bytes_per_second": data.get("verified_bytes_per_second"), "hashed": data.get("hashed", 0),
        "mismatches": int(data.get("mismatch_count") or 0),
        "mismatched": [m["key"] for m in data.get("mismatches") or []][:20],
        "scratch_removed": removed or not created, "success": bool(data.get("success")) and not error, "error": error,
    }
    return line


def append_history(line: Mapping[str, Any], base: DataPath | None = None) -> DataPath:
    """Append one line with a single ``write`` on an ``O_APPEND`` file, or as one object on an object store
    (concurrent drills never interleave)."""
    path = history_path(base)
    append_line(path, json.dumps(dict(line), sort_keys=True, separators=(",", ":")))
    return path


def read_history(base: DataPath | None = None) -> list[dict[str, Any]]:
    """Every drill line, oldest first (a damaged line is skipped, not fatal: the page still renders)."""
    lines = []
    for raw in read_lines(history_path(base)):
        try:
            lines.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return sorted(lines, key=lambda line: str(line.get("time")))


def svg_chart(title: str, unit: str, lines: Sequence[Mapping[str, Any]], value: str, scale: float = 1.0,
              objective: str | None = None) -> str:
    """A line chart (include/charts.py) of ``value`` per policy over the drills' times: failed drills in a red
    ring, each policy's objective (``objective`` field) as a dashed line."""
    points = [ln for ln in lines if ln.get(value) is not None]
    labels = sorted({str(ln["time"]) for ln in points})
    at = {label: i for i, label in enumerate(labels)}
    series: dict[str, list[float | None]] = {}
    failed: dict[str, list[bool]] = {}
    limits: dict[str, float] = {}
    for ln in points:
        policy = str(ln["policy"])
        series.setdefault(policy, [None] * len(labels))[at[str(ln["time"])]] = float(ln[value]) / scale
        failed.setdefault(policy, [False] * len(labels))[at[str(ln["time"])]] = not ln.get("success")
        if objective and ln.get(objective) is not None:
            limits[policy] = float(ln[objective]) / scale
    ordered = {policy: series[policy] for policy in sorted(series)}
    return line_chart(title, labels, ordered, unit=f" {unit}", limits=limits, failed=failed, width=760, height=260,
                      empty="no drills recorded yet")


def render_report(lines: Sequence[Mapping[str, Any]]) -> str:
    """The drills page: RPO and restore time per policy over time, and a table of the latest drills."""
    latest = list(reversed(lines))[:50]
    rows = []
    for ln in latest:
        status = "ok" if ln.get("success") else "FAILED"
        rpo = ln.get("rpo_seconds")
        rows.append(
            "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
                ln.get("time"), ln.get("policy"), ln.get("point_id") or "-",
                "-" if rpo is None else f"{float(rpo) / 3600:.2f} h" + ("" if ln.get("rpo_met") else " (over objective)"),
                ln.get("restore_seconds"), ln.get("objects"), ln.get("bytes"), ln.get("bytes_per_second") or "-",
                ln.get("mismatches"), "yes" if ln.get("scratch_removed") else "NO", status,
                ln.get("error") or ", ".join(ln.get("mismatched") or []) or "",
            )) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("time", "policy", "point", "RPO", "restore s", "objects", "bytes",
                                             "bytes/s", "mismatches", "scratch removed", "result", "detail"))
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Restore drills</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}</style></head><body>"
        "<h1>Restore drills</h1>"
        f"<p>{len(lines)} drill(s) recorded; {sum(1 for ln in lines if not ln.get('success'))} failed. Dashed lines: "
        "each policy's RPO objective. A red ring marks a failed drill.</p>"
        + "<h2>RPO: age of the newest restorable point at the drill</h2>"
        + svg_chart("RPO: age of the newest restorable point at the drill", "h", lines, "rpo_seconds",
                    scale=3600, objective="rpo_objective_seconds")
        + "<h2>Restore time (plan + apply) of the newest point</h2>"
        + svg_chart("Restore time (plan + apply) of the newest point", "s", lines, "restore_seconds")
        + f"<h2>Latest drills</h2><table><tr>{head}</tr>{''.join(rows)}</table></body></html>"
    )


def write_report(base: DataPath | None = None) -> DataPath:
    path = report_path(base)
    atomic_write_text(path, render_report(read_history(base)))
    return path


# ---- the task bodies (the DAG passes every input in) ---------------------------------------------------------
def _fail(message: str) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(message)


def _audit(context: Mapping[str, Any], spec: DrillSpec) -> AuditContext:
    return AuditContext(runbook=RUNBOOK, run_id=str(context.get("run_id") or spec.run_id),
                        actor=actor_from_context(context), dry_run=spec.dry_run, params={"policy": spec.policy})


def resolve_task(context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``resolve_drills``: refuse unknown parameters and policies (no retry); one spec per policy."""
    from include.params import check_conf, resolve_dry_run

    check_conf(context)
    params = context.get("params") or {}
    percent = params.get("hash_sample_percent")
    try:
        specs = plan_drills(run_id=str(context["run_id"]), dry_run=resolve_dry_run(context),
                            policies=list(params.get("policies") or []), scratch=dict(params.get("scratch") or {}),
                            hash_sample_percent=100 if percent in (None, "") else int(percent))
    except (RestoreError, BackupPolicyError) as exc:
        raise _fail(str(exc)) from None
    for spec in specs:
        where = spec.problem or Scratch.from_dict(spec.scratch or {}).describe()
        print(f"{spec.policy}: {'dry run' if spec.dry_run else 'drill'} -> {where}")
    return [spec.to_dict() for spec in specs]


def setup_task(context: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    drill = DrillSpec.from_dict(spec)
    try:
        made = create_scratch(drill, audit=_audit(context, drill))
    except DrillError as exc:
        raise _fail(f"{drill.policy}: {exc}") from None
    print(f"{drill.policy}: scratch {Scratch.from_dict(made).describe()} {'created' if made['created'] else 'checked'}")
    return made


def restore_task(context: Mapping[str, Any], spec: Mapping[str, Any], scratch: Mapping[str, Any]) -> dict[str, Any]:
    drill = DrillSpec.from_dict(spec)
    result = restore_newest_point(drill, Scratch.from_dict(scratch))
    if not drill.dry_run and result["restored_objects"]:
        write_audit(_audit(context, drill).record(
            step="restore", action=f"restore point {result['point_id']}", outcome="changed",
            resource=result["scratch"], after={k: result[k] for k in ("restored_objects", "restored_bytes")}))
    print(f"{drill.policy}: point {result['point_id']} (RPO {result['rpo_seconds']} s), {result['restored_objects']}/"
          f"{result['objects']} object(s), {result['restored_bytes']} bytes in {result['restore_seconds']} s "
          f"({result['bytes_per_second']} B/s); {result.get('failure_count', 0)} failure(s)"
          + (f"; {result['error']}" if result["error"] else ""))
    return result


def verify_task(context: Mapping[str, Any], spec: Mapping[str, Any], scratch: Mapping[str, Any],
                restored: Mapping[str, Any]) -> dict[str, Any]:
    """Verify, push the drill's result (XCom ``drill``) for the record task, and fail on any mismatch."""
    drill = DrillSpec.from_dict(spec)
    result = verify_checksums(drill, Scratch.from_dict(scratch), restored)
    context["ti"].xcom_push(key="drill", value=result)
    print(f"{drill.policy}: {result['verified']} object(s) verified (recorded size + MD5), {result['hashed']} "
          f"hashed ({result['hashed_bytes']} bytes in {result['verify_seconds']} s); "
          f"{result['mismatch_count']} mismatch(es)")
    if not result["success"]:
        listing = "\n".join(f"- {m['key']}: {m['problem']}" for m in result["mismatches"])
        reason = result.get("error") or f"{result['mismatch_count']} object(s) do not match the manifest"
        raise _fail(f"restore drill of {drill.policy} FAILED (point {result.get('point_id')}): {reason}\n{listing}")
    return result


def teardown_task(context: Mapping[str, Any], scratch: Mapping[str, Any] | None) -> dict[str, Any]:
    if scratch and not scratch.get("created"):
        return {"removed": 0, "scratch": Scratch.from_dict(scratch).describe(), "left": 0}  # dry run: nothing made
    spec = DrillSpec(policy=str((scratch or {}).get("policy") or ""), run_id=str(context.get("run_id")), dry_run=False)
    removed = remove_scratch(scratch, audit=_audit(context, spec))
    print(f"removed {removed['removed']} object(s) from {removed['scratch']}")
    return removed


def record_task(
    context: Mapping[str, Any], specs: Sequence[Mapping[str, Any]] | None, *, scratches: Sequence[Any],
    results: Sequence[Any], restored: Sequence[Any], teardowns: Sequence[Any], base: Path | None = None,
) -> dict[str, Any]:
    """Write one history line per drill (real runs) and the report; fail listing every failed drill.

    Each sequence is an XCom pull over the map indexes (None where a task left nothing): what create_scratch,
    verify_checksums (key ``drill``), restore_newest_point and remove_scratch returned per policy.
    """
    at = _now()
    lines = []
    for n, raw in enumerate(specs or []):
        spec = DrillSpec.from_dict(raw)
        result = _nth(results, n) or _nth(restored, n)
        lines.append(history_line(spec, result, _nth(teardowns, n), at, _nth(scratches, n)))
    dry_run = bool(specs) and all(DrillSpec.from_dict(s).dry_run for s in specs or [])
    if not dry_run:
        for line in lines:
            append_history(line, base)
    path = write_report(base)
    problems = []
    for line in lines:
        print(f"{line['policy']}: {'ok' if line['success'] else 'FAILED'}; point {line['point_id']}; RPO "
              f"{line['rpo_seconds']} s (objective {line['rpo_objective_seconds']} s); restore {line['restore_seconds']} s; "
              f"{line['objects']} objects, {line['bytes']} bytes, {line['mismatches']} mismatches")
        if not line["success"]:
            detail = line["error"] or f"{line['mismatches']} mismatch(es): {', '.join(line['mismatched'])}"
            problems.append(f"{line['policy']}: {detail}")
        if line["rpo_seconds"] is not None and not line["rpo_met"]:
            problems.append(f"{line['policy']}: RPO {line['rpo_seconds']:.0f} s is beyond the objective "
                            f"{line['rpo_objective_seconds']:.0f} s (newest point {line['point_id']})")
        if not line["scratch_removed"]:
            problems.append(f"{line['policy']}: the scratch location was not removed (see remove_scratch)")
    print(f"report: {path}" + ("" if dry_run else f"; history: {history_path(base)}"))
    if problems:
        raise _fail(f"{len(problems)} drill problem(s):\n" + "\n".join(f"- {p}" for p in problems))
    return {"drills": len(lines), "report": str(path), "dry_run": dry_run}


def _nth(values: Sequence[Any] | Any, n: int) -> dict[str, Any] | None:
    """Item ``n`` of an XCom pull over map indexes (a list with None for missing values)."""
    if isinstance(values, Mapping):  # one mapped instance: Airflow may return the value itself
        return dict(values) if n == 0 else None
    if not isinstance(values, Sequence) or n >= len(values):
        return None
    value = values[n]
    return dict(value) if isinstance(value, Mapping) else None

