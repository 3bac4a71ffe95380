"""Route 53 public hosted zones and record sets.

Record sets take no tags, so ownership travels in a **companion TXT record** written in the same change
batch (Route 53 applies a batch atomically): the record ``www.example.com. A`` is owned through
``_rb-a.www.example.com. TXT`` whose strings are the ownership tags (``"managed-by=cloud-runbooks"``,
``"runbooks-environment=demo"``, ``"owner=..."``, ``"cost-center=..."``). A record set with a set identifier
(weighted, failover) has its own companion ``_rb-<type>-<hash of the set identifier>.<name>``.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from include.changes.model import ChangeError
from include.clouds.aws.ids import route53_record_arn, route53_zone_arn
from include.provisioning.aws.common import AwsStep, code_of, tag_dict, tag_list
from include.provisioning.base import AlreadyExists, Live
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource


def fqdn(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else f"{name}."


def companion_name(name: str, record_type: str, set_identifier: str | None) -> str:
    label = f"_rb-{record_type.lower()}"
    if set_identifier:
        label += "-" + hashlib.sha256(set_identifier.encode()).hexdigest()[:8]
    return f"{label}.{fqdn(name)}"


def tags_to_txt(tags: dict[str, str]) -> list[dict[str, str]]:
    """One TXT value holding one quoted ``key=value`` string per tag."""
    strings = " ".join('"' + f"{k}={v}".replace("\\", "\\\\").replace('"', '\\"') + '"' for k, v in sorted(tags.items()))
    return [{"Value": strings}]


def txt_to_tags(records: list[dict[str, str]]) -> dict[str, str]:
    import shlex

    found: dict[str, str] = {}
    for record in records:
        for item in shlex.split(record.get("Value", "")):
            key, _, value = item.partition("=")
            if key:
                found[key] = value
    return found


def _zone_tags(r53: Any, zone_id: str) -> dict[str, str]:
    answer = r53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
    return tag_dict(answer.get("ResourceTagSet", {}).get("Tags"))


class _Route53Step(AwsStep):
    def r53(self, res: SpecResource) -> Any:
        return self.aws(res, "route53", self.target_of(res).regions[0])

    def zone_id(self, res: SpecResource, zone_name: str) -> str | None:
        """The id of the public zone called ``zone_name`` (None: no such zone); found once per run."""
        found = self.find_zone(res, zone_name)
        return str(found["Id"]).split("/")[-1] if found else None

    def find_zone(self, res: SpecResource, zone_name: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The public zone called ``zone_name`` as ListHostedZonesByName answers (id, name, comment)."""
        r53 = self.r53(res)
        wanted = fqdn(zone_name)

        def look_up() -> dict[str, Any] | None:
            answer = r53.list_hosted_zones_by_name(DNSName=wanted, MaxItems="5")
            for zone in answer.get("HostedZones", []):
                if zone["Name"].lower() == wanted and not zone.get("Config", {}).get("PrivateZone"):
                    return dict(zone)
            return None

        key = ("zone", self.target_of(res).conn_id, wanted)
        if fresh:
            self.session.forget_memo(key)
        zone: dict[str, Any] | None = self.session.memo(key, look_up)
        return zone


