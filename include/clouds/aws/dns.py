"""Route 53 implementation of the DNS capability (emulator-verified on moto server).

The client comes from the Amazon provider's ``AwsBaseHook`` (:func:`include.clouds.aws.clients.client_for`).
A switch is ONE ``ChangeResourceRecordSets`` batch of UPSERTs (failover: the chosen side's record becomes
PRIMARY and the other SECONDARY in the same batch, so the name never has two or no primaries); ``in_sync``
reads ``GetChange`` until Route 53 reports ``INSYNC`` (every authoritative name server has it).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from include.capabilities.dns import (
    DnsChange,
    DnsError,
    DnsRecord,
    DnsSide,
    RecordSetRef,
    RecordSetState,
    evaluate,
    record_for,
)
from include.clouds.aws.clients import client_for
from include.targets import Target


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


class Route53Dns:
    """Public hosted zones of one AWS target."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "read": ("route53:ListHostedZonesByName", "route53:ListResourceRecordSets"),
        "switch": ("route53:ChangeResourceRecordSets", "route53:ListHostedZonesByName",
                   "route53:ListResourceRecordSets"),
        "in_sync": ("route53:GetChange",),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self._client_obj: Any = None
        self._zones: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                # Route 53 is global: any region of the target's partition reaches the same endpoint. Naming
                # one spares the hook from building a whole throwaway client just to learn its region.
                self._client_obj = client_for(self.target, "route53", self.target.regions[0])
            return self._client_obj

    def zone_id(self, zone: str) -> str:
        if zone not in self._zones:
            found = self.client.list_hosted_zones_by_name(DNSName=_fqdn(zone), MaxItems="10")["HostedZones"]
            public = [z for z in found if z["Name"] == _fqdn(zone) and not z.get("Config", {}).get("PrivateZone")]
            if len(public) != 1:
                raise DnsError(f"Route 53: {len(public)} public hosted zones named {zone} (need exactly one)")
            self._zones[zone] = str(public[0]["Id"]).split("/")[-1]
        return self._zones[zone]

    def _records(self, rs: RecordSetRef) -> list[DnsRecord]:
        zone_id = self.zone_id(rs.zone)
        records: list[DnsRecord] = []
        kwargs: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": _fqdn(rs.name),
                                  "StartRecordType": rs.type}
        while True:
            page = self.client.list_resource_record_sets(**kwargs)
            for item in page["ResourceRecordSets"]:
                if item["Name"] != _fqdn(rs.name) or item["Type"] != rs.type:
                    return records
                alias = item.get("AliasTarget")
                values = [str(alias["DNSName"]).rstrip(".")] if alias else [r["Value"] for r in
                                                                           item.get("ResourceRecords", [])]
                records.append(DnsRecord(
                    values=tuple(values),
                    set_identifier=item.get("SetIdentifier"),
                    failover=item.get("Failover"),
                    weight=int(item["Weight"]) if "Weight" in item else None,
                    ttl=int(item["TTL"]) if "TTL" in item else None,
                    health_check_id=item.get("HealthCheckId"),
                ))
            if not page.get("IsTruncated"):
                return records
            kwargs.update(StartRecordName=page["NextRecordName"], StartRecordType=page["NextRecordType"])
            if page.get("NextRecordIdentifier"):
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]

    def read(self, rs: RecordSetRef) -> RecordSetState:
        return evaluate(rs, self._records(rs))

    def _rrset(self, rs: RecordSetRef, side: DnsSide, **routing: Any) -> dict[str, Any]:
        rrset: dict[str, Any] = {"Name": _fqdn(rs.name), "Type": rs.type, "TTL": rs.ttl,
                                 "ResourceRecords": [{"Value": v} for v in side.values]}
        if side.set_identifier and rs.routing != "simple":
            rrset["SetIdentifier"] = side.set_identifier
        if side.health_check_id:
            rrset["HealthCheckId"] = side.health_check_id
        rrset.update(routing)
        return rrset

    def switch(self, rs: RecordSetRef, side: str) -> DnsChange:
        chosen, other = rs.side(side), rs.other(side)
        records = self._records(rs)
        if rs.routing == "failover":
            for each in (chosen, other):
                record_for(rs, records, each)  # both records must exist: never create half a pair
            sets = [self._rrset(rs, chosen, Failover="PRIMARY"), self._rrset(rs, other, Failover="SECONDARY")]
        elif rs.routing == "weighted":
            for each in (chosen, other):
                record_for(rs, records, each)
            sets = [self._rrset(rs, chosen, Weight=chosen.weight), self._rrset(rs, other, Weight=0)]
        else:
            sets = [self._rrset(rs, chosen)]
        request = {
            "HostedZoneId": self.zone_id(rs.zone),
            "ChangeBatch": {"Comment": f"runbooks: {rs.name} {rs.type} answers the {side} side",
                            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": s} for s in sets]},
        }
        info = self.client.change_resource_record_sets(**request)["ChangeInfo"]
        return DnsChange(change_id=str(info["Id"]).split("/")[-1], status=str(info["Status"]), request=request)

    def in_sync(self, rs: RecordSetRef, change: DnsChange) -> bool:
        if change.change_id is None:
            return True
        return str(self.client.get_change(Id=change.change_id)["ChangeInfo"]["Status"]) == "INSYNC"
