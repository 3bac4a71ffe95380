"""Retention of a policy's points in time (grandfather-father-son) and of the blobs they need.

**Which points are kept** (:func:`plan_retention`): the newest point always; then, for hourly / daily /
weekly / monthly with a count N, walking from the newest point back, the newest point of each of the last
N such periods *that have a point* (UTC; weeks are ISO weeks). These are the semantics of restic's and
borg's ``--keep-hourly/daily/weekly/monthly``: when backups stop for a while, the old points do not age out
from under you, because periods without a point do not count. A point kept for several reasons lists each.

**What is deleted** (:func:`prune`), in this order, each deletion audited:

1. the manifests of the points not kept;
2. then only the blobs that no kept manifest references (every kept manifest is read first; if any of them
   cannot be read, nothing at all is deleted, because what it needs is unknown). A run that stored no blob
   does not list every blob: only those of the expiring points can have become unreferenced.

Nothing else under the store is touched: only ``points/<point id>.json`` and ``blobs/xx/<md5>-<size>`` keys.
The runbook prunes right after it wrote a new point, holding the policy's lease, so no backup of the same
policy is writing blobs that no manifest names yet. Pruning is policy-driven: the reviewed policies file is
the approval (as AWS Backup expires recovery points by its backup plan); a dry run lists what would go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from include.backup.copier import Place, brief_error
from include.backup.manifest import (
    Manifest,
    list_points,
    point_key,
    point_time,
    read_manifest,
    referenced_blobs,
)
from include.backup.policies import Retention
from include.capabilities.object_store import ObjectInfo

_BLOB_NAME = re.compile(r"^blobs/[0-9a-f]{2}/[0-9a-f]{32}-\d+$")

#: period name -> the period a point falls in (UTC)
PERIODS: dict[str, Callable[[datetime], tuple[int, ...]]] = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
}


@dataclass(frozen=True)
class RetentionPlan:
    """Which points stay (with the reasons) and which go."""

    keep: dict[str, list[str]]  # point id -> ["newest", "hourly", "daily", ...]
    prune: list[str]  # oldest first

    def to_dict(self) -> dict[str, Any]:
        return {"keep": self.keep, "prune": self.prune}


def plan_retention(point_ids: Iterable[str], retention: Retention) -> RetentionPlan:
    """Grandfather-father-son over ``point_ids`` (restic / borg ``--keep-*`` semantics; the newest always stays)."""
    points = sorted(set(point_ids), reverse=True)  # newest first (ids sort by time)
    keep: dict[str, list[str]] = {}
    if points:
        keep[points[0]] = ["newest"]
    for name, period_of in PERIODS.items():
        wanted = int(getattr(retention, name))
        seen: list[tuple[int, ...]] = []
        for point in points:
            if len(seen) >= wanted:
                break
            period = period_of(point_time(point))
            if period in seen:
                continue
            seen.append(period)
            keep.setdefault(point, []).append(name)
    prune = sorted(p for p in points if p not in keep)
    return RetentionPlan(keep={p: keep[p] for p in sorted(keep)}, prune=prune)


@dataclass
class PruneResult:
    """What a prune deleted (or, in a dry run, would delete)."""

    plan: RetentionPlan
    dry_run: bool
    points_deleted: list[str] = field(default_factory=list)
    blobs_deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    blobs_kept: int = 0
    errors: list[str] = field(default_factory=list)
    blobs_swept: bool = True  # False: the blob listing was skipped (see ``prune(sweep_blobs=)``)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plan"] = self.plan.to_dict()
        return data


Deleted = Callable[[str, str, int], None]  # (kind "point" | "blob", key, size)


def _read_kept(place: Place, plan: RetentionPlan, points: list[str], known: dict[str, Manifest],
               extra_point: str | None, result: PruneResult) -> list[Manifest]:
    """Every kept manifest (errors into ``result``: then nothing may be deleted)."""
    kept: list[Manifest] = []
    wanted = [p for p in plan.keep if p in points]
    if extra_point and extra_point not in points and points:
        # A dry run cannot know the blobs a point not yet written will name: it keeps every blob the newest
        # existing point names as well (the new point reuses them where the source did not change).
        wanted.append(points[-1])
    for point in dict.fromkeys(wanted):
        try:
            kept.append(known.get(point) or read_manifest(place.store, place.container, place.prefix, point))
        except Exception as exc:  # ManifestError, or the store failed: either way the point's needs are unknown
            result.errors.append(f"kept point {point} cannot be read ({brief_error(exc)}): nothing was pruned")
    return kept


def prune(
    place: Place,
    retention: Retention,
    *,
    dry_run: bool = False,
    known: dict[str, Manifest] | None = None,
    extra_point: str | None = None,
    on_delete: Deleted | None = None,
    sweep_blobs: bool = True,
    blobs: Iterable[ObjectInfo] | None = None,
) -> PruneResult:
    """Delete the points ``retention`` does not keep, then the blobs no kept point references.

    ``known``: manifests already in memory by point id (the one just written, the previous one), not read again.
    ``extra_point``: a point that does not exist yet but will (a dry run plans as if this run had written it).
    ``on_delete`` is called after each deletion (the audit trail).
    ``sweep_blobs`` False (a run that stored no blob): do not list every blob; only the blobs named by the expiring
    points and by no kept one are deleted (none when no point expires). Leftovers of an earlier failed run wait for
    the next full sweep (the next run that stores a blob).
    ``blobs``: every blob in the store as the caller knows it, used for the sweep instead of listing them again:
    the copier's index (listed when the run began copying, plus what it wrote), which is complete because only the
    holder of the policy's lease writes or deletes blobs (one since gone is deleted again: deletions are idempotent).
    """
    points = list_points(place.store, place.container, place.prefix)
    plan = plan_retention([*points, *([extra_point] if extra_point else [])], retention)
    result = PruneResult(plan=plan, dry_run=dry_run)
    if not plan.prune and not sweep_blobs:
        # Nothing expires and nothing to sweep: neither the kept manifests nor the blobs need to be read.
        result.blobs_swept = False
        return result
    kept = _read_kept(place, plan, points, known or {}, extra_point, result)
    if result.errors:
        return result
    expired = None if sweep_blobs else _read_expired(place, plan, known or {})
    for point in plan.prune:
        key = point_key(place.prefix, point)
        if not dry_run:
            place.store.delete(place.container, key)
            if on_delete:
                on_delete("point", key, 0)
        result.points_deleted.append(point)
    for key, size in _unreferenced(place, referenced_blobs(kept), expired, result, blobs):
        if not _BLOB_NAME.match(key[len(place.prefix):]):
            continue  # not ours: never touched
        if not dry_run:
            place.store.delete(place.container, key)
            if on_delete:
                on_delete("blob", key, size)
        result.blobs_deleted.append(key)
        result.bytes_freed += size
    return result


def _read_expired(place: Place, plan: RetentionPlan, known: dict[str, Manifest]) -> list[Manifest] | None:
    """The manifests of the expiring points (read before they are deleted; those in ``known`` not read again), or
    None when one cannot be read (then the whole blob listing is swept instead): only their blobs can have become
    unreferenced."""
    try:
        return [known.get(point) or read_manifest(place.store, place.container, place.prefix, point)
                for point in plan.prune]
    except Exception:
        return None


def _unreferenced(place: Place, needed: set[str], expired: list[Manifest] | None, result: PruneResult,
                  blobs: Iterable[ObjectInfo] | None = None) -> list[tuple[str, int]]:
    """(key, size) of the blobs no kept point needs: of the expired points' blobs, else of all blobs (``blobs``, or
    the store's listing)."""
    if expired is not None:
        result.blobs_swept = False
        sizes = {e.blob: e.size for m in expired for e in m.entries if e.blob not in needed}
        return [(key, sizes[key]) for key in sorted(sizes)]
    found = []
    listing = place.store.list_objects(place.container, f"{place.prefix}blobs/") if blobs is None else sorted(
        blobs, key=lambda info: info.key)
    for info in listing:
        if info.key in needed:
            result.blobs_kept += 1
        else:
            found.append((info.key, info.size))
    return found
