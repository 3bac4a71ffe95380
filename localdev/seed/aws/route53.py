"""Route 53: public hosted zones, health checks, record sets (failover records included)."""

from __future__ import annotations

import secrets
from typing import Any

from localdev.seed import SEED_TAG, SeedReport
from localdev.seed.aws.common import Clients, need, tag_list


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def seed_route53(clients: Clients, spec: dict[str, Any], report: SeedReport) -> None:  # noqa: C901 - a linear seed script, as in ec2.py
    """Zones (known by name), health checks (by ``seed-id`` tag), record sets (by name, type, set id)."""
    r53 = clients("route53", clients.target.regions[0])
    zones = {
        z["Name"]: z["Id"].split("/")[-1]
        for page in r53.get_paginator("list_hosted_zones").paginate()
        for z in page["HostedZones"]
        if not z.get("Config", {}).get("PrivateZone")
    }
    zone_ids: dict[str, str] = {}
    for zone in spec.get("zones", []):
        fqdn = _fqdn(zone["name"])
        if fqdn in zones:
            zone_ids[zone["name"]] = zones[fqdn]
            report.add(False, "aws.route53.zone", zone["name"])
            continue
        zone_id = r53.create_hosted_zone(
            Name=fqdn,
            CallerReference=f"{zone['seed_id']}-{secrets.token_hex(4)}",
            HostedZoneConfig={"Comment": zone.get("comment", ""), "PrivateZone": False},
        )["HostedZone"]["Id"].split("/")[-1]
        r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id, AddTags=tag_list(zone))
        zone_ids[zone["name"]] = zone_id
        report.add(True, "aws.route53.zone", zone["name"])

    checks = [c for page in r53.get_paginator("list_health_checks").paginate() for c in page["HealthChecks"]]
    check_ids: dict[str, str] = {}
    for start in range(0, len(checks), 10):
        answer = r53.list_tags_for_resources(
            ResourceType="healthcheck", ResourceIds=[c["Id"] for c in checks[start : start + 10]]
        )
        for entry in answer["ResourceTagSets"]:
            for tag in entry.get("Tags", []):
                if tag["Key"] == SEED_TAG:
                    check_ids[tag["Value"]] = entry["ResourceId"]
    for check in spec.get("health_checks", []):
        if check["seed_id"] in check_ids:
            report.add(False, "aws.route53.health_check", check["seed_id"])
            continue
        config = {
            "Type": check["type"],
            "IPAddress": check["ip"],
            "Port": int(check["port"]),
            "ResourcePath": check.get("path", "/"),
            "FullyQualifiedDomainName": check["fqdn"],
            "FailureThreshold": int(check.get("failure_threshold", 3)),
            "RequestInterval": int(check.get("request_interval", 30)),
        }
        check_id = r53.create_health_check(
            CallerReference=f"{check['seed_id']}-{secrets.token_hex(4)}", HealthCheckConfig=config
        )["HealthCheck"]["Id"]
        tagged = dict(check, tags={**(check.get("tags") or {}), "Name": check.get("name", check["seed_id"])})
        r53.change_tags_for_resource(
            ResourceType="healthcheck", ResourceId=check_id, AddTags=tag_list(tagged)
        )
        check_ids[check["seed_id"]] = check_id
        report.add(True, "aws.route53.health_check", check["seed_id"])

    # Record sets have no tags: known by (name, type, set identifier).
    changes: dict[str, list[dict[str, Any]]] = {}
    present: dict[str, set[tuple[str, str, str]]] = {}
    for record in spec.get("records", []):
        zone_id = need(zone_ids, record["zone"], f"record {record['name']}")
        if zone_id not in present:
            present[zone_id] = {
                (r["Name"], r["Type"], r.get("SetIdentifier", ""))
                for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id)
                for r in page["ResourceRecordSets"]
            }
        ident = f"{record['name']}/{record['type']}/{record.get('set_identifier', '')}".rstrip("/")
        if (_fqdn(record["name"]), record["type"], record.get("set_identifier", "")) in present[zone_id]:
            report.add(False, "aws.route53.record", ident)
            continue
        rrset: dict[str, Any] = {
            "Name": _fqdn(record["name"]),
            "Type": record["type"],
            "TTL": int(record.get("ttl", 300)),
            "ResourceRecords": [{"Value": v} for v in record["values"]],
        }
        if record.get("set_identifier"):
            rrset["SetIdentifier"] = record["set_identifier"]
        if record.get("failover"):
            rrset["Failover"] = record["failover"]
        if record.get("health_check"):
            rrset["HealthCheckId"] = need(check_ids, record["health_check"], f"record {ident}")
        changes.setdefault(zone_id, []).append({"Action": "CREATE", "ResourceRecordSet": rrset})
        report.add(True, "aws.route53.record", ident)
    for zone_id, batch in changes.items():
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": batch})
