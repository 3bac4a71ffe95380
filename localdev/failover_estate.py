"""The local estate of the failover runbooks: what ``config/services.yaml``'s services need on the emulators.

Kept apart from ``config/estate.yaml`` / ``localdev/seed/`` (the main seed): this module only adds, and only
what is missing, for each AWS service of the catalog:

- the primary database and its cross-region read replica (the main seed already creates
  ``rb-orders-db`` / ``rb-orders-db-replica-eu``; in a fresh emulator they are created here),
- the Route 53 zone and the service's two records pointing at the local endpoints (failover or weighted
  records, the primary side answering),
- the quarantine security group of each side (fencing),
- and, while running, RDS's ``ReplicaLag`` metric for the catalog's replicas (:class:`LagPublisher`): moto
  publishes no RDS metrics, so this plays RDS's part (0 s by default; ``set_lag`` makes one lag or go silent).

:class:`LocalFailoverEstate` starts all of it with the two HTTP endpoints (:mod:`localdev.services`);
:func:`demo_drill` is what ``make demo`` calls to run ``failover_drill`` through the REST API and print the RTO.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from include.capabilities.database_failover import DatabaseRef
from include.clouds.aws.clients import client_for
from include.failover.catalog import (
    DEFAULT_SERVICES_FILE,
    Catalog,
    Service,
    database_ref,
    load_catalog,
    parse_catalog,
)
from include.targets import TargetsConfig, load_targets
from localdev.services import LocalServices


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


# ---- seed ----------------------------------------------------------------------------------------------
def seed_service(service: Service, targets: TargetsConfig | None = None) -> list[str]:
    """Create what ``service`` needs and is missing (AWS targets only); return what was created."""
    config = targets or load_targets()
    created: list[str] = []
    primary = database_ref(service.primary.database, config)
    standby = database_ref(service.standby.database, config)
    if config.get(primary.target).cloud != "aws":
        return created
    created += _databases(primary, standby, config)
    for side in (service.primary, service.standby):
        if side.fence.security_group:
            created += _security_group(config.get(side.database.target).conn_id, side.database.region,
                                       side.fence.security_group)
    created += _records(service, config)
    return created


def _rds(ref: DatabaseRef, config: TargetsConfig) -> Any:
    return client_for(config.get(ref.target), "rds", ref.region)


def _exists(ref: DatabaseRef, config: TargetsConfig) -> bool:
    found = _rds(ref, config).describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [ref.identifier]}])
    return bool(found["DBInstances"])


def _databases(primary: DatabaseRef, standby: DatabaseRef, config: TargetsConfig) -> list[str]:
    created = []
    if not _exists(primary, config):
        _rds(primary, config).create_db_instance(
            DBInstanceIdentifier=primary.identifier, Engine="postgres", DBInstanceClass="db.t3.micro",
            AllocatedStorage=20, MasterUsername="runbooks", MasterUserPassword=secrets.token_urlsafe(18),
            BackupRetentionPeriod=7, Tags=[{"Key": "seed-id", "Value": f"failover-{primary.identifier}"}])
        created.append(f"aws.rds.instance:{primary.identifier}")
    if not _exists(standby, config):
        from include.clouds.aws.ids import rds_instance_arn

        request: dict[str, Any] = {"DBInstanceIdentifier": standby.identifier, "DBInstanceClass": "db.t3.micro",
                                   "SourceDBInstanceIdentifier": primary.identifier}
        if primary.region != standby.region:
            request.update(SourceDBInstanceIdentifier=rds_instance_arn(primary.region, primary.account,
                                                                       primary.identifier),
                           SourceRegion=primary.region)
        _rds(standby, config).create_db_instance_read_replica(**request)
        created.append(f"aws.rds.instance:{standby.identifier}")
    return created


def _security_group(conn_id: str, region: str, name: str) -> list[str]:
    ec2 = client_for(conn_id, "ec2", region)
    if name.startswith("sg-") or ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [name]}])["SecurityGroups"]:
        return []
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    ec2.create_security_group(GroupName=name, Description="runbooks failover quarantine: no ingress",
                              **({"VpcId": vpcs[0]["VpcId"]} if vpcs else {}))
    return [f"aws.ec2.security_group:{region}/{name}"]


def _records(service: Service, config: TargetsConfig) -> list[str]:
    target = config.get(service.dns.target)
    r53 = client_for(target, "route53", target.regions[0])  # global service: any region of the partition
    zone = _fqdn(service.dns.zone)
    zones = [z for z in r53.list_hosted_zones_by_name(DNSName=zone)["HostedZones"] if z["Name"] == zone]
    created = []
    if zones:
        zone_id = str(zones[0]["Id"]).split("/")[-1]
    else:
        zone_id = str(r53.create_hosted_zone(Name=zone, CallerReference=f"failover-{secrets.token_hex(4)}")
                      ["HostedZone"]["Id"]).split("/")[-1]
        created.append(f"aws.route53.zone:{service.dns.zone}")
    present = {r.get("SetIdentifier") for r in r53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=_fqdn(service.dns.name), StartRecordType=service.dns.type)
        ["ResourceRecordSets"] if r["Name"] == _fqdn(service.dns.name) and r["Type"] == service.dns.type}
    changes = []
    for role, side in (("PRIMARY", service.primary), ("SECONDARY", service.standby)):
        ident = side.dns.set_identifier if service.dns.routing != "simple" else None
        if ident in present or (ident is None and present):
            continue
        rrset: dict[str, Any] = {"Name": _fqdn(service.dns.name), "Type": service.dns.type, "TTL": service.dns.ttl,
                                 "ResourceRecords": [{"Value": v} for v in side.dns.values]}
        if service.dns.routing == "failover":
            rrset.update(SetIdentifier=ident, Failover=role)
        elif service.dns.routing == "weighted":
            rrset.update(SetIdentifier=ident, Weight=side.dns.weight if role == "PRIMARY" else 0)
        changes.append({"Action": "CREATE", "ResourceRecordSet": rrset})
        created.append(f"aws.route53.record:{service.dns.name}/{ident or ''}")
        if service.dns.routing == "simple":
            break
    if changes:
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return created


# ---- RDS's ReplicaLag, played locally -----------------------------------------------------------------------
class LagPublisher:
    """Publishes ``AWS/RDS ReplicaLag`` for every catalog database that is a replica, every ``interval`` s."""

    def __init__(self, catalog: Catalog, targets: TargetsConfig | None = None, *, interval: float = 2.0) -> None:
        self.catalog, self.targets, self.interval = catalog, targets or load_targets(), interval
        self.lag: dict[str, float | None] = {}  # identifier -> seconds; None: publish nothing (unknown)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_lag(self, identifier: str, seconds: float | None) -> None:
        self.lag[identifier] = seconds
        self.publish_once()

    def publish_once(self) -> list[str]:
        from include.clouds.aws.database_failover import RdsFailover

        published = []
        for service in self.catalog.services:
            for side in (service.primary, service.standby):
                ref = database_ref(side.database, self.targets)
                target = self.targets.get(ref.target)
                if target.cloud != "aws":
                    continue
                status = RdsFailover(target).status(ref)
                value = self.lag.get(ref.identifier, 0.0)
                if not status.is_replica or value is None:
                    continue
                client_for(target, "cloudwatch", ref.region).put_metric_data(Namespace="AWS/RDS", MetricData=[{
                    "MetricName": "ReplicaLag", "Value": float(value), "Unit": "Seconds",
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": ref.identifier}]}])
                published.append(ref.identifier)
        return published

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish_once()
            except Exception as exc:  # the emulator went away (shutdown): say so once, stop publishing
                print(f"lag publisher stopped: {type(exc).__name__}: {exc}", flush=True)
                return

    def start(self) -> LagPublisher:
        self.publish_once()
        self._thread = threading.Thread(target=self._run, name="replica-lag", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# ---- the catalog for a running set of endpoints ----------------------------------------------------------------
def local_catalog(services: LocalServices, base: Path = DEFAULT_SERVICES_FILE, **overrides: Any) -> dict[str, Any]:
    """``base``'s catalog with the service's probe and drill URLs pointing at ``services`` (their ports), and
    ``overrides`` merged into that service's entry (e.g. ``policy={"auto_approve": []}``)."""
    raw = yaml.safe_load(base.read_text())
    for entry in raw["services"]:
        if entry["name"] != services.service:
            continue
        for side in ("primary", "standby"):
            entry[side]["probes"] = [{"url": f"{services.url(side)}/healthz", "expected_status": 200}]
        entry.setdefault("drill", {}).update(
            outage={"method": "POST", "url": f"{services.control_url}/primary/down"},
            restore={"method": "POST", "url": f"{services.control_url}/primary/up"})
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(entry.get(key), dict):
                entry[key] = {**entry[key], **value}
            else:
                entry[key] = value
    return dict(raw)


