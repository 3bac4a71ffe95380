"""Change-engine steps of failover and failback, over the ``database_failover`` and ``dns`` capabilities.

Each step reads the live state, says what it wants, writes only what is missing and waits, bounded, for
the cloud to finish (a promotion, a new replica, a DNS change reaching every name server). One class per
step works on every cloud: the capability of the record's target does the talking, and the step's
``permissions`` are those its capability methods declare for that cloud (``step_class(id, cloud)``).

============================  =========================================================  ==================
step                          wants                                                      capability calls
============================  =========================================================  ==================
``failover.fence``            the old primary fenced                                     status, fence
``failover.promote``          the replica promoted to a writer, available                status, promote
``failover.switch_dns``       the service's name answers one side (then in sync)         read, switch,
                                                                                         in_sync
``failover.rebuild_replica``  a replica of the new primary under the catalog's name      status, retire,
                              (whatever held that name is retired first, never deleted)  create_replica
============================  =========================================================  ==================

A change carries only its resource's identity, so a step finds the rest from that identity and its options:
the database reference from the record (target, region, identifier), the service's catalog entry from
``options["service"]`` (fence group, replica options, the other side's database as a new replica's source,
the DNS record set), where DNS should point from ``options["dns_to"]``, the retire name from
``options["key"]`` (the ledger key).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from include.capabilities.database_failover import DatabaseFailover, DatabaseRef, DatabaseStatus
from include.capabilities.database_failover import permissions_for as db_permissions
from include.capabilities.dns import Dns, DnsChange, RecordSetRef
from include.capabilities.dns import permissions_for as dns_permissions
from include.changes.engine import Item, StepCache
from include.changes.model import ChangeError
from include.changes.step import Step, UpdateStep
from include.changes.waiting import poll_until
from include.failover.catalog import Service, Side, database_ref, fence_options, record_set_ref, replica_options
from include.records import ResourceRecord
from include.targets import TargetsConfig

DB_SERVICE = {"aws": "rds", "gcp": "sql", "azure": "postgresql"}
DB_KIND = {"aws": "instance", "gcp": "instance", "azure": "server"}
DB_TYPES = tuple(f"{c}.{DB_SERVICE[c]}.{DB_KIND[c]}" for c in ("aws", "gcp", "azure"))
DNS_TYPES = ("aws.route53.record", "gcp.dns.record", "azure.dns.record")
#: The option carrying an assessment's reads into planning (:func:`observed_options`), and how old they may be.
OBSERVED = "observed"
OBSERVED_MAX_AGE = 60.0


# ---- records for the engine --------------------------------------------------------------------------------
def db_resource_id(ref: DatabaseRef) -> str:
    """The database's cloud id: RDS ARN, Cloud SQL resource name, Azure ARM id."""
    if ref.cloud == "aws":
        from include.clouds.aws.ids import rds_instance_arn

        return rds_instance_arn(ref.region, ref.account, ref.identifier)
    if ref.cloud == "gcp":
        return f"//sqladmin.googleapis.com/projects/{ref.account}/instances/{ref.identifier}"
    return (f"/subscriptions/{ref.account}/resourceGroups/{ref.resource_group}/providers/"
            f"Microsoft.DBforPostgreSQL/flexibleServers/{ref.identifier}")


def db_record(ref: DatabaseRef) -> ResourceRecord:
    return ResourceRecord(
        cloud=ref.cloud, target=ref.target, account=ref.account, region=ref.region, service=DB_SERVICE[ref.cloud],
        resource_type=f"{ref.cloud}.{DB_SERVICE[ref.cloud]}.{DB_KIND[ref.cloud]}", resource_id=db_resource_id(ref),
        name=ref.identifier,
    )


def db_ref_of(record: ResourceRecord) -> DatabaseRef:
    """The database reference back from a record's identity (Azure: the resource group from the ARM id)."""
    group = None
    if record.cloud == "azure":
        parts = record.resource_id.split("/")
        group = parts[parts.index("resourceGroups") + 1] if "resourceGroups" in parts else None
    return DatabaseRef(target=record.target, cloud=record.cloud, account=record.account, region=record.region,
                       identifier=record.name, resource_group=group)


