"""Route 53: hosted zones, their record sets and health checks (a global service)."""

from __future__ import annotations

from typing import Any

from include.clouds.aws.clients import client_for
from include.clouds.aws.ids import route53_health_check_arn, route53_record_arn, route53_zone_arn
from include.clouds.aws.inventory.common import home, name_tag, paginate, tags
from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = (
    "route53:ListHostedZones",
    "route53:ListResourceRecordSets",
    "route53:ListHealthChecks",
    "route53:ListTagsForResources",
)


def _route53_tags(client: Any, resource_type: str, ids: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(ids), 10):  # ListTagsForResources takes at most 10 ids
        answer = client.list_tags_for_resources(
            ResourceType=resource_type, ResourceIds=ids[start : start + 10]
        )
        for entry in answer.get("ResourceTagSets", []):
            found[entry["ResourceId"]] = tags(entry.get("Tags"))
    return found


@lister(
    "aws",
    "route53",
    ["aws.route53.zone", "aws.route53.record", "aws.route53.health_check"],
    regional=False,
    permissions=PERMISSIONS,
)
def list_route53(ctx: ListContext) -> list[ResourceRecord]:
    """Hosted zones, their record sets and health checks. Names are spelled as Route 53 does (final dot)."""
    region = home(ctx)
    client = client_for(ctx.target, "route53", region)
    records = []
    zones = list(paginate(client, "list_hosted_zones", "HostedZones"))
    zone_ids = [zone["Id"].split("/")[-1] for zone in zones]
    zone_tags = _route53_tags(client, "hostedzone", zone_ids)
    for zone, zone_id in zip(zones, zone_ids, strict=True):
        records.append(
            ctx.record(
                resource_type="aws.route53.zone",
                resource_id=route53_zone_arn(zone_id, region),
                name=zone["Name"],
                region=GLOBAL,
                tags=zone_tags.get(zone_id, {}),
                attributes={
                    "private": bool(zone.get("Config", {}).get("PrivateZone", False)),
                    "record_count": zone.get("ResourceRecordSetCount"),
                    "zone_id": zone_id,
                },
            )
        )
        for rrset in paginate(client, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id):
            set_id = rrset.get("SetIdentifier")
            alias = rrset.get("AliasTarget")
            # Record sets have no ARN: the id extends the zone's ARN with name, type and set identifier.
            suffix = f"{rrset['Name']}/{rrset['Type']}" + (f"/{set_id}" if set_id else "")
            records.append(
                ctx.record(
                    resource_type="aws.route53.record",
                    resource_id=route53_record_arn(zone_id, suffix, region),
                    name=rrset["Name"],
                    region=GLOBAL,
                    attributes={
                        "zone_id": zone_id,
                        "record_type": rrset["Type"],
                        "ttl": rrset.get("TTL"),
                        "values": [r["Value"] for r in rrset.get("ResourceRecords", [])],
                        "alias_target": alias.get("DNSName") if alias else None,
                        "set_identifier": set_id,
                        "failover": rrset.get("Failover"),
                        "health_check_id": rrset.get("HealthCheckId"),
                        "weight": rrset.get("Weight"),
                    },
                )
            )

    checks = list(paginate(client, "list_health_checks", "HealthChecks"))
    check_tags = _route53_tags(client, "healthcheck", [c["Id"] for c in checks])
    for check in checks:
        config = check.get("HealthCheckConfig", {})
        found = check_tags.get(check["Id"], {})
        records.append(
            ctx.record(
                resource_type="aws.route53.health_check",
                resource_id=route53_health_check_arn(check["Id"], region),
                name=name_tag(found, check["Id"]),
                region=GLOBAL,
                tags=found,
                attributes={
                    "check_type": config.get("Type"),
                    "fqdn": config.get("FullyQualifiedDomainName"),
                    "ip": config.get("IPAddress"),
                    "port": config.get("Port"),
                    "path": config.get("ResourcePath"),
                    "failure_threshold": config.get("FailureThreshold"),
                    "request_interval": config.get("RequestInterval"),
                },
            )
        )
    return records
