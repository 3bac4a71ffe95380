"""Collect one target's inventory: every lister x region, bounded concurrency, errors reported.

A lister that fails (endpoint unreachable, access denied, a cloud error) does not stop the others: its
failure is recorded as a :class:`CollectionError` and the target's result is marked incomplete. A
target whose connection cannot be reached at all is probed once and reported once, not per service.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from include.clouds.errors import classify
from include.inventory.registry import GLOBAL, ListContext, Lister, cloud_package, listers_for
from include.records import ResourceRecord
from include.targets import Target


def _message(exc: BaseException, limit: int = 500) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class CollectionError:
    """Why part of a target's inventory is missing."""

    target: str
    cloud: str
    service: str  # "*" when the whole target failed its probe
    region: str
    kind: str  # unreachable | access_denied | error
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class TargetInventory:
    """Result of collecting one target."""

    target: str
    cloud: str
    account: str
    records: list[ResourceRecord] = field(default_factory=list)
    errors: list[CollectionError] = field(default_factory=list)
    seconds: float = 0.0
    calls: int = 0

    @property
    def complete(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.resource_type] = counts.get(record.resource_type, 0) + 1
        return {
            "target": self.target,
            "cloud": self.cloud,
            "account": self.account,
            "resources": len(self.records),
            "by_type": dict(sorted(counts.items())),
            "complete": self.complete,
            "errors": [error.to_dict() for error in self.errors],
            "seconds": round(self.seconds, 3),
        }


def probe(target: Target) -> None:
    """Raise if the target's connection cannot be used at all (each cloud's inventory package has ``probe``)."""
    cloud_package(target.cloud).probe(target)


def _work_items(target: Target, listers: list[Lister]) -> list[tuple[Lister, str]]:
    items: list[tuple[Lister, str]] = []
    for entry in listers:
        regions = target.regions if entry.regional else (GLOBAL,)
        items.extend((entry, region) for region in regions)
    return items


def collect_target(
    target: Target, *, max_workers: int = 4, services: Sequence[str] | None = None
) -> TargetInventory:
    """List the resources of ``target`` with at most ``max_workers`` calls in flight.

    ``services``: ``None`` lists the target's own ``services`` (``config/targets.yaml``), else every
    lister of its cloud; a sequence lists exactly those services, and an empty one lists nothing (no call
    at all). A service the target's cloud has no lister for raises ``ValueError`` naming the known ones
    (:func:`include.inventory.registry.validate_services`), before any cloud call.
    """
    started = time.monotonic()
    result = TargetInventory(target=target.name, cloud=target.cloud, account=target.account)
    if services is None:
        services = list(target.services) or None
    listers = listers_for(target.cloud, services)
    if not listers:
        result.seconds = time.monotonic() - started
        return result
    try:
        probe(target)
    except Exception as exc:
        result.errors.append(
            CollectionError(target.name, target.cloud, "*", GLOBAL, classify(exc), _message(exc))
        )
        result.seconds = time.monotonic() - started
        return result

    def run(item: tuple[Lister, str]) -> tuple[Lister, str, list[ResourceRecord] | BaseException]:
        entry, region = item
        try:
            return entry, region, list(entry.func(ListContext(target=target, region=region)))
        except Exception as exc:
            return entry, region, exc

    items = _work_items(target, listers)
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix=f"inv-{target.name}") as pool:
        for entry, region, outcome in pool.map(run, items):
            result.calls += 1
            if isinstance(outcome, BaseException):
                result.errors.append(
                    CollectionError(
                        target.name, target.cloud, entry.service, region, classify(outcome), _message(outcome)
                    )
                )
            else:
                result.records.extend(outcome)
    result.records.sort(key=lambda r: (r.resource_type, r.region, r.resource_id))
    result.seconds = time.monotonic() - started
    return result