def dns_record(rs: RecordSetRef) -> ResourceRecord:
    service = {"aws": "route53", "gcp": "dns", "azure": "dns"}[rs.cloud]
    return ResourceRecord(
        cloud=rs.cloud, target=rs.target, account=rs.account, region="global", service=service,
        resource_type=f"{rs.cloud}.{service}.record", resource_id=f"dns://{rs.target}/{rs.zone}/{rs.name}/{rs.type}",
        name=rs.name,
    )


def retired_identifier(identifier: str, key: str) -> str:
    """Where ``retire`` moves a database: ``<id>-retired-<8 hex of the key>`` (deterministic per key: a rerun
    finds the same name), a valid RDS identifier (letters, digits, single hyphens, at most 63)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    base = re.sub(r"-+", "-", identifier[:44]).strip("-")
    return f"{base}-retired-{digest}"


def same_database(source: str | None, status: DatabaseStatus) -> bool:
    """Whether a replica's ``source`` (as the cloud names it) is the database ``status`` describes."""
    if not source or not status.exists:
        return False
    names = {status.identifier, status.resource_id or ""}
    return source in names or source.rsplit(":", 1)[-1] == status.identifier or source.rsplit("/", 1)[-1] == \
        status.identifier


# ---- steps -----------------------------------------------------------------------------------------------
class _CapabilityStep(UpdateStep):
    """Shared plumbing: the capability of the record's target, the run's options (bounded waits)."""

    #: Capability methods ``write`` / ``read`` call (their permissions are the step's).
    uses: ClassVar[tuple[str, ...]] = ()
    capability_name: ClassVar[str] = "database_failover"

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        super().__init__(options, targets)
        self._observed: dict[str, Any] = dict(self.options.pop(OBSERVED, None) or {})

    def observed(self, record: ResourceRecord) -> Any:
        """What the run's assessment read of ``record`` moments ago (see :func:`observed_options`), once:
        the next read of the record goes to the cloud. None: nothing observed, read live."""
        return self._observed.pop(record.resource_id, None)

    @classmethod
    def permissions_for(cls, cloud: str) -> tuple[str, ...]:
        if cls.capability_name == "dns":
            return dns_permissions(cloud, *cls.uses)
        return db_permissions(cloud, *cls.uses)

    def option(self, name: str, default: float) -> float:
        return float(self.options.get(name) or default)

    def service(self) -> Service:
        from include.failover.catalog import load_catalog

        return load_catalog().get(str(self.options["service"]))

    def side_of(self, record: ResourceRecord) -> Side:
        """The catalog side whose database ``record`` is (by target, region and identifier)."""
        service = self.service()
        for side in (service.primary, service.standby):
            d = side.database
            if (d.target, d.region, d.identifier) == (record.target, record.region, record.name):
                return side
        raise ChangeError(f"{record.name} ({record.region}) is neither side's database of service {service.name}")

    def wait(self, probe: Any, done: Any, *, timeout_option: str, default: float, what: str) -> Any:
        return poll_until(probe, done, timeout=self.option(timeout_option, default),
                          interval=self.option("poll_interval_seconds", 15), what=what, clock=self.clock,
                          sleep=self.sleep)


class _DatabaseStep(_CapabilityStep):
    resource_types = DB_TYPES

    def cap(self, record: ResourceRecord) -> DatabaseFailover:
        from include.capabilities.database_failover import database_failover

        target = self.target(record)
        impl: DatabaseFailover = self.client(("database_failover", target.name),
                                             lambda: database_failover(target))
        return impl

    @staticmethod
    def ref(record: ResourceRecord) -> DatabaseRef:
        return db_ref_of(record)

    def existing(self, record: ResourceRecord) -> DatabaseStatus:
        seen = self.observed(record)
        status = DatabaseStatus.from_dict(seen) if seen else self.cap(record).status(self.ref(record))
        if not status.exists:
            raise ChangeError(f"{record.cloud} database {record.name} ({record.region}) does not exist")
        return status