@provisions(
    "zone",
    read=("route53:ListHostedZonesByName", "route53:ListTagsForResource",
          "route53:ListResourceRecordSets"),
    create=("route53:CreateHostedZone", "route53:ChangeTagsForResource", "route53:DeleteHostedZone"),
    update=("route53:UpdateHostedZoneComment", "route53:ChangeTagsForResource"),
    delete=("route53:DeleteHostedZone",),
    actions={"create": "route53:CreateHostedZone + ChangeTagsForResource",
             "update": "route53:UpdateHostedZoneComment / ChangeTagsForResource",
             "delete": "route53:DeleteHostedZone"},
)
class HostedZone(_Route53Step):
    """A public hosted zone (known by name; the one tagged for this environment is the spec's)."""

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {"comment": str(props.get("comment") or "")}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        r53 = self.r53(res)
        zone = self.find_zone(res, str(props["name"]), fresh=True)  # its comment can change: never a stale copy
        if zone is None:
            return None
        zone_id = str(zone["Id"]).split("/")[-1]
        tags = _zone_tags(r53, zone_id)
        outputs = {"id": zone_id, "name": fqdn(str(props["name"])), "arn": route53_zone_arn(zone_id)}
        live = Live(fields={"comment": str((zone.get("Config") or {}).get("Comment") or ""), "tags": tags},
                    outputs=outputs, tags=tags, detail={"zone_id": zone_id})
        if self.teardown:
            live.protected = self._foreign_records(res, r53, zone_id, str(props["name"]))
        return live

    def _foreign_records(self, res: SpecResource, r53: Any, zone_id: str, zone_name: str) -> str | None:
        """Record sets in the zone that this environment does not manage (deleting the zone would lose them)."""
        ours: set[tuple[str, str, str]] = set()
        for other in self.session.spec.resources:
            if other.kind == "record":
                p = other.properties
                ours.add((fqdn(str(p["name"])), str(p["type"]), str(p.get("set_identifier") or "")))
                ours.add((companion_name(str(p["name"]), str(p["type"]), p.get("set_identifier")), "TXT", ""))
        foreign = []
        for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
            for rrset in page["ResourceRecordSets"]:
                key = (rrset["Name"].lower(), rrset["Type"], rrset.get("SetIdentifier", ""))
                if key[0] == fqdn(zone_name) and key[1] in ("SOA", "NS"):
                    continue
                if key not in ours:
                    foreign.append(f"{key[0]} {key[1]}")
        if foreign:
            return (f"it holds {len(foreign)} record set(s) this environment does not manage "
                    f"({', '.join(foreign[:5])}{'...' if len(foreign) > 5 else ''})")
        return None

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        r53 = self.r53(res)
        zone = r53.create_hosted_zone(
            Name=fqdn(str(props["name"])), CallerReference=f"{self.session.spec.environment}/{res.address}/{uuid.uuid4()}",
            HostedZoneConfig={"Comment": want["comment"], "PrivateZone": False})["HostedZone"]
        zone_id = str(zone["Id"]).split("/")[-1]
        try:
            r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id, AddTags=tag_list(want["tags"]))
        except Exception:
            r53.delete_hosted_zone(Id=zone_id)  # compensation: the zone is new and empty
            raise
        return {"id": zone_id, "name": fqdn(str(props["name"])), "arn": route53_zone_arn(zone_id)}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        r53 = self.r53(res)
        zone_id = live.detail["zone_id"]
        if "comment" in changed:
            r53.update_hosted_zone_comment(Id=zone_id, Comment=want["comment"])
        if "tags" in changed:
            to_set, to_remove = self.tag_changes(live.fields["tags"], want["tags"])
            request: dict[str, Any] = {"ResourceType": "hostedzone", "ResourceId": zone_id}
            if to_set:
                request["AddTags"] = tag_list(to_set)
            if to_remove:
                request["RemoveTagKeys"] = to_remove
            r53.change_tags_for_resource(**request)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        self.r53(res).delete_hosted_zone(Id=live.detail["zone_id"])
        self.session.forget_memo(("zone", self.target_of(res).conn_id, fqdn(str(props["name"]))))


