"""The DNS capability: read and switch the record set that sends a service's traffic to one side, and wait
until the change is in sync.

A service's record set has one record per side (primary, standby), each carrying that side's values (IP
addresses or a host name). Which side the name answers depends on the routing:

=============  ==============================================================  ===============================
routing        the name answers                                                switching to side X
=============  ==============================================================  ===============================
``failover``   the side whose record has the ``PRIMARY`` failover role         X's record becomes PRIMARY, the
                                                                                other SECONDARY (one batch)
``weighted``   every side with a weight above 0                                X gets its weight, the other 0
``simple``     the values of the one record                                    the record gets X's values
=============  ==============================================================  ===============================

Records keep their side's values for ever (``failover`` / ``weighted``): a switch changes roles or weights,
never addresses, so a record always says which side it is.

=========  ===========================================  ============================================
cloud      implementation                               routings / how it is tested
=========  ===========================================  ============================================
aws        Route 53 (``AwsBaseHook`` client)             all three; emulator-verified (moto server)
gcp        Cloud DNS v1 (discovery client through        weighted (``wrr``) and simple; contract-tested
           ``GoogleBaseHook`` credentials)
azure      Azure DNS (ARM REST through the Azure          simple (Azure DNS has no routing policies: use
           provider's credentials)                        Traffic Manager); contract-tested
=========  ===========================================  ============================================

The "answer" here is computed from the authoritative record data the API returns (what the provider's
name servers serve), not from a resolver query: no emulator serves DNS queries, and a resolver caches
for the TTL anyway. Health checks are not evaluated (the emulator's are always healthy): the runbooks
probe the endpoints themselves.
This module imports no cloud SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from include.targets import Target

Routing = Literal["failover", "weighted", "simple"]
ROUTINGS: tuple[Routing, ...] = ("failover", "weighted", "simple")
SIDES = ("primary", "standby")


class DnsError(RuntimeError):
    """The record set is not as the catalog describes it (missing record, unknown values...)."""


@dataclass(frozen=True)
class DnsSide:
    """One side's record: its values, its set identifier (failover / weighted) and weight / health check."""

    side: str  # primary | standby
    values: tuple[str, ...]
    set_identifier: str | None = None
    weight: int = 100
    health_check_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))


@dataclass(frozen=True)
class RecordSetRef:
    """The record set of a service: where it lives, its routing and both sides' records."""

    target: str
    cloud: str
    account: str
    zone: str  # zone name (example.com)
    name: str  # fully qualified record name, without the trailing dot
    type: str  # A, AAAA, CNAME
    ttl: int
    routing: Routing
    sides: tuple[DnsSide, ...]
    resource_group: str | None = None  # Azure only

    def __post_init__(self) -> None:
        object.__setattr__(self, "sides", tuple(self.sides))

    def side(self, name: str) -> DnsSide:
        for side in self.sides:
            if side.side == name:
                return side
        raise DnsError(f"record set {self.name}: no side {name!r} (sides: {', '.join(s.side for s in self.sides)})")

    def other(self, name: str) -> DnsSide:
        return next(s for s in self.sides if s.side != name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sides"] = [asdict(s) for s in self.sides]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordSetRef:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["sides"] = tuple(DnsSide(**dict(s)) for s in data["sides"])
        return cls(**fields)


@dataclass(frozen=True)
class DnsRecord:
    """One record of the set as the cloud has it, normalised."""

    values: tuple[str, ...]
    set_identifier: str | None = None
    failover: str | None = None  # PRIMARY / SECONDARY (failover routing)
    weight: int | None = None  # weighted routing
    ttl: int | None = None
    health_check_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(self.values)))


@dataclass(frozen=True)
class RecordSetState:
    """The record set now: its records, the values the name answers and which side that is."""

    records: tuple[DnsRecord, ...]
    answer: tuple[str, ...]
    active: str | None  # primary | standby | None (mixed or unknown values)

    def to_dict(self) -> dict[str, Any]:
        return {"records": [asdict(r) for r in self.records], "answer": list(self.answer), "active": self.active}


@dataclass(frozen=True)
class DnsChange:
    """A change the cloud accepted: its id (None where the change is synchronous) and the request as sent."""

    change_id: str | None
    status: str
    request: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Dns(Protocol):
    """A cloud's DNS zones, bound to one target (connection)."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]]

    def read(self, rs: RecordSetRef) -> RecordSetState:
        """The record set's records, its answer and the active side (reads only)."""
        ...

    def switch(self, rs: RecordSetRef, side: str) -> DnsChange:
        """Make the name answer ``side`` (one atomic change); return the accepted change."""
        ...

    def in_sync(self, rs: RecordSetRef, change: DnsChange) -> bool:
        """Whether ``change`` has reached every authoritative name server (Route 53 INSYNC, Cloud DNS done)."""
        ...


# ---- shared evaluation (every implementation normalises records, then these decide) ------------------------
def evaluate(rs: RecordSetRef, records: Sequence[DnsRecord]) -> RecordSetState:
    """What the name answers and which side that is, from the normalised records."""
    if rs.routing == "failover":
        answering = [r for r in records if (r.failover or "").upper() == "PRIMARY"]
    elif rs.routing == "weighted":
        answering = [r for r in records if (r.weight or 0) > 0]
    else:
        answering = list(records)
    answer = tuple(sorted({v for r in answering for v in r.values}))
    active = None
    for side in rs.sides:
        if answer and set(answer) == set(side.values):
            active = side.side
    return RecordSetState(records=tuple(records), answer=answer, active=active)


def record_for(rs: RecordSetRef, records: Sequence[DnsRecord], side: DnsSide) -> DnsRecord:
    """The record of ``side`` (by set identifier), or a :class:`DnsError` naming what exists."""
    for record in records:
        if record.set_identifier == side.set_identifier:
            return record
    have = ", ".join(str(r.set_identifier) for r in records) or "none"
    raise DnsError(f"{rs.name} {rs.type}: no record with set identifier {side.set_identifier!r} "
                   f"(the {side.side} side's); records: {have}")


def implementation(cloud: str) -> type[Dns]:
    """The implementation class for ``cloud`` (from the capability registry; imports it lazily)."""
    from include.capabilities import REGISTRY, CapabilityError

    try:
        module_name, name = REGISTRY["dns"][cloud].split(":")
    except KeyError:
        raise CapabilityError(f"no dns implementation for cloud {cloud!r}") from None
    cls: type[Dns] = getattr(importlib.import_module(module_name), name)
    return cls


def permissions_for(cloud: str, *methods: str) -> tuple[str, ...]:
    declared = implementation(cloud).PERMISSIONS
    return tuple(sorted({p for m in methods for p in declared[m]}))


def dns(target: Target, **kwargs: Any) -> Dns:
    """The DNS capability of ``target`` (typed shortcut of ``capability("dns", target)``)."""
    from include.capabilities import capability

    impl: Dns = capability("dns", target, **kwargs)
    return impl
