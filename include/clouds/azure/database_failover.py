"""Azure Database for PostgreSQL flexible server implementation of the database-failover capability
(contract-tested: no emulator serves Azure Resource Manager).

ARM REST (``Microsoft.DBforPostgreSQL/flexibleServers``, api-version ``2024-08-01``) through the Azure
provider's credentials and azure-core's ARM pipeline (:mod:`include.clouds.azure.arm`); replica lag from Azure
Monitor (``physical_replication_delay_in_seconds``, api-version ``2023-10-01``).

- replica: ``properties.replica.role`` (or ``replicationRole``) ``AsyncReplica`` / ``GeoAsyncReplica``, with its
  ``sourceServerResourceId``;
- promote: PATCH ``properties.replica`` ``{promoteMode: standalone, promoteOption: forced}`` (202, then the
  server reports itself a primary);
- create a replica: PUT ``createMode: Replica`` with the source's id, in the replica's region;
- fence: public network access disabled (tag ``runbooks-fence`` records why); a VNet-integrated server cannot
  be fenced this way (its network security group is the place) and raises :class:`NotSupported`;
- retire: not possible (flexible servers cannot be renamed).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from include.capabilities.database_failover import (
    DatabaseRef,
    DatabaseStatus,
    FenceOptions,
    NotSupported,
    ReplicaOptions,
)
from include.clouds.azure.arm import ArmClient
from include.clouds.errors import is_not_found
from include.targets import Target

API_VERSION = "2024-08-01"
METRICS_API_VERSION = "2023-10-01"
LAG_METRIC = "physical_replication_delay_in_seconds"
LAG_WINDOW = 600
FENCE_TAG = "runbooks-fence"
REPLICA_ROLES = ("AsyncReplica", "GeoAsyncReplica")


def server_id(db: DatabaseRef) -> str:
    if not db.resource_group:
        raise NotSupported(f"{db.identifier}: an Azure database needs its resource_group in the catalog")
    return (f"/subscriptions/{db.account}/resourceGroups/{db.resource_group}/providers/"
            f"Microsoft.DBforPostgreSQL/flexibleServers/{db.identifier}")


class FlexibleServerFailover:
    """Azure Database for PostgreSQL flexible servers of one subscription (the target's)."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "status": ("Microsoft.DBforPostgreSQL/flexibleServers/read", "Microsoft.Insights/metrics/read"),
        "promote": ("Microsoft.DBforPostgreSQL/flexibleServers/write",),
        "create_replica": ("Microsoft.DBforPostgreSQL/flexibleServers/write",
                           "Microsoft.DBforPostgreSQL/flexibleServers/read"),
        "fence": ("Microsoft.DBforPostgreSQL/flexibleServers/write", "Microsoft.DBforPostgreSQL/flexibleServers/read"),
        "retire": (),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self.arm = ArmClient(target.conn_id)

    def _get(self, db: DatabaseRef) -> dict[str, Any] | None:
        try:
            _, body, _ = self.arm.call("GET", server_id(db), API_VERSION, ok=(200,))
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return dict(body or {})

    def status(self, db: DatabaseRef) -> DatabaseStatus:
        server = self._get(db)
        if server is None:
            return DatabaseStatus(identifier=db.identifier, exists=False)
        props = server.get("properties") or {}
        replica = props.get("replica") or {}
        role = replica.get("role") or props.get("replicationRole")
        is_replica = role in REPLICA_ROLES
        state = str(props.get("state") or "")
        network = props.get("network") or {}
        fenced = network.get("publicNetworkAccess") == "Disabled" and FENCE_TAG in (server.get("tags") or {})
        lag, seen = self._lag(db) if is_replica else (None, None)
        return DatabaseStatus(
            identifier=db.identifier, exists=True, state=state, available=state == "Ready", is_replica=is_replica,
            source=props.get("sourceServerResourceId") if is_replica else None,
            replication_state=replica.get("replicationState"), lag_seconds=lag, lag_observed_at=seen, fenced=fenced,
            endpoint=props.get("fullyQualifiedDomainName"), resource_id=server.get("id"),
            detail={"role": role, "location": server.get("location"), "sku": (server.get("sku") or {}).get("name"),
                    "public_network_access": network.get("publicNetworkAccess")},
        )

    def _lag(self, db: DatabaseRef) -> tuple[float | None, str | None]:
        now = datetime.now(UTC)
        span = f"{(now - timedelta(seconds=LAG_WINDOW)).strftime('%Y-%m-%dT%H:%M:%SZ')}/{now.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        _, body, _ = self.arm.call("GET", f"{server_id(db)}/providers/Microsoft.Insights/metrics", METRICS_API_VERSION,
                                   query={"metricnames": LAG_METRIC, "timespan": span, "interval": "PT1M",
                                          "aggregation": "Maximum"}, ok=(200,))
        points = [p for metric in (body or {}).get("value") or [] for series in metric.get("timeseries") or []
                  for p in series.get("data") or [] if p.get("maximum") is not None]
        if not points:
            return None, None
        newest = max(points, key=lambda p: str(p["timeStamp"]))
        return float(newest["maximum"]), str(newest["timeStamp"])

    def promote(self, db: DatabaseRef) -> dict[str, Any]:
        body = {"properties": {"replica": {"promoteMode": "standalone", "promoteOption": "forced"}}}
        self.arm.call("PATCH", server_id(db), API_VERSION, body=body, ok=(200, 202))
        return {"server": server_id(db), "body": body}

    def create_replica(self, source: DatabaseRef, replica: DatabaseRef, options: ReplicaOptions) -> dict[str, Any]:
        body: dict[str, Any] = {"location": replica.region,
                                "properties": {"createMode": "Replica", "sourceServerResourceId": server_id(source)}}
        if options.instance_class:
            body["sku"] = {"name": options.instance_class}
        self.arm.call("PUT", server_id(replica), API_VERSION, body=body, ok=(200, 201, 202))
        return {"server": server_id(replica), "body": body}

    def fence(self, db: DatabaseRef, options: FenceOptions) -> dict[str, Any]:
        server = self._get(db)
        if server is None:
            raise NotSupported(f"{db.identifier} does not exist: nothing to fence")
        network = (server.get("properties") or {}).get("network") or {}
        if network.get("delegatedSubnetResourceId"):
            raise NotSupported(f"{db.identifier} is VNet-integrated: fence it with its subnet's network security group "
                               "(public network access does not apply)")
        body = {"properties": {"network": {"publicNetworkAccess": "Disabled"}},
                "tags": {**(server.get("tags") or {}), FENCE_TAG: "publicNetworkAccess"}}
        self.arm.call("PATCH", server_id(db), API_VERSION, body=body, ok=(200, 202))
        return {"server": server_id(db), "body": body}

    def retire(self, db: DatabaseRef, new_identifier: str) -> dict[str, Any]:
        raise NotSupported(f"Azure Database for PostgreSQL flexible servers cannot be renamed ({db.identifier}): to fail "
                           "back under the catalog's name, delete the old primary by hand first (after a backup), or "
                           "give the primary side a new identifier in config/services.yaml")
