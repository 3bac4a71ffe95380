"""Rate control for applying a change set, as AWS Systems Manager Automation defines it.

- ``max_concurrency``: how many changes run at once, a number (``"3"``) or a percentage of the change
  set (``"10%"``, rounded up, at least 1).
- ``max_errors``: how many changes may fail before the engine stops dispatching new ones, a number or a
  percentage (rounded down). ``"0"`` stops after the first error; ``"3"`` stops when the fourth error
  arrives; ``"10%"`` of 50 changes stops at the sixth. Changes already in flight finish (and may fail
  too); everything not yet dispatched is reported "not attempted". To be sure no more than
  ``max_errors`` fail, use ``max_concurrency=1``.
- :meth:`RateControl.stop_on_first_error`: one at a time, stop at the first error (failover).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from include.changes.model import RequestError

# LIMIT_PATTERN: the pattern a form field for either value uses (the same rule as :func:`parse_limit`). It is
# defined in the light include/params.py, so that a DAG's form does not import this module at parse time.
from include.params import LIMIT_PATTERN as LIMIT_PATTERN

_VALUE = re.compile(r"^(\d+)(%?)$")


def parse_limit(value: str | int, name: str) -> tuple[int, bool]:
    """``(n, is_percentage)`` from ``"5"``, ``5`` or ``"20%"``; a clear :class:`RequestError` otherwise."""
    text = str(value).strip()
    match = _VALUE.match(text)
    if isinstance(value, bool) or not match:
        raise RequestError(f"{name} must be a whole number or a percentage such as 10%, not {value!r}")
    number, percent = int(match.group(1)), bool(match.group(2))
    if percent and number > 100:
        raise RequestError(f"{name} must be at most 100%, not {value!r}")
    return number, percent


@dataclass(frozen=True)
class RateControl:
    """``max_concurrency`` and ``max_errors``, each a number or a percentage of the change set."""

    max_concurrency: str = "1"
    max_errors: str = "100%"

    def __post_init__(self) -> None:
        concurrency, percent = parse_limit(self.max_concurrency, "max_concurrency")
        if concurrency == 0:
            raise RequestError("max_concurrency must be at least 1 (or 1%)")
        parse_limit(self.max_errors, "max_errors")
        object.__setattr__(self, "max_concurrency", str(self.max_concurrency).strip())
        object.__setattr__(self, "max_errors", str(self.max_errors).strip())

    @classmethod
    def stop_on_first_error(cls) -> RateControl:
        """One change at a time; the first failure stops everything after it."""
        return cls(max_concurrency="1", max_errors="0")

    def concurrency(self, total: int) -> int:
        """Changes in flight at once for a set of ``total`` changes (at least 1)."""
        number, percent = parse_limit(self.max_concurrency, "max_concurrency")
        limit = math.ceil(number * total / 100) if percent else number
        return max(1, min(limit, max(total, 1)))

    def errors_allowed(self, total: int) -> int:
        """Failures tolerated before dispatching stops (the next one stops it)."""
        number, percent = parse_limit(self.max_errors, "max_errors")
        return math.floor(number * total / 100) if percent else number

    def describe(self, total: int) -> str:
        return (f"max_concurrency {self.max_concurrency} ({self.concurrency(total)} at once), max_errors "
                f"{self.max_errors} (stop after {self.errors_allowed(total) + 1} failure(s))")
