"""Registry of fixers: the change-engine steps that repair compliance findings, one class per (fixer id, cloud).

A fixer is a :class:`~include.changes.step.Step` (read -> plan -> apply -> verify, see there) that repairs
one kind of finding on one kind of resource. Subclasses implement ``read``, ``desired`` and ``write``
(plus ``satisfied`` when "complies" is looser than "equals") over a plain ``dict`` of facts, through the
provider hook built from the target's ``conn_id``. Fixers declare the permissions they need, so a
least-privilege policy per runbook can be generated.

The same fixer id may be registered once per cloud (``tags.required`` exists for AWS, GCP and Azure);
``get_fixer(id, resource_type)`` picks the one that handles the resource type.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from include.changes.model import RequestError
from include.changes.step import UpdateStep
from include.targets import TargetsConfig


class RemediationError(RequestError):
    """A remediation request cannot be honoured (unknown finding, resource, rule or fixer, a bad option)."""


class Fixer(UpdateStep):
    """Base class of every fixer: a change-engine step with a registry entry (see :func:`fixer`)."""


@dataclass(frozen=True)
class FixerEntry:
    id: str
    cloud: str
    resource_types: tuple[str, ...]
    permissions: tuple[str, ...]
    destructive: bool
    cls: type[Fixer] = field(compare=False)

    def create(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> Fixer:
        return self.cls(options, targets)


_FIXERS: dict[tuple[str, str], FixerEntry] = {}

#: Modules that register fixers when imported; imported lazily so DAG parsing stays SDK-free.
_CLOUD_MODULES = {
    "aws": "include.compliance.remediation.aws",
    "gcp": "include.compliance.remediation.gcp",
    "azure": "include.compliance.remediation.azure",
}

F = TypeVar("F", bound=type[Fixer])


def fixer(
    id: str,
    cloud: str,
    resource_types: Iterable[str],
    *,
    permissions: Iterable[str] = (),
    destructive: bool = False,
    action: str | None = None,
) -> Callable[[F], F]:
    """Register a :class:`Fixer` subclass as fixer ``id`` for ``cloud``'s ``resource_types``."""

    def decorate(cls: F) -> F:
        types = tuple(resource_types)
        perms = tuple(permissions)
        if not types:
            raise ValueError(f"fixer {id}: no resource types")
        if not perms:
            raise ValueError(f"fixer {id} ({cloud}): every fixer declares the permissions it needs")
        key = (id, cloud)
        if key in _FIXERS and _FIXERS[key].cls is not cls:
            raise ValueError(f"fixer {id} for {cloud} registered twice")
        cls.id, cls.cloud, cls.resource_types, cls.permissions = id, cloud, types, perms
        cls.destructive = destructive
        if action is not None:
            cls.action = action
        _FIXERS[key] = FixerEntry(id, cloud, types, perms, destructive, cls)
        return cls

    return decorate


def _load_all() -> None:
    for module in _CLOUD_MODULES.values():
        importlib.import_module(module)


def all_fixers() -> list[FixerEntry]:
    """Every registered fixer (importing the cloud modules), sorted by id then cloud."""
    _load_all()
    return sorted(_FIXERS.values(), key=lambda e: (e.id, e.cloud))


def fixer_ids() -> set[str]:
    return {entry.id for entry in all_fixers()}


def get_fixer(fixer_id: str, resource_type: str) -> FixerEntry:
    """The fixer ``fixer_id`` that handles ``resource_type``; a clear error when there is none."""
    entries = [e for e in all_fixers() if e.id == fixer_id]
    if not entries:
        known = ", ".join(sorted(fixer_ids()))
        raise RemediationError(f"unknown fixer {fixer_id!r}; known fixers: {known}")
    for entry in entries:
        if resource_type in entry.resource_types:
            return entry
    handled = sorted(t for e in entries for t in e.resource_types)
    raise RemediationError(f"fixer {fixer_id} handles {', '.join(handled)}, not {resource_type}")


def permissions_for(fixer_ids_: Iterable[str], cloud: str | None = None) -> list[str]:
    """The union of permissions the given fixers need (optionally one cloud's), sorted."""
    wanted = set(fixer_ids_)
    return sorted({p for e in all_fixers() if e.id in wanted and (cloud is None or e.cloud == cloud)
                   for p in e.permissions})