def write_catalog(path: Path, catalog: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    parse_catalog(path.read_text(), source=str(path))  # a broken catalog fails here, not in a task
    return path


@contextmanager
def local_failover_estate(service: str = "orders", *, catalog_file: Path | None = None,
                          services: LocalServices | None = None, lag_interval: float = 2.0
                          ) -> Iterator[tuple[LocalServices, LagPublisher]]:
    """Seed the service, start its endpoints and the lag publisher; stop both at the end."""
    catalog = load_catalog(catalog_file) if catalog_file else load_catalog()
    spec = catalog.get(service)
    local = services or LocalServices(service)
    local.start()
    publisher = LagPublisher(catalog, interval=lag_interval)
    try:
        seed_service(spec)
        publisher.start()
        yield local, publisher
    finally:
        publisher.stop()
        local.stop()


# ---- make demo -----------------------------------------------------------------------------------------------
def demo_drill(api: Any, service: str = "orders", timeout: float = 600.0) -> dict[str, Any]:
    """Run ``failover_drill`` for ``service`` through Airflow's REST API (``api``: :class:`localdev.stack.Api`),
    with the local endpoints and the lag publisher running in this process; print and return its RTO.

    Call it from ``make demo`` after the other runbooks (``localdev.stack.run_demo``), e.g.
    ``DEMO_RUNBOOKS`` cannot host it because the endpoints must live in the demo's own process.
    """
    from include.failover import history
    from localdev.stack import run_runbook

    with local_failover_estate(service):
        started = time.monotonic()
        run = run_runbook(api, "failover_drill", {"service": service, "dry_run": False,
                                                  "reason": "make demo: failover drill"}, timeout=timeout)
        took = time.monotonic() - started
    result: dict[str, Any] = json.loads(history.result_path(str(run["dag_run_id"])).read_text())
    figures = result.get("rto") or {}
    print(f"failover_drill: {result['status']} in {took:.1f}s (triggered through the REST API)", flush=True)
    print(f"  {service}: primary endpoint stopped for real -> failed over and verified in "
          f"{figures.get('rto_seconds')}s (RTO; our steps {figures.get('our_steps_seconds')}s), failed back in "
          f"{(result.get('failback') or {}).get('seconds')}s", flush=True)
    print(f"  result: {history.result_path(str(run['dag_run_id']))}", flush=True)
    return result
