"""A change as data, and the errors of the change engine."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from include.records import ResourceRecord

Operation = Literal["create", "update", "delete", "action"]
OPERATIONS: tuple[Operation, ...] = ("create", "update", "delete", "action")


class ChangeError(RuntimeError):
    """A change could not be planned, applied or verified (the cloud said no, or the state is wrong)."""


class NeedsInput(ChangeError):
    """Planning lacks a runbook parameter (e.g. ``tag_values``): a dry run reports it instead of failing.

    Only this error means "needs input". A resource that is not found, a malformed id or a wrong resource
    type are failures (:class:`ChangeError`), in a dry run too.
    """


class RequestError(ValueError):
    """The request itself is wrong (unknown parameter, target, resource, rule...): retrying cannot help."""


def identity(record: ResourceRecord) -> dict[str, Any]:
    """The fields of a record that identify the resource (what a change carries; no tags / attributes)."""
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


def change_key(step: str, target: str, resource_id: str, operation: str) -> str:
    """Deterministic key of a change: the same step on the same resource with the same operation.

    It does not depend on ``after``, so a re-plan after a partial apply finds the same keys in the ledger.
    """
    blob = json.dumps([step, target, resource_id, operation], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Change:
    """The exact change one step will make to one resource."""

    step: str  # the step id, e.g. "aws.s3.versioning"
    operation: Operation
    resource: dict[str, Any]  # identity(record)
    action: str  # the API call(s), e.g. "s3:PutBucketVersioning"
    request: dict[str, Any]  # the arguments of that call, as they will be sent
    before: dict[str, Any] | None  # None: the resource does not exist yet (create)
    after: dict[str, Any] | None  # None: the resource will not exist (delete)
    summary: str  # one human line: "bucket-a: versioning 'Disabled' -> 'Enabled'"
    destructive: bool = False
    depends_on: tuple[str, ...] = ()  # keys of changes that must be applied first

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise ValueError(f"operation must be one of {OPERATIONS}, not {self.operation!r}")
        object.__setattr__(self, "depends_on", tuple(self.depends_on))

    @property
    def key(self) -> str:
        return change_key(self.step, self.target, self.resource_id, self.operation)

    @property
    def resource_id(self) -> str:
        return str(self.resource["resource_id"])

    @property
    def target(self) -> str:
        return str(self.resource.get("target", ""))

    @property
    def record(self) -> ResourceRecord:
        return ResourceRecord.from_dict(self.resource)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["depends_on"] = list(self.depends_on)
        data["key"] = self.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["operation"] = cast(Operation, fields.get("operation", "update"))
        fields["depends_on"] = tuple(fields.get("depends_on") or ())
        return cls(**fields)


@dataclass(frozen=True)
class Applied:
    """What applying a change did: ``changed`` is False when the resource already had the planned state."""

    changed: bool
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request: dict[str, Any] | None = None  # the arguments as sent (None: nothing was sent)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Applied:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
