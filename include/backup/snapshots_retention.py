"""Grandfather-father-son retention over points in time (the snapshots of one resource in one region).

For each rule of the policy's :class:`~include.backup.policies.Retention` (``hourly``, ``daily``, ``weekly``,
``monthly``: N), walk the points newest first and keep the newest point of each hour / day / ISO week /
month, until N such periods have been kept. Periods without a point do not count (as in restic and borg):
when backups stop for a while, retention keeps the last N periods that *have* a point instead of letting
the calendar expire everything. A point kept by several rules is kept once, with every reason. The newest
point is always kept (every retention keeps at least one period, and it is the newest of its period).

Pure functions over ``(id, time)`` pairs in UTC: no cloud, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from include.backup.policies import Retention


@dataclass(frozen=True)
class Point:
    """One restorable point: an id and the time it stands for."""

    id: str
    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError(f"point {self.id}: time must be timezone-aware")


def _week(at: datetime) -> str:
    year, week, _ = at.isocalendar()
    return f"{year}-W{week:02d}"


#: rule -> the period a point falls in (UTC).
PERIODS: dict[str, Callable[[datetime], str]] = {
    "hourly": lambda at: at.strftime("%Y-%m-%dT%H"),
    "daily": lambda at: at.strftime("%Y-%m-%d"),
    "weekly": _week,
    "monthly": lambda at: at.strftime("%Y-%m"),
}


def newest_first(points: Iterable[Point]) -> list[Point]:
    """Newest first; equal times by id (so the choice between them is stable)."""
    return sorted(points, key=lambda p: (p.at.astimezone(UTC), p.id), reverse=True)


def keep(points: Sequence[Point], retention: Retention) -> dict[str, list[str]]:
    """The points to keep, by id, each with the reasons (``"daily 2026-11-28"``); every other point expires."""
    ordered = newest_first(points)
    kept: dict[str, list[str]] = {}
    for rule, period_of in PERIODS.items():
        count = int(getattr(retention, rule))
        seen: set[str] = set()
        for point in ordered:
            if len(seen) >= count:
                break
            period = period_of(point.at.astimezone(UTC))
            if period in seen:
                continue
            seen.add(period)
            kept.setdefault(point.id, []).append(f"{rule} {period}")
    return kept


def expired(points: Sequence[Point], retention: Retention) -> list[Point]:
    """The points :func:`keep` does not keep, oldest first."""
    kept = keep(points, retention)
    return [p for p in reversed(newest_first(points)) if p.id not in kept]
