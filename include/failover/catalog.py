"""The service catalog: which services can fail over, between which sides, and under which policy.

``config/services.yaml`` (or the file named by ``RUNBOOKS_SERVICES_FILE``) is validated when it is read:
a malformed entry is an error naming the service and the field (``service 'orders': standby.database.
identifier: Field required``), and every target it names must exist in ``config/targets.yaml``.

A service has a ``primary`` and a ``standby`` side. Each side has its database (the primary's, and the
standby's read replica of it), the HTTP health probes of its application endpoints (which may be in
another cloud than the database), its record in the service's DNS record set, and optionally how to fence
it. The policy says which alert severities are approved automatically (an empty list: always ask a
human) and whether fencing the old primary is required, best effort or off.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.capabilities.database_failover import DatabaseRef, FenceOptions, ReplicaOptions
from include.capabilities.dns import DnsSide, RecordSetRef
from include.paths import CONFIG_DIR
from include.targets import TargetsConfig, TargetsError, load_targets

DEFAULT_SERVICES_FILE = CONFIG_DIR / "services.yaml"
SERVICE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: Alert severities, most severe first (the incident-intake runbook maps alerts onto these).
SEVERITIES = ("critical", "high", "medium", "low")
Severity = Literal["critical", "high", "medium", "low"]
#: Which routings each cloud's DNS implementation can switch (include/capabilities/dns.py).
ROUTINGS_BY_CLOUD = {"aws": ("failover", "weighted", "simple"), "gcp": ("weighted", "simple"), "azure": ("simple",)}


class CatalogError(ValueError):
    """The catalog is missing or malformed, or names an unknown service / target."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Probe(_Model):
    """One HTTP health probe of an application endpoint."""

    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    expected_status: int = Field(default=200, ge=100, le=599)
    #: Overrides of the service's probe defaults.
    attempts: int | None = Field(default=None, ge=1, le=20)
    timeout_seconds: float | None = Field(default=None, gt=0, le=60)


class ProbeDefaults(_Model):
    attempts: int = Field(default=3, ge=1, le=20)
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    interval_seconds: float = Field(default=0.5, ge=0, le=60)


class Database(_Model):
    target: str = Field(min_length=1)
    region: str = Field(min_length=1)
    identifier: str = Field(min_length=1, max_length=63)
    resource_group: str | None = None  # Azure
    #: For a replica this side's database is re-created as (failback): class / tier and key in its region.
    instance_class: str | None = None
    kms_key: str | None = None


class Fence(_Model):
    security_group: str | None = None  # RDS: the quarantine group (no ingress) replacing the instance's groups


class DnsRecordSpec(_Model):
    values: tuple[str, ...] = Field(min_length=1)
    set_identifier: str | None = None
    weight: int = Field(default=100, ge=1, le=255)
    health_check_id: str | None = None


class Side(_Model):
    database: Database
    probes: tuple[Probe, ...] = Field(min_length=1)
    dns: DnsRecordSpec
    fence: Fence = Fence()


class DnsSpec(_Model):
    target: str = Field(min_length=1)
    zone: str = Field(min_length=1)
    name: str = Field(min_length=1)
    type: Literal["A", "AAAA", "CNAME"] = "A"
    ttl: int = Field(default=60, ge=1, le=86400)
    routing: Literal["failover", "weighted", "simple"] = "failover"
    resource_group: str | None = None  # Azure

    @field_validator("name", "zone")
    @classmethod
    def _no_trailing_dot(cls, value: str) -> str:
        return value.rstrip(".")


class Replication(_Model):
    #: The standby is refused when its replica lag is above this (seconds) or unknown.
    max_lag_seconds: float = Field(default=30, ge=0)
    #: A lag datapoint older than this does not count (unknown lag).
    lag_max_age_seconds: float = Field(default=300, gt=0)
    #: Bounded waits: promotion, a new replica becoming available and caught up, DNS in sync, verification.
    promote_timeout_seconds: float = Field(default=1800, gt=0)
    replica_timeout_seconds: float = Field(default=5400, gt=0)
    dns_timeout_seconds: float = Field(default=300, gt=0)
    verify_timeout_seconds: float = Field(default=120, gt=0)
    poll_interval_seconds: float = Field(default=15, gt=0)


