"""The one record shape every cloud's inventory is normalised into.

A ``ResourceRecord`` is what compliance rules, backup selection, drift detection and cost reports read.
Cloud-specific detail goes into ``attributes`` under the documented keys below, so a rule such as
"storage must be encrypted" reads ``attributes["encrypted"]`` whatever the cloud.

Standard attribute keys (present when the cloud can tell; absent means "not applicable / unknown"):

=========================  ===================================================================
``encrypted``              bool: data at rest encrypted (any key)
``kms_key``                str: customer-managed key id / ARN / name, when one is set
``versioning``             bool: object versioning enabled
``public``                 bool: reachable by anonymous users (ACL, policy, access level, IAM)
``public_reasons``         list[str]: why ``public`` is true (e.g. ``policy``, ``acl``, ``allUsers``)
``logging``                bool: access logging enabled
``retention_days``         int: backup / retention period in days
``size_bytes``             int: stored bytes (objects, volume size, table size)
``object_count``           int
``state``                  str: lifecycle state as the cloud names it (``running``, ``available``...)
``created_at``             str: ISO-8601 UTC creation time
``location``               str: the cloud's own location name when it differs from ``region``
=========================  ===================================================================

Service-specific keys are documented by the lister that sets them (see ``include/clouds/<cloud>/inventory/``).

One naming rule: ``resource_type`` is ``<cloud>.<service>.<kind>`` and ``service`` is its middle part
(:func:`service_of`), so remediation, rules and the inventory's ``services`` filter all name a resource's
service the same way (``gcp.storage.bucket`` -> ``storage``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


def utc_iso(value: datetime | str | None) -> str | None:
    """Normalise a timestamp to ISO-8601 UTC with a ``Z`` suffix (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_of(resource_type: str) -> str:
    """The service of a ``<cloud>.<service>.<kind>`` resource type (``gcp.storage.bucket`` -> ``storage``)."""
    parts = resource_type.split(".")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"resource type {resource_type!r} is not <cloud>.<service>.<kind>")
    return parts[1]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return value


@dataclass(frozen=True, slots=True)
class ResourceRecord:
    """One resource in one target, normalised across clouds."""

    cloud: str  # aws | gcp | azure
    target: str  # logical target name from config/targets.yaml
    account: str  # account id / project id / subscription id
    region: str  # region, or "global" for global services (IAM, Route 53, GCS is per-bucket location)
    service: str  # s3, ec2, rds, route53, iam, kms, cloudtrail, dynamodb, storage, compute ...
    resource_type: str  # "<cloud>.<service>.<kind>", e.g. aws.s3.bucket, gcp.storage.bucket (service_of)
    resource_id: str  # globally unique id: ARN, full resource name, blob container URL
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise once so a record round-trips through JSON unchanged.
        object.__setattr__(self, "tags", {str(k): str(v) for k, v in (self.tags or {}).items()})
        object.__setattr__(self, "attributes", _jsonable(self.attributes or {}))

    @property
    def key(self) -> str:
        """Stable identity across scans: target + resource id."""
        return f"{self.target}|{self.resource_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourceRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
