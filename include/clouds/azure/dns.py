"""Azure DNS implementation of the DNS capability (contract-tested: no emulator serves Azure Resource Manager).

ARM REST (``Microsoft.Network/dnsZones/{type}/{name}``, api-version ``2018-05-01``) through the Azure provider's
credentials and azure-core's ARM pipeline (:mod:`include.clouds.azure.arm`); ``azure-mgmt-dns`` is not installed
with the provider. Azure DNS has no routing policies (weighted / failover routing is Traffic Manager's): only
``simple`` record sets are switched, by replacing the record set's values in one PUT guarded by its ETag
(``If-Match``: a concurrent change makes the PUT fail instead of being overwritten). The change is live when the
PUT answers: Azure DNS reports no propagation status, so ``in_sync`` is true at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from include.capabilities.dns import DnsChange, DnsError, DnsRecord, RecordSetRef, RecordSetState, evaluate
from include.clouds.azure.arm import ArmClient
from include.targets import Target

API_VERSION = "2018-05-01"
_FIELDS = {"A": ("ARecords", "ipv4Address"), "AAAA": ("AAAARecords", "ipv6Address")}


def record_path(rs: RecordSetRef) -> str:
    if not rs.resource_group:
        raise DnsError(f"{rs.name}: an Azure DNS record set needs dns.resource_group in the catalog")
    relative = "@" if rs.name == rs.zone else rs.name[: -len(rs.zone) - 1] if rs.name.endswith("." + rs.zone) else None
    if relative is None:
        raise DnsError(f"{rs.name} is not in zone {rs.zone}")
    return (f"/subscriptions/{rs.account}/resourceGroups/{rs.resource_group}/providers/Microsoft.Network/dnsZones/"
            f"{rs.zone}/{rs.type}/{relative}")


def _values(rs: RecordSetRef, props: Mapping[str, Any]) -> tuple[str, ...]:
    if rs.type == "CNAME":
        cname = (props.get("CNAMERecord") or {}).get("cname")
        return (str(cname).rstrip("."),) if cname else ()
    field, key = _FIELDS[rs.type]
    return tuple(str(r[key]) for r in props.get(field) or [])


class AzureDns:
    """DNS zones of one subscription (the target's)."""

    PERMISSIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "read": ("Microsoft.Network/dnsZones/A/read", "Microsoft.Network/dnsZones/AAAA/read",
                 "Microsoft.Network/dnsZones/CNAME/read"),
        "switch": ("Microsoft.Network/dnsZones/A/write", "Microsoft.Network/dnsZones/AAAA/write",
                   "Microsoft.Network/dnsZones/CNAME/write"),
        "in_sync": (),
    }

    def __init__(self, target: Target) -> None:
        self.target = target
        self.arm = ArmClient(target.conn_id)

    def _get(self, rs: RecordSetRef) -> tuple[dict[str, Any], str | None]:
        _, body, headers = self.arm.call("GET", record_path(rs), API_VERSION, ok=(200,))
        body = dict(body or {})
        return body, body.get("etag") or headers.get("ETag") or headers.get("etag")

    def read(self, rs: RecordSetRef) -> RecordSetState:
        body, _ = self._get(rs)
        props = body.get("properties") or {}
        return evaluate(rs, [DnsRecord(values=_values(rs, props), ttl=props.get("TTL"))])

    def switch(self, rs: RecordSetRef, side: str) -> DnsChange:
        if rs.routing != "simple":
            raise DnsError("Azure DNS has no weighted or failover record sets (that is Traffic Manager): use simple")
        chosen = rs.side(side)
        _, etag = self._get(rs)
        props: dict[str, Any] = {"TTL": rs.ttl}
        if rs.type == "CNAME":
            props["CNAMERecord"] = {"cname": chosen.values[0]}
        else:
            field, key = _FIELDS[rs.type]
            props[field] = [{key: v} for v in chosen.values]
        body = {"properties": props}
        headers = {"If-Match": etag} if etag else {}
        _, answer, _ = self.arm.call("PUT", record_path(rs), API_VERSION, body=body, headers=headers, ok=(200, 201))
        return DnsChange(change_id=None, status=str(((answer or {}).get("properties") or {}).get("provisioningState")
                                                      or "Succeeded"), request=body)

    def in_sync(self, rs: RecordSetRef, change: DnsChange) -> bool:
        return True
