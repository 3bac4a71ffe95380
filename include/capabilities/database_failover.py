"""The database-failover capability: a replicated database's status, promotion, replica creation and fencing.

Failover and failback runbooks use only this interface; each cloud implements it in
``include/clouds/<cloud>/database_failover.py``:

=========  ============================================  ==================================================
cloud      implementation                                how it is tested
=========  ============================================  ==================================================
aws        RDS (``RdsHook`` clients, CloudWatch lag)      emulator-verified (moto server)
gcp        Cloud SQL Admin (``CloudSQLHook``), lag from   contract-tested (documented REST shapes, real hook
           Cloud Monitoring                               and discovery client, HTTP transport replaced)
azure      Azure Database for PostgreSQL flexible         contract-tested (ARM REST through the Azure
           server (ARM REST), lag from Azure Monitor      provider's credentials and azure-core's pipeline)
=========  ============================================  ==================================================

- ``status`` reads, never writes: whether the database exists, is available, is a replica (of what),
  its replication lag (``None`` = unknown: no recent metric) and whether it is fenced.
- ``promote`` starts the promotion of a replica to a standalone writer and returns the request as sent;
  the caller polls ``status`` with a bounded wait (promotion takes minutes on a real cloud).
- ``create_replica`` starts a new replica of ``source`` (failback rebuilds replication this way).
- ``fence`` stops the old primary from serving application traffic where the cloud allows it (RDS: its
  security groups are replaced by a quarantine group; Cloud SQL: the instance is stopped; Azure: public
  network access is disabled). Where it does not, :class:`NotSupported` says why.
- ``retire`` moves a database out of the name the catalog gives it (failback re-creates that name as a
  replica); only RDS can rename, the others raise :class:`NotSupported` with the reason.

Every implementation declares, per method, the cloud permissions it needs (``PERMISSIONS``), so a
least-privilege policy per runbook can be generated from the steps that call them.
This module imports no cloud SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from include.targets import Target

#: The methods an implementation declares permissions for.
METHODS = ("status", "promote", "create_replica", "fence", "retire")


class NotSupported(RuntimeError):
    """The cloud does not offer this operation (the message says why and what to do instead)."""


@dataclass(frozen=True)
class DatabaseRef:
    """One database as the service catalog names it: in which target and region, under which identifier."""

    target: str  # logical target name (config/targets.yaml)
    cloud: str
    account: str  # AWS account / GCP project / Azure subscription
    region: str
    identifier: str  # RDS DB instance identifier, Cloud SQL instance name, Azure server name
    resource_group: str | None = None  # Azure only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatabaseRef:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def renamed(self, identifier: str) -> DatabaseRef:
        return DatabaseRef(self.target, self.cloud, self.account, self.region, identifier, self.resource_group)


@dataclass(frozen=True)
class DatabaseStatus:
    """What the control plane says about one database (``exists`` False: everything else is empty)."""

    identifier: str
    exists: bool
    state: str | None = None  # the cloud's own word: available, RUNNABLE, Ready...
    available: bool = False  # the control plane says it serves connections
    is_replica: bool = False
    source: str | None = None  # the replica's source, as the cloud names it (ARN, project:instance, ARM id)
    replication_state: str | None = None  # replicating / Active / ... when the cloud reports one
    lag_seconds: float | None = None  # None: unknown (no recent datapoint)
    lag_observed_at: str | None = None  # ISO-8601 UTC of the datapoint
    fenced: bool = False
    endpoint: str | None = None
    resource_id: str | None = None  # ARN / Cloud SQL self link / ARM id
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatabaseStatus:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @property
    def writable(self) -> bool:
        """Accepts writes as far as the control plane tells: exists, available, not a replica, not fenced."""
        return self.exists and self.available and not self.is_replica and not self.fenced


@dataclass(frozen=True)
class ReplicaOptions:
    """How a new replica is created (anything not given is taken from the source)."""

    instance_class: str | None = None  # RDS instance class / Cloud SQL tier / Azure SKU name
    kms_key: str | None = None  # key in the replica's region (an encrypted cross-region RDS replica needs one)


@dataclass(frozen=True)
class FenceOptions:
    """Cloud-specific fencing input from the catalog (RDS: the quarantine security group)."""

    security_group: str | None = None


@runtime_checkable
class DatabaseFailover(Protocol):
    """A cloud's replicated databases, bound to one target (connection)."""

    #: Method name -> the cloud permissions that method needs.
    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]]

    def status(self, db: DatabaseRef) -> DatabaseStatus:
        """Existence, availability, replica role and source, lag and fencing (reads only)."""
        ...

    def promote(self, db: DatabaseRef) -> dict[str, Any]:
        """Start promoting the replica ``db`` to a standalone writer; return the request as sent."""
        ...

    def create_replica(self, source: DatabaseRef, replica: DatabaseRef, options: ReplicaOptions) -> dict[str, Any]:
        """Start creating ``replica`` as a read replica of ``source`` (possibly in another region)."""
        ...

    def fence(self, db: DatabaseRef, options: FenceOptions) -> dict[str, Any]:
        """Stop ``db`` from serving the application (or raise :class:`NotSupported`)."""
        ...

    def retire(self, db: DatabaseRef, new_identifier: str) -> dict[str, Any]:
        """Move ``db`` to ``new_identifier`` so its name is free (or raise :class:`NotSupported`)."""
        ...


def implementation(cloud: str) -> type[DatabaseFailover]:
    """The implementation class for ``cloud`` (from the capability registry; imports it lazily)."""
    from include.capabilities import REGISTRY, CapabilityError

    try:
        module_name, name = REGISTRY["database_failover"][cloud].split(":")
    except KeyError:
        raise CapabilityError(f"no database_failover implementation for cloud {cloud!r}") from None
    cls: type[DatabaseFailover] = getattr(importlib.import_module(module_name), name)
    return cls


def permissions_for(cloud: str, *methods: str) -> tuple[str, ...]:
    """The permissions ``methods`` of ``cloud``'s implementation need (sorted, unique)."""
    declared = implementation(cloud).PERMISSIONS
    unknown = [m for m in methods if m not in declared]
    if unknown:
        raise KeyError(f"database_failover for {cloud} declares no permissions for {', '.join(unknown)}")
    return tuple(sorted({p for m in methods for p in declared[m]}))


def database_failover(target: Target, **kwargs: Any) -> DatabaseFailover:
    """The database-failover capability of ``target`` (typed shortcut of ``capability(...)``)."""
    from include.capabilities import capability

    impl: DatabaseFailover = capability("database_failover", target, **kwargs)
    return impl
