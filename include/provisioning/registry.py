"""Registry of provisioning steps: kind -> step class, with the permissions each call needs.

Each kind's module decorates its :class:`~include.provisioning.base.ResourceStep` subclass with
:func:`provisions`, declaring the cloud permissions of its read, create, update and delete calls (style
rule 7: a least-privilege policy per runbook can be generated: provisioning needs read + create + update,
teardown read + delete, drift detection read only). Modules are imported on first use, so importing this
registry (and parsing a DAG) stays free of cloud SDKs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from include.provisioning.base import ResourceStep
from include.provisioning.kinds import KINDS, get_kind

CALLS = ("read", "create", "update", "delete")
#: Which calls each runbook makes.
RUNBOOK_CALLS = {
    "provision_environment": ("read", "create", "update"),
    "teardown_environment": ("read", "delete"),
    "detect_drift": ("read",),
}

_STEPS: dict[str, type[ResourceStep]] = {}
S = TypeVar("S", bound=type[ResourceStep])


def provisions(
    alias: str,
    *,
    read: Iterable[str],
    create: Iterable[str],
    update: Iterable[str],
    delete: Iterable[str],
    actions: dict[str, str],
) -> Callable[[S], S]:
    """Register a step class as the implementation of kind ``alias``."""
    kind = get_kind(alias)

    def decorate(cls: S) -> S:
        calls = {"read": tuple(read), "create": tuple(create), "update": tuple(update), "delete": tuple(delete)}
        empty = [name for name, perms in calls.items() if not perms]
        if empty:
            raise ValueError(f"kind {alias}: declare the permissions of every call (missing: {', '.join(empty)})")
        missing = {"create", "update", "delete"} - set(actions)
        if missing:
            raise ValueError(f"kind {alias}: name the API call(s) of {', '.join(sorted(missing))}")
        if alias in _STEPS and _STEPS[alias] is not cls:
            raise ValueError(f"kind {alias} registered twice")
        cls.kind = alias
        cls.id = kind.step_id
        cls.cloud = kind.cloud
        cls.resource_types = (kind.resource_type,)
        cls.calls = calls
        cls.actions = dict(actions)
        cls.permissions = tuple(sorted({p for perms in calls.values() for p in perms}))
        _STEPS[alias] = cls
        return cls

    return decorate


def step_class(alias: str) -> type[ResourceStep]:
    """The step of kind ``alias`` (importing its module on first use)."""
    kind = get_kind(alias)
    if alias not in _STEPS:
        importlib.import_module(kind.module)
    if alias not in _STEPS:
        raise KeyError(f"module {kind.module} registers no step for kind {alias}")
    return _STEPS[alias]


def all_steps() -> dict[str, type[ResourceStep]]:
    """Every kind's step (importing every module)."""
    return {alias: step_class(alias) for alias in KINDS}


def permissions_for(aliases: Iterable[str], calls: Iterable[str]) -> dict[str, list[str]]:
    """Per cloud, the permissions ``calls`` (read / create / update / delete) of these kinds need."""
    wanted = tuple(calls)
    unknown = set(wanted) - set(CALLS)
    if unknown:
        raise ValueError(f"unknown calls {sorted(unknown)}; calls are {', '.join(CALLS)}")
    found: dict[str, set[str]] = {}
    for alias in dict.fromkeys(aliases):
        cls = step_class(alias)
        found.setdefault(cls.cloud, set()).update(p for call in wanted for p in cls.calls[call])
    return {cloud: sorted(perms) for cloud, perms in sorted(found.items())}