@provisions(
    "record",
    read=("route53:ListHostedZonesByName", "route53:ListResourceRecordSets"),
    create=("route53:ChangeResourceRecordSets",),
    update=("route53:ChangeResourceRecordSets",),
    delete=("route53:ChangeResourceRecordSets",),
    actions={"create": "route53:ChangeResourceRecordSets (CREATE record + companion TXT)",
             "update": "route53:ChangeResourceRecordSets (UPSERT)",
             "delete": "route53:ChangeResourceRecordSets (DELETE record + companion TXT)"},
)
class RecordSet(_Route53Step):
    """A record set in a public zone, with its ownership in a companion TXT record."""

    optimistic_create = True  # CREATE fails when the record (or its companion) exists

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        want: dict[str, Any] = {"ttl": int(props.get("ttl", 300)), "values": sorted(str(v) for v in props["values"])}
        for key in ("failover", "weight", "health_check_id"):
            if props.get(key) is not None:
                want[key] = props[key]
        return want

    def _rrsets(self, r53: Any, zone_id: str, name: str, record_type: str) -> list[dict[str, Any]]:
        answer = r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name, StartRecordType=record_type,
                                               MaxItems="100")
        return [r for r in answer["ResourceRecordSets"] if r["Name"].lower() == name and r["Type"] == record_type]

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        zone_name = str(props["zone"])
        if "(known after apply" in zone_name:
            return None  # its zone does not exist yet
        zone_id = self.zone_id(res, zone_name)
        if zone_id is None:
            return None
        r53 = self.r53(res)
        name, record_type, set_id = fqdn(str(props["name"])), str(props["type"]), props.get("set_identifier")
        found = [r for r in self._rrsets(r53, zone_id, name, record_type) if r.get("SetIdentifier") == set_id]
        if not found:
            return None
        rrset = found[0]
        companion = self._rrsets(r53, zone_id, companion_name(name, record_type, set_id), "TXT")
        tags = txt_to_tags(companion[0]["ResourceRecords"]) if companion else {}
        fields: dict[str, Any] = {"ttl": rrset.get("TTL"), "values": sorted(r["Value"] for r in rrset.get("ResourceRecords", [])),
                                  "failover": rrset.get("Failover"), "weight": rrset.get("Weight"),
                                  "health_check_id": rrset.get("HealthCheckId"), "tags": tags}
        suffix = f"{name}/{record_type}" + (f"/{set_id}" if set_id else "")
        outputs = {"id": route53_record_arn(zone_id, suffix), "name": name, "fqdn": name.rstrip(".")}
        return Live(fields=fields, outputs=outputs, tags=tags,
                    detail={"zone_id": zone_id, "rrset": rrset, "companion": companion[0] if companion else None})

    def _rrset(self, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        rrset: dict[str, Any] = {"Name": fqdn(str(props["name"])), "Type": props["type"], "TTL": want["ttl"],
                                 "ResourceRecords": [{"Value": v} for v in want["values"]]}
        if props.get("set_identifier"):
            rrset["SetIdentifier"] = props["set_identifier"]
        for key, aws in (("failover", "Failover"), ("weight", "Weight"), ("health_check_id", "HealthCheckId")):
            if want.get(key) is not None:
                rrset[aws] = want[key]
        return rrset

    def _companion(self, props: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
        return {"Name": companion_name(str(props["name"]), str(props["type"]), props.get("set_identifier")),
                "Type": "TXT", "TTL": 300, "ResourceRecords": tags_to_txt(tags)}

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        r53 = self.r53(res)
        zone_id = self.zone_id(res, str(props["zone"]))
        if zone_id is None:
            raise ChangeError(f"{res.address}: zone {props['zone']} does not exist")
        try:
            r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
                {"Action": "CREATE", "ResourceRecordSet": self._rrset(props, want)},
                {"Action": "CREATE", "ResourceRecordSet": self._companion(props, want["tags"])}]})
        except Exception as exc:
            if code_of(exc) == "InvalidChangeBatch" and "already exists" in str(exc):
                raise AlreadyExists(f"record {props['name']} {props['type']} exists") from exc
            raise
        name = fqdn(str(props["name"]))
        suffix = f"{name}/{props['type']}" + (f"/{props['set_identifier']}" if props.get("set_identifier") else "")
        return {"id": route53_record_arn(zone_id, suffix), "name": name, "fqdn": name.rstrip(".")}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        changes = []
        if set(changed) - {"tags"}:
            changes.append({"Action": "UPSERT", "ResourceRecordSet": self._rrset(props, want)})
        if "tags" in changed:
            changes.append({"Action": "UPSERT", "ResourceRecordSet": self._companion(props, want["tags"])})
        self.r53(res).change_resource_record_sets(HostedZoneId=live.detail["zone_id"],
                                                  ChangeBatch={"Changes": changes})

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        changes = [{"Action": "DELETE", "ResourceRecordSet": live.detail["rrset"]}]
        if live.detail.get("companion"):
            changes.append({"Action": "DELETE", "ResourceRecordSet": live.detail["companion"]})
        self.r53(res).change_resource_record_sets(HostedZoneId=live.detail["zone_id"],
                                                  ChangeBatch={"Changes": changes})