class Policy(_Model):
    #: Severities approved without a human (empty: always ask).
    auto_approve: tuple[Severity, ...] = ()
    #: required: refuse when the old primary cannot be fenced; best_effort: skip fencing (recorded) when its
    #: control plane is unreachable; none: never fence.
    fence: Literal["required", "best_effort", "none"] = "best_effort"
    #: Failback is planned work: a human approves unless this is true.
    failback_auto_approve: bool = False


class Notify(_Model):
    channels: tuple[Literal["slack", "email"], ...] | None = None  # None: every configured channel
    recipients: tuple[str, ...] = ()  # who is told (shown in the notification)


class HttpAction(_Model):
    url: str = Field(pattern=r"^https?://\S+$")
    method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    expected_status: int = Field(default=200, ge=100, le=599)


class Drill(_Model):
    #: Drills stop the primary's endpoint for real: only where this is true (staging, the local estate).
    allowed: bool = False
    auto_approve: bool = False
    outage: HttpAction | None = None  # what stops the primary's endpoint
    restore: HttpAction | None = None  # what brings it back


class Service(_Model):
    name: str = Field(pattern=SERVICE_NAME_PATTERN)
    description: str = ""
    owner: str = Field(min_length=1)
    environment: str = "prod"
    primary: Side
    standby: Side
    dns: DnsSpec
    probe: ProbeDefaults = ProbeDefaults()
    replication: Replication = Replication()
    policy: Policy = Policy()
    notify: Notify = Notify()
    drill: Drill = Drill()

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        if self.dns.routing in ("failover", "weighted"):
            ids = [self.primary.dns.set_identifier, self.standby.dns.set_identifier]
            if not all(ids):
                raise ValueError(f"dns.routing {self.dns.routing} needs primary.dns.set_identifier and "
                                 "standby.dns.set_identifier")
            if ids[0] == ids[1]:
                raise ValueError("primary.dns.set_identifier and standby.dns.set_identifier must differ")
        if set(self.primary.dns.values) == set(self.standby.dns.values):
            raise ValueError("primary.dns.values and standby.dns.values are the same: a switch would change nothing")
        a, b = self.primary.database, self.standby.database
        if (a.target, a.region, a.identifier) == (b.target, b.region, b.identifier):
            raise ValueError("primary.database and standby.database are the same database")
        if self.drill.allowed and not (self.drill.outage and self.drill.restore):
            raise ValueError("drill.allowed needs drill.outage and drill.restore")
        return self

    def side(self, name: str) -> Side:
        if name == "primary":
            return self.primary
        if name == "standby":
            return self.standby
        raise KeyError(name)