class FenceDatabase(_DatabaseStep):
    """Fence the old primary so no application reaches it (RDS: quarantine security group)."""

    id = "failover.fence"
    action = "fence"
    operation = "action"
    uses = ("status", "fence")

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        return {"fenced": self.existing(record).fenced}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"fenced": True}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"database": record.name, "region": record.region,
                "security_group": self.side_of(record).fence.security_group}

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return self.cap(record).fence(self.ref(record), fence_options(self.side_of(record)))


class PromoteReplica(_DatabaseStep):
    """Promote the replica to a standalone writer and wait (bounded) until it is available."""

    id = "failover.promote"
    action = "promote"
    operation = "action"
    destructive = True  # replication from the old primary ends for good
    uses = ("status", "promote")

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        status = self.existing(record)
        return {"replica": status.is_replica, "available": status.available}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"replica": False, "available": True}

    def accepted(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        return state.get("replica") is False

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"database": record.name, "region": record.region}

    def describe(self, record: ResourceRecord, before: Any, after: Any) -> str:
        return f"{record.name} ({record.region}): promote the read replica to a standalone writer"

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        sent = self.cap(record).promote(self.ref(record))
        self.wait(lambda: self.read(record), lambda s: self.satisfied(s, desired), timeout_option="promote_timeout_seconds",
                  default=1800, what=f"promotion of {record.name}")
        return sent


