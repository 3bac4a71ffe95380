"""Registry of fixers: one small class per (fixer id, cloud), mirroring the inventory lister registry.

A fixer repairs one kind of finding on one kind of resource, always read -> plan -> apply -> verify:

- ``plan(record) -> Change | None`` reads the resource's current state from the cloud (through the
  provider hook built from the target's ``conn_id``) and returns the exact change it would make
  (before / after and the API call), or ``None`` when the resource already complies;
- ``apply(change) -> Applied`` makes the change. It re-reads first and writes only what is still
  missing, so applying the same change twice changes nothing the second time;
- ``verify(record) -> bool`` re-reads and says whether the resource now complies.

Subclasses implement three small methods over a plain ``dict`` of facts: ``read``, ``desired`` and
``write`` (plus ``satisfied`` when "complies" is looser than "equals"). Fixers declare the permissions
they need, so a least-privilege policy per runbook can be generated.

The same fixer id may be registered once per cloud (``tags.required`` exists for AWS, GCP and Azure);
``get_fixer(id, resource_type)`` picks the one that handles the resource type.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, TypeVar

from include.records import ResourceRecord
from include.targets import Target, TargetsConfig, load_targets


class RemediationError(ValueError):
    """A remediation request cannot be honoured (unknown finding, resource, fixer or bad option)."""


@dataclass(frozen=True)
class Change:
    """The exact change one fixer will make to one resource."""

    fixer: str
    resource: dict[str, Any]  # the ResourceRecord fields that identify it (no tags / attributes)
    action: str  # the API call(s), e.g. "s3:PutBucketPublicAccessBlock"
    request: dict[str, Any]  # the arguments of that call, as sent
    before: dict[str, Any]
    after: dict[str, Any]
    summary: str  # one human line: "bucket-a: versioning Suspended -> Enabled"
    destructive: bool = False

    @property
    def resource_id(self) -> str:
        return str(self.resource["resource_id"])

    @property
    def record(self) -> ResourceRecord:
        return ResourceRecord.from_dict(self.resource)

    @property
    def key(self) -> str:
        """Deterministic id of this change (same resource, same fixer, same target state -> same key)."""
        blob = json.dumps([self.fixer, self.resource_id, self.after], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["key"] = self.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Applied:
    """What ``apply`` did: ``changed`` is False when the resource already had the planned state."""

    changed: bool
    before: dict[str, Any]
    after: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def identity(record: ResourceRecord) -> dict[str, Any]:
    """The fields of a record that identify the resource (what a Change carries)."""
    return {
        "cloud": record.cloud,
        "target": record.target,
        "account": record.account,
        "region": record.region,
        "service": record.service,
        "resource_type": record.resource_type,
        "resource_id": record.resource_id,
        "name": record.name,
    }


class Fixer:
    """Base class of every fixer. Instances carry the run's options (``tag_values``, ``retention_days``...)."""

    id: ClassVar[str]
    cloud: ClassVar[str]
    resource_types: ClassVar[tuple[str, ...]]
    permissions: ClassVar[tuple[str, ...]]
    destructive: ClassVar[bool] = False
    #: The API call ``write`` makes (for the plan, the log and the audit trail).
    action: ClassVar[str] = ""
    #: Recompute the desired state from a fresh read at apply time instead of replaying the plan's
    #: ``after`` (tags: a value someone set between plan and apply must not be overwritten).
    recompute_on_apply: ClassVar[bool] = False
    #: Seconds ``verify`` keeps re-reading before it says "not fixed" (changes some clouds apply
    #: asynchronously, e.g. an RDS modification; 0 = one read).
    verify_wait: ClassVar[float] = 0.0
    verify_interval: ClassVar[float] = 15.0

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self._targets = targets
        self._clients: dict[tuple[str, ...], Any] = {}

    # ---- what subclasses implement -------------------------------------------------------------
    def read(self, record: ResourceRecord) -> dict[str, Any]:
        """Current facts of the resource, read from the cloud (raises when it cannot be read)."""
        raise NotImplementedError

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        """The compliant facts, given the current ones (only the keys this fixer manages)."""
        raise NotImplementedError

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        """Make the cloud call(s) that turn ``state`` into ``desired``; return the request as sent."""
        raise NotImplementedError

    def satisfied(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        """Whether ``state`` already complies (default: every desired key has the desired value)."""
        return all(state.get(key) == value for key, value in desired.items())

    def accepted(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        """Whether the read-back right after ``write`` shows the change was accepted (default: satisfied).

        Clouds that apply a change asynchronously accept it first (pending) and comply later.
        """
        return self.satisfied(state, desired)

    def project(self, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        """The part of ``state`` a change is about (its ``before`` / ``after``). Default: desired's keys."""
        return {key: state.get(key) for key in desired}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        """The arguments ``write`` will send (shown in the plan). Default: the desired facts."""
        return dict(desired)

    def action_for(self, record: ResourceRecord) -> str:
        """The API call ``write`` makes for this record (default: the fixer's ``action``)."""
        return self.action

    def describe(self, record: ResourceRecord, before: dict[str, Any], after: dict[str, Any]) -> str:
        changes = ", ".join(f"{key} {before.get(key)!r} -> {value!r}" for key, value in after.items()
                            if before.get(key) != value)
        return f"{record.name}: {changes}"

    # ---- the read -> plan -> apply -> verify protocol ------------------------------------------
    def plan(self, record: ResourceRecord) -> Change | None:
        """Read the resource and return the change that would make it comply (None: it complies)."""
        self._check_type(record)
        state = self.read(record)
        want = self.desired(state, record)
        if self.satisfied(state, want):
            return None
        before = self.project(state, want)
        return Change(
            fixer=self.id,
            resource=identity(record),
            action=self.action_for(record),
            request=self.request_for(record, state, want),
            before=before,
            after=want,
            summary=self.describe(record, before, want),
            destructive=self.destructive,
        )

    def apply(self, change: Change) -> Applied:
        """Make ``change`` (idempotent: re-reads first, and writes nothing when already in place)."""
        record = change.record
        self._check_type(record)
        state = self.read(record)
        want = self.desired(state, record) if self.recompute_on_apply else dict(change.after)
        before = self.project(state, want)
        if self.satisfied(state, want):
            return Applied(changed=False, before=before, after=before)
        self.write(record, state, want)
        now = self.read(record)
        if not self.accepted(now, want):
            raise RemediationError(
                f"{self.id}: {record.resource_id} still does not comply after {self.action_for(record)}: "
                f"read back {self.project(now, want)}, wanted {want}"
            )
        return Applied(changed=True, before=before, after=self.project(now, want))

    def verify(self, record: ResourceRecord) -> bool:
        """Re-read the resource and say whether it complies now."""
        self._check_type(record)
        deadline = time.monotonic() + self.verify_wait
        while True:
            state = self.read(record)
            if self.satisfied(state, self.desired(state, record)):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(self.verify_interval, max(0.0, deadline - time.monotonic())))

    # ---- helpers ------------------------------------------------------------------------------
    def target(self, record: ResourceRecord) -> Target:
        """The target (connection, account) a record belongs to, from config/targets.yaml."""
        targets = self._targets or load_targets()
        return targets.get(record.target)

    def client(self, key: tuple[str, ...], factory: Callable[[], Any]) -> Any:
        """One hook client per key (conn id, region...) for the life of this fixer instance."""
        if key not in self._clients:
            self._clients[key] = factory()
        return self._clients[key]

    def _check_type(self, record: ResourceRecord) -> None:
        if record.resource_type not in self.resource_types:
            raise RemediationError(
                f"fixer {self.id} ({self.cloud}) handles {', '.join(self.resource_types)}, "
                f"not {record.resource_type} ({record.resource_id})"
            )


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