class Catalog(_Model):
    services: tuple[Service, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        names = [s.name for s in self.services]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate service names: {', '.join(dupes)}")
        return self

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def get(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise CatalogError(f"unknown service {name!r}; known services: {', '.join(self.names)}")


# ---- loading -------------------------------------------------------------------------------------------
def services_file() -> Path:
    return Path(os.environ.get("RUNBOOKS_SERVICES_FILE", DEFAULT_SERVICES_FILE))


def _where(raw: Any, loc: tuple[Any, ...]) -> str:
    """``service 'orders': primary.database.identifier`` from a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "services" and isinstance(loc[1], int):
        name: Any = None
        try:
            name = raw["services"][loc[1]].get("name")
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        label = f"service {name!r}" if name else f"services[{loc[1]}]"
        rest = ".".join(str(p) for p in loc[2:])
        return f"{label}: {rest}" if rest else label
    return ".".join(str(p) for p in loc) or "<root>"


def parse_catalog(text: str, source: str = "<string>", targets: TargetsConfig | None = None) -> Catalog:
    """Parse and validate a catalog document, including the targets it names and the DNS routing per cloud."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'services' list")
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as exc:
        found = "; ".join(f"{_where(raw, tuple(e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CatalogError(f"{source}: invalid service catalog: {found}") from None
    problems = _target_problems(catalog, targets)
    if problems:
        raise CatalogError(f"{source}: invalid service catalog: " + "; ".join(problems))
    return catalog


def _target_problems(catalog: Catalog, targets: TargetsConfig | None) -> list[str]:
    try:
        config = targets or load_targets()
    except TargetsError as exc:
        return [str(exc)]
    problems = []
    for service in catalog.services:
        problems.extend(_replication_problems(service, config))
        refs = {"primary.database.target": service.primary.database.target,
                "standby.database.target": service.standby.database.target, "dns.target": service.dns.target}
        for field, name in refs.items():
            try:
                target = config.get(name)
            except TargetsError as exc:
                problems.append(f"service {service.name!r}: {field}: {exc}")
                continue
            if field == "dns.target" and service.dns.routing not in ROUTINGS_BY_CLOUD[target.cloud]:
                problems.append(f"service {service.name!r}: dns.routing: {service.dns.routing} records cannot be "
                                f"switched on {target.cloud} (supported: {', '.join(ROUTINGS_BY_CLOUD[target.cloud])})")
            if target.cloud == "azure" and field.endswith("target"):
                group = service.dns.resource_group if field == "dns.target" else \
                    service.side(field.split(".")[0]).database.resource_group
                if not group:
                    problems.append(f"service {service.name!r}: {field.rsplit('.', 1)[0]}.resource_group: "
                                    "required for an azure target")
    return problems


def _replication_problems(service: Service, config: TargetsConfig) -> list[str]:
    """The standby's database is a managed read replica of the primary's: both must be on one cloud (the
    application endpoints and the DNS zone may be anywhere)."""
    try:
        clouds = {side: config.get(service.side(side).database.target).cloud for side in ("primary", "standby")}
    except TargetsError:
        return []  # reported per field below
    if clouds["primary"] == clouds["standby"]:
        return []
    return [f"service {service.name!r}: standby.database.target: the standby's database ({clouds['standby']}) cannot be "
            f"a managed read replica of the primary's ({clouds['primary']}); both databases must be on one cloud, "
            "only the endpoints and the DNS zone may be elsewhere"]


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float, targets_key: int) -> Catalog:
    return parse_catalog(Path(path).read_text(), source=path)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Load the service catalog (cached per path and modification time)."""
    file = Path(path) if path else services_file()
    if not file.exists():
        raise CatalogError(f"service catalog not found: {file}")
    from include.targets import targets_file

    targets = targets_file()
    return _load_cached(str(file), file.stat().st_mtime, hash((str(targets), targets.stat().st_mtime
                                                                if targets.exists() else 0)))


# ---- from catalog entries to capability references -------------------------------------------------------
def database_ref(database: Database, targets: TargetsConfig | None = None) -> DatabaseRef:
    target = (targets or load_targets()).get(database.target)
    return DatabaseRef(target=target.name, cloud=target.cloud, account=target.account, region=database.region,
                       identifier=database.identifier, resource_group=database.resource_group)


def record_set_ref(service: Service, targets: TargetsConfig | None = None) -> RecordSetRef:
    target = (targets or load_targets()).get(service.dns.target)
    sides = tuple(
        DnsSide(side=name, values=spec.dns.values, set_identifier=spec.dns.set_identifier, weight=spec.dns.weight,
                health_check_id=spec.dns.health_check_id)
        for name, spec in (("primary", service.primary), ("standby", service.standby))
    )
    return RecordSetRef(target=target.name, cloud=target.cloud, account=target.account, zone=service.dns.zone,
                        name=service.dns.name, type=service.dns.type, ttl=service.dns.ttl, routing=service.dns.routing,
                        sides=sides, resource_group=service.dns.resource_group)


def replica_options(database: Database) -> ReplicaOptions:
    return ReplicaOptions(instance_class=database.instance_class, kms_key=database.kms_key)


def fence_options(side: Side) -> FenceOptions:
    return FenceOptions(security_group=side.fence.security_group)
