"""Cloud DNS implementation of the DNS capability (contract-tested: no emulator serves Cloud DNS).

The Google provider has no Cloud DNS hook: the discovery client (``dns`` v1, its bundled discovery
document) is built on the authorised HTTP of the provider's ``GoogleBaseHook`` for the target's connection,
so credentials, impersonation and scopes are the provider's.

- weighted: a record set with ``routingPolicy.wrr`` items (weight + rrdatas); each side is the item carrying
  its values (Cloud DNS items have no set identifier). A switch gives the chosen side its weight and the
  other 0. simple: the record set's ``rrdatas``.
- Cloud DNS failover policies (``primaryBackup``) only route to health-checked internal load balancers: not
  switchable here (the catalog refuses ``routing: failover`` on gcp).
- A switch is one ``changes.create`` (the old record set deleted and the new one added atomically); it is in
  sync when ``changes.get`` says ``done``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from include.capabilities.dns import DnsChange, DnsError, DnsRecord, RecordSetRef, RecordSetState, evaluate
from include.targets import Target


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


class CloudDns:
    """Managed zones of one project (the target's)."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "read": ("dns.managedZones.list", "dns.resourceRecordSets.list"),
        "switch": ("dns.changes.create", "dns.resourceRecordSets.create", "dns.resourceRecordSets.delete",
                   "dns.resourceRecordSets.list", "dns.managedZones.list"),
        "in_sync": ("dns.changes.get",),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self._service: Any = None
        self._zones: dict[str, str] = {}
        self._lock = threading.RLock()

    @property
    def service(self) -> Any:
        with self._lock:
            if self._service is None:
                from airflow.providers.google.common.hooks.base_google import GoogleBaseHook
                from googleapiclient.discovery import build  # type: ignore[import-untyped]

                hook = GoogleBaseHook(gcp_conn_id=self.target.conn_id)
                self._service = build("dns", "v1", http=hook._authorize(), cache_discovery=False)
            return self._service

    def zone(self, rs: RecordSetRef) -> str:
        """The managed zone's name (Cloud DNS addresses zones by name, not DNS name)."""
        if rs.zone not in self._zones:
            found = self.service.managedZones().list(project=rs.account, dnsName=_fqdn(rs.zone)).execute()
            zones = [z for z in found.get("managedZones") or [] if z.get("dnsName") == _fqdn(rs.zone)]
            if len(zones) != 1:
                raise DnsError(f"Cloud DNS: {len(zones)} managed zones for {rs.zone} in {rs.account} (need one)")
            self._zones[rs.zone] = str(zones[0]["name"])
        return self._zones[rs.zone]

    def _rrset(self, rs: RecordSetRef) -> dict[str, Any]:
        found = self.service.resourceRecordSets().list(project=rs.account, managedZone=self.zone(rs),
                                                       name=_fqdn(rs.name), type=rs.type).execute()
        sets = found.get("rrsets") or []
        if not sets:
            raise DnsError(f"Cloud DNS: no {rs.type} record set {rs.name} in {rs.zone}")
        rrset: dict[str, Any] = sets[0]
        return rrset

    def _records(self, rs: RecordSetRef, rrset: Mapping[str, Any]) -> list[DnsRecord]:
        items = ((rrset.get("routingPolicy") or {}).get("wrr") or {}).get("items")
        if items is None:
            return [DnsRecord(values=tuple(rrset.get("rrdatas") or ()), ttl=rrset.get("ttl"))]
        records = []
        for item in items:
            values = tuple(item.get("rrdatas") or ())
            side = next((s for s in rs.sides if set(s.values) == set(values)), None)
            records.append(DnsRecord(values=values, set_identifier=side.set_identifier if side else None,
                                     weight=int(float(item.get("weight", 0))), ttl=rrset.get("ttl")))
        return records

    def read(self, rs: RecordSetRef) -> RecordSetState:
        return evaluate(rs, self._records(rs, self._rrset(rs)))

    def switch(self, rs: RecordSetRef, side: str) -> DnsChange:
        chosen, other = rs.side(side), rs.other(side)
        current = self._rrset(rs)
        new: dict[str, Any] = {"name": _fqdn(rs.name), "type": rs.type, "ttl": rs.ttl}
        if rs.routing == "weighted":
            new["routingPolicy"] = {"wrr": {"items": [{"weight": float(chosen.weight), "rrdatas": list(chosen.values)},
                                                      {"weight": 0.0, "rrdatas": list(other.values)}]}}
        elif rs.routing == "simple":
            new["rrdatas"] = list(chosen.values)
        else:
            raise DnsError("Cloud DNS failover (primaryBackup) policies route to internal load balancers only: "
                           "use weighted or simple routing")
        body = {"deletions": [current], "additions": [new]}
        change = self.service.changes().create(project=rs.account, managedZone=self.zone(rs), body=body).execute()
        return DnsChange(change_id=str(change["id"]), status=str(change.get("status")), request=body)

    def in_sync(self, rs: RecordSetRef, change: DnsChange) -> bool:
        if change.change_id is None:
            return True
        found = self.service.changes().get(project=rs.account, managedZone=self.zone(rs),
                                           changeId=change.change_id).execute()
        return str(found.get("status")) == "done"
