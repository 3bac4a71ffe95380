"""Cloud SQL implementation of the database-failover capability (contract-tested: no emulator serves Cloud SQL).

Through the Google provider's ``CloudSQLHook`` (its discovery client for the Cloud SQL Admin API
``v1beta4``, with the connection's credentials); replica lag from Cloud Monitoring (``monitoring`` v3,
metric ``cloudsql.googleapis.com/database/replication/replica_lag``) through the same hook's authorised HTTP.
The hook's own ``*_instance`` helpers wait on operations without a bound, so the requests are made here
and the callers poll ``status`` with their bounded waits.

- replica: ``instanceType`` ``READ_REPLICA_INSTANCE`` with a ``masterInstanceName``;
- promote: ``instances.promoteReplica``;
- create a replica: ``instances.insert`` with ``masterInstanceName`` (cross-region: the replica's region);
- fence: ``settings.activationPolicy: NEVER`` (the instance is stopped);
- retire: not possible (Cloud SQL cannot rename an instance, and keeps a deleted instance's name reserved for
  up to a week).
"""

from __future__ import annotations

import threading
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
from include.clouds.errors import is_not_found
from include.targets import Target

API_VERSION = "v1beta4"
LAG_METRIC = "cloudsql.googleapis.com/database/replication/replica_lag"
LAG_WINDOW = 600


class CloudSqlFailover:
    """Cloud SQL instances of one project (the target's)."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "status": ("cloudsql.instances.get", "monitoring.timeSeries.list"),
        "promote": ("cloudsql.instances.promoteReplica",),
        "create_replica": ("cloudsql.instances.create", "cloudsql.instances.get"),
        "fence": ("cloudsql.instances.update",),
        "retire": (),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self._hook: Any = None
        self._monitoring: Any = None
        self._lock = threading.RLock()

    @property
    def hook(self) -> Any:
        with self._lock:
            if self._hook is None:
                from airflow.providers.google.cloud.hooks.cloud_sql import CloudSQLHook

                self._hook = CloudSQLHook(api_version=API_VERSION, gcp_conn_id=self.target.conn_id)
            return self._hook

    def _instances(self) -> Any:
        return self.hook.get_conn().instances()

    def _get(self, db: DatabaseRef) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._instances().get(project=db.account, instance=db.identifier).execute()
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return found

    def status(self, db: DatabaseRef) -> DatabaseStatus:
        instance = self._get(db)
        if instance is None:
            return DatabaseStatus(identifier=db.identifier, exists=False)
        settings = instance.get("settings") or {}
        is_replica = instance.get("instanceType") == "READ_REPLICA_INSTANCE" and bool(instance.get("masterInstanceName"))
        state = str(instance.get("state") or "")
        fenced = settings.get("activationPolicy") == "NEVER"
        lag, seen = self._lag(db) if is_replica else (None, None)
        addresses = [a.get("ipAddress") for a in instance.get("ipAddresses") or [] if a.get("ipAddress")]
        return DatabaseStatus(
            identifier=db.identifier, exists=True, state=state, available=state == "RUNNABLE" and not fenced,
            is_replica=is_replica, source=instance.get("masterInstanceName") if is_replica else None,
            replication_state="replicating" if is_replica else None,
            lag_seconds=lag, lag_observed_at=seen, fenced=fenced, endpoint=addresses[0] if addresses else None,
            resource_id=instance.get("selfLink"),
            detail={"region": instance.get("region"), "database_version": instance.get("databaseVersion"),
                    "tier": settings.get("tier"), "replica_names": instance.get("replicaNames") or []},
        )

    def _lag(self, db: DatabaseRef) -> tuple[float | None, str | None]:
        """The newest ``replica_lag`` point of the last LAG_WINDOW seconds (None: none)."""
        with self._lock:
            if self._monitoring is None:
                from googleapiclient.discovery import build  # type: ignore[import-untyped]

                self._monitoring = build("monitoring", "v3", http=self.hook._authorize(), cache_discovery=False)
        now = datetime.now(UTC)
        answer = self._monitoring.projects().timeSeries().list(
            name=f"projects/{db.account}",
            filter=f'metric.type = "{LAG_METRIC}" AND resource.labels.database_id = "{db.account}:{db.identifier}"',
            interval_startTime=(now - timedelta(seconds=LAG_WINDOW)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            interval_endTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ).execute()
        points = [p for series in answer.get("timeSeries") or [] for p in series.get("points") or []]
        if not points:
            return None, None
        newest = max(points, key=lambda p: str(p["interval"]["endTime"]))
        value = newest.get("value") or {}
        number = value.get("doubleValue", value.get("int64Value"))
        return (float(number) if number is not None else None), str(newest["interval"]["endTime"])

    def promote(self, db: DatabaseRef) -> dict[str, Any]:
        operation = self._instances().promoteReplica(project=db.account, instance=db.identifier).execute()
        return {"project": db.account, "instance": db.identifier, "operation": operation.get("name")}

    def create_replica(self, source: DatabaseRef, replica: DatabaseRef, options: ReplicaOptions) -> dict[str, Any]:
        primary = self._get(source)
        if primary is None:
            raise NotSupported(f"Cloud SQL instance {source.identifier} does not exist: no replica can follow it")
        body = {
            "name": replica.identifier,
            "region": replica.region,
            "masterInstanceName": source.identifier,
            "databaseVersion": primary.get("databaseVersion"),
            "settings": {"tier": options.instance_class or (primary.get("settings") or {}).get("tier")},
        }
        operation = self._instances().insert(project=replica.account, body=body).execute()
        return {"body": body, "operation": operation.get("name")}

    def fence(self, db: DatabaseRef, options: FenceOptions) -> dict[str, Any]:
        body = {"settings": {"activationPolicy": "NEVER"}}
        operation = self._instances().patch(project=db.account, instance=db.identifier, body=body).execute()
        return {"body": body, "operation": operation.get("name")}

    def retire(self, db: DatabaseRef, new_identifier: str) -> dict[str, Any]:
        raise NotSupported(
            f"Cloud SQL cannot rename {db.identifier}, and a deleted instance's name stays reserved for up to a "
            "week: to fail back under the catalog's name, export and delete the old primary by hand first, or give "
            "the primary side a new identifier in config/services.yaml"
        )