class SwitchDns(_CapabilityStep):
    """Make the service's name answer one side (``options["dns_to"]``), then wait until the change is in sync."""

    id = "failover.switch_dns"
    action = "switch_dns"
    operation = "action"
    uses = ("read", "switch", "in_sync")
    capability_name = "dns"
    resource_types = DNS_TYPES

    def cap(self, record: ResourceRecord) -> Dns:
        from include.capabilities.dns import dns

        target = self.target(record)
        impl: Dns = self.client(("dns", target.name), lambda: dns(target))
        return impl

    def rs(self, record: ResourceRecord) -> RecordSetRef:
        return record_set_ref(self.service(), self._targets)

    def to(self) -> str:
        return str(self.options["dns_to"])

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        seen = self.observed(record)
        if seen:
            return {"active": seen.get("active"), "answer": list(seen.get("answer") or [])}
        state = self.cap(record).read(self.rs(record))
        return {"active": state.active, "answer": list(state.answer)}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"active": self.to()}

    def project(self, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {"active": state.get("active"), "answer": state.get("answer")}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        rs = self.rs(record)
        side = rs.side(self.to())
        return {"name": rs.name, "type": rs.type, "routing": rs.routing, "to": side.side, "values": list(side.values)}

    def describe(self, record: ResourceRecord, before: Any, after: Any) -> str:
        rs = self.rs(record)
        return (f"{rs.name} {rs.type} ({rs.routing}): answers {before.get('active') or before.get('answer')} -> "
                f"{self.to()} {list(rs.side(self.to()).values)}")

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        rs = self.rs(record)
        cap = self.cap(record)
        change: DnsChange = cap.switch(rs, self.to())
        self.wait(lambda: cap.in_sync(rs, change), bool, timeout_option="dns_timeout_seconds", default=300,
                  what=f"DNS change {change.change_id} of {rs.name} to be in sync")
        return {"change_id": change.change_id, "request": change.request}


class RebuildReplica(_DatabaseStep):
    """A replica of the other side's database under this side's catalog name, available (bounded wait).

    Whatever else holds that name (the fenced old primary) is retired first: renamed to
    :func:`retired_identifier`, never deleted.
    """

    id = "failover.rebuild_replica"
    action = "rebuild_replica"
    operation = "action"
    uses = ("status", "retire", "create_replica")

    def source(self, record: ResourceRecord) -> DatabaseRef:
        """The other side's database (the new primary this replica follows)."""
        service = self.service()
        mine = self.side_of(record)
        other = service.standby if mine is service.primary else service.primary
        return database_ref(other.database, self._targets)

    def retire_as(self, record: ResourceRecord) -> str:
        return retired_identifier(record.name, str(self.options["key"]))

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        cap = self.cap(record)
        here = cap.status(self.ref(record))
        source = cap.status(self.source(record))
        ours = here.exists and here.is_replica and same_database(here.source, source)
        return {"replica_of_source": bool(ours), "available": bool(ours and here.available),
                "occupied_by_other": bool(here.exists and not ours)}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"replica_of_source": True, "available": True, "occupied_by_other": False}

    def accepted(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        return bool(state.get("replica_of_source"))

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        request: dict[str, Any] = {"replica": record.name, "region": record.region, "source": self.source(record).identifier,
                                   "source_region": self.source(record).region}
        if state.get("occupied_by_other"):
            request["retire_existing_as"] = self.retire_as(record)
        return request

    def describe(self, record: ResourceRecord, before: Any, after: Any) -> str:
        src = self.source(record)
        retire = (f"rename the existing {record.name} to {self.retire_as(record)}, then "
                  if before and before.get("occupied_by_other") else "")
        return f"{retire}create {record.name} ({record.region}) as a read replica of {src.identifier} ({src.region})"

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        cap = self.cap(record)
        ref = self.ref(record)
        sent: dict[str, Any] = {}
        if state.get("occupied_by_other"):
            sent["retire"] = cap.retire(ref, self.retire_as(record))
            self.wait(lambda: cap.status(ref), lambda s: not s.exists, timeout_option="replica_timeout_seconds",
                      default=5400, what=f"{record.name} to be renamed")
        options = replica_options(self.side_of(record).database)
        sent["create_replica"] = cap.create_replica(self.source(record), ref, options)
        self.wait(lambda: self.read(record), lambda s: self.satisfied(s, desired), timeout_option="replica_timeout_seconds",
                  default=5400, what=f"replica {record.name} to be available")
        return sent


def observed_options(options: Mapping[str, Any], reads: Mapping[str, Mapping[str, Any] | None], *,
                     read_at: str | None, max_age: float = OBSERVED_MAX_AGE,
                     now: datetime | None = None) -> dict[str, Any]:
    """``options`` plus what an assessment just read (resource id -> ``DatabaseStatus`` / ``RecordSetState``
    as dicts), so planning does not read the same resources again a second later.

    Only for planning: each step's first read of a resource takes the observation, every later read (the
    re-read before a write, the read-back, the waits) goes to the cloud; applying steps never get
    observations. Reads older than ``max_age`` seconds (a decide retried or cleared long after its
    assessment), failed reads (None) and a missing ``read_at`` are left out: the plan reads those live.
    """
    from include.failover.history import parse_time

    finished = parse_time(read_at) if read_at else None
    age = ((now or datetime.now(UTC)) - finished).total_seconds() if finished else None
    fresh = {rid: dict(data) for rid, data in reads.items() if data}
    if age is None or not 0 <= age <= max_age or not fresh:
        return dict(options)
    return {**options, OBSERVED: fresh}


STEPS: dict[str, type[_CapabilityStep]] = {
    cls.id: cls for cls in (FenceDatabase, PromoteReplica, SwitchDns, RebuildReplica)
}
_MADE: dict[tuple[str, str], type[Step[Any]]] = {}


def step_class(step_id: str, cloud: str) -> type[Step[Any]]:
    """The step ``step_id`` for ``cloud``: the same class, with that cloud's declared permissions."""
    key = (step_id, cloud)
    if key not in _MADE:
        base = STEPS[step_id]
        _MADE[key] = type(f"{base.__name__}_{cloud}", (base,), {"cloud": cloud,
                                                                 "permissions": base.permissions_for(cloud)})
    return _MADE[key]


def resolver(options: Mapping[str, Any], targets: TargetsConfig | None = None) -> StepCache:
    """The engine's step resolver for failover items (one step instance per thread, clients reused)."""
    return StepCache(lambda item: step_class(item.step, item.record.cloud)(options, targets))


def item(step_id: str, record: ResourceRecord, **labels: Any) -> Item:
    return Item(step=step_id, record=record, labels=dict(labels))
