"""Bounded waits for long operations: start the operation, then poll until done or a deadline.

A worker never sleeps without a bound: every wait has a timeout and ends in a clear
:class:`WaitTimeout` naming what was awaited and the last state seen. Runbooks whose single long
operation dominates (an RDS promotion, a DNS change reaching INSYNC) can instead defer to a trigger
through the provider's deferrable operators and sensors; the engine's own waits are for the short,
in-task confirmations of a change set (a modification showing up, a label write landing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from include.changes.model import ChangeError

T = TypeVar("T")


class WaitTimeout(ChangeError):
    """A polled operation did not reach its end state within the bound."""


def poll_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    interval: float,
    what: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``probe`` until ``done(value)``; return that value, or raise :class:`WaitTimeout` after ``timeout`` s.

    ``probe`` runs at least once (``timeout=0`` is one read). Between reads it sleeps ``interval`` seconds,
    never past the deadline. Exceptions from ``probe`` propagate (a failed read is not "not yet").
    """
    if timeout < 0 or interval <= 0:
        raise ValueError(f"poll_until({what}): timeout must be >= 0 and interval > 0")
    deadline = clock() + timeout
    attempts = 0
    while True:
        value = probe()
        attempts += 1
        if done(value):
            return value
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeout(f"{what}: not done after {timeout:.0f}s ({attempts} reads); last state: {value!r}")
        sleep(min(interval, remaining))
