"""When a backup policy is due: its own cron schedule against the time of its newest point.

The runbook runs often (every 15 minutes); each policy runs only when one of its own schedule's fire times
has passed since its newest point (``is_due``). A policy that has never been backed up is always due.
Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

#: Airflow's presets, as cron expressions.
PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}


def _croniter(expression: str, start: datetime) -> Any:
    from croniter import croniter  # type: ignore[import-untyped]  # no type information shipped

    return croniter(PRESETS.get(expression, expression), start)


def check_schedule(expression: str) -> str:
    """``expression`` when it is a 5-field cron expression or a preset; ValueError naming the problem."""
    from croniter import croniter

    if expression in PRESETS:
        return expression
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ValueError(f"schedule must be a cron expression (5 fields) or one of {sorted(PRESETS)}, not {expression!r}")
    return expression


def previous_fire(expression: str, now: datetime) -> datetime:
    """The latest fire time of the schedule at or before ``now`` (UTC)."""
    now = now.astimezone(UTC)
    it = _croniter(expression, now)
    fire: datetime = it.get_prev(datetime)
    # croniter's get_prev is strictly before ``now``: a fire time equal to now counts as passed.
    following: datetime = _croniter(expression, fire).get_next(datetime)
    chosen = following if following <= now else fire
    return chosen.astimezone(UTC).replace(fold=0)


def next_fire(expression: str, after: datetime) -> datetime:
    """The first fire time of the schedule strictly after ``after`` (UTC)."""
    fire: datetime = _croniter(expression, after.astimezone(UTC)).get_next(datetime)
    return fire.astimezone(UTC).replace(fold=0)


@dataclass(frozen=True)
class Due:
    """Whether a policy should run now, and why."""

    due: bool
    reason: str
    last_fire: datetime
    newest_point: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "due": self.due, "reason": self.reason, "last_fire": self.last_fire.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "newest_point": self.newest_point.strftime("%Y-%m-%dT%H:%M:%SZ") if self.newest_point else None,
        }


def is_due(schedule: str, newest_point: datetime | None, now: datetime) -> Due:
    """Due when the schedule fired after the newest point was taken (or when there is no point yet)."""
    fire = previous_fire(schedule, now)
    if newest_point is None:
        return Due(True, "no backup point exists yet", fire, None)
    if newest_point < fire:
        return Due(True, f"scheduled at {fire:%Y-%m-%dT%H:%M}Z ({schedule}); newest point "
                         f"{newest_point:%Y-%m-%dT%H:%M:%S}Z is older", fire, newest_point)
    return Due(False, f"not due: newest point {newest_point:%Y-%m-%dT%H:%M:%S}Z is newer than the last scheduled "
                      f"time {fire:%Y-%m-%dT%H:%M}Z ({schedule}); next at {next_fire(schedule, now):%Y-%m-%dT%H:%M}Z",
               fire, newest_point)
