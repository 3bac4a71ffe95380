"""EC2 security groups: description and VPC (fixed at creation), ingress (and optionally egress) rules, tags."""

from __future__ import annotations

from typing import Any

from include.changes.model import ChangeError
from include.clouds.aws.ids import ec2_arn
from include.provisioning.aws.common import AwsStep, code_of, tag_dict, tag_list
from include.provisioning.base import AlreadyExists, Live
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

Rule = tuple[str, int, int, str]  # (protocol, from, to, cidr)


def rules_from_spec(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (protocol, from, to) with its sorted CIDRs (the comparable form)."""
    return _group({_rule(r["protocol"], r["from_port"], r["to_port"], c) for r in rules for c in r["cidrs"]})


def rules_from_aws(permissions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: set[Rule] = set()
    for perm in permissions:
        protocol = str(perm.get("IpProtocol", "-1"))
        cidrs = [r["CidrIp"] for r in perm.get("IpRanges", [])] + [r["CidrIpv6"] for r in perm.get("Ipv6Ranges", [])]
        for cidr in cidrs:
            found.add(_rule(protocol, perm.get("FromPort", -1), perm.get("ToPort", -1), cidr))
    return _group(found)


def _rule(protocol: str, low: Any, high: Any, cidr: str) -> Rule:
    protocol = {"6": "tcp", "17": "udp", "1": "icmp"}.get(str(protocol), str(protocol))
    if protocol == "-1":
        return ("-1", -1, -1, cidr)
    return (protocol, int(low), int(high), cidr)


def _group(rules: set[Rule]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, int, int], list[str]] = {}
    for protocol, low, high, cidr in rules:
        grouped.setdefault((protocol, low, high), []).append(cidr)
    return [{"protocol": p, "from_port": lo, "to_port": hi, "cidrs": sorted(cidrs)}
            for (p, lo, hi), cidrs in sorted(grouped.items())]


def _flat(rules: list[dict[str, Any]]) -> set[Rule]:
    return {(r["protocol"], r["from_port"], r["to_port"], c) for r in rules for c in r["cidrs"]}


def to_permissions(rules: set[Rule]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, int, int], list[str]] = {}
    for protocol, low, high, cidr in sorted(rules):
        grouped.setdefault((protocol, low, high), []).append(cidr)
    out = []
    for (protocol, low, high), cidrs in grouped.items():
        perm: dict[str, Any] = {"IpProtocol": protocol,
                                "IpRanges": [{"CidrIp": c} for c in cidrs if ":" not in c],
                                "Ipv6Ranges": [{"CidrIpv6": c} for c in cidrs if ":" in c]}
        if protocol != "-1":
            perm["FromPort"], perm["ToPort"] = low, high
        out.append(perm)
    return out


@provisions(
    "sg",
    read=("ec2:DescribeSecurityGroups", "ec2:DescribeVpcs"),
    create=("ec2:CreateSecurityGroup", "ec2:CreateTags", "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress"),
    update=("ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupEgress", "ec2:CreateTags", "ec2:DeleteTags"),
    delete=("ec2:DeleteSecurityGroup",),
    actions={"create": "ec2:CreateSecurityGroup (+ tags) + AuthorizeSecurityGroupIngress",
             "update": "ec2:Authorize/RevokeSecurityGroupIngress|Egress, ec2:CreateTags/DeleteTags",
             "delete": "ec2:DeleteSecurityGroup"},
)
class SecurityGroup(AwsStep):
    """A security group in the VPC given (default: the region's default VPC). Egress is managed only when given."""

    immutable = ("description", "vpc_id")
    optimistic_create = True  # a group name is unique per VPC (InvalidGroup.Duplicate)

    def vpc(self, res: SpecResource, props: dict[str, Any]) -> str:
        if props.get("vpc_id"):
            return str(props["vpc_id"])
        ec2 = self.aws(res, "ec2")
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise ChangeError(f"{res.address}: region {res.region} has no default VPC: give vpc_id")
        return str(vpcs[0]["VpcId"])

    def _vpc(self, res: SpecResource, props: dict[str, Any]) -> str:
        if props.get("vpc_id"):
            return str(props["vpc_id"])
        key = ("default-vpc", self.target_of(res).conn_id, res.region)
        return str(self.session.memo(key, lambda: self.vpc(res, props)))

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        want = {"description": props.get("description") or props["name"], "vpc_id": self._vpc(res, props),
                "ingress": rules_from_spec(list(props.get("ingress") or []))}
        if "egress" in props:
            want["egress"] = rules_from_spec(list(props["egress"]))
        return want

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        ec2 = self.aws(res, "ec2")
        found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [str(props["name"])]},
                                                      {"Name": "vpc-id", "Values": [self._vpc(res, props)]}])
        groups = found.get("SecurityGroups", [])
        if not groups:
            return None
        group = groups[0]
        tags = tag_dict(group.get("Tags"))
        fields = {"description": group.get("Description"), "vpc_id": group.get("VpcId"),
                  "ingress": rules_from_aws(group.get("IpPermissions", [])),
                  "egress": rules_from_aws(group.get("IpPermissionsEgress", [])), "tags": tags}
        outputs = {"id": group["GroupId"], "name": group.get("GroupName"), "vpc_id": group.get("VpcId"),
                   "arn": ec2_arn(res.region, self.target_of(res).account, "security-group", group["GroupId"])}
        return Live(fields=fields, outputs=outputs, tags=tags, detail={"group_id": group["GroupId"]})

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        ec2 = self.aws(res, "ec2")
        try:
            group_id = ec2.create_security_group(
                GroupName=str(props["name"]), Description=want["description"], VpcId=want["vpc_id"],
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(want["tags"])}],
            )["GroupId"]
        except Exception as exc:
            if code_of(exc) == "InvalidGroup.Duplicate":
                raise AlreadyExists(f"security group {props['name']} exists") from exc
            raise
        if want["ingress"]:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=to_permissions(_flat(want["ingress"])))
        if "egress" in want:
            default = {("-1", -1, -1, "0.0.0.0/0")}  # what AWS gives every new group
            self._sync(ec2, group_id, "egress", default, _flat(want["egress"]))
        return {"id": group_id, "name": str(props["name"]), "vpc_id": want["vpc_id"],
                "arn": ec2_arn(res.region, self.target_of(res).account, "security-group", group_id)}

    @staticmethod
    def _sync(ec2: Any, group_id: str, direction: str, current: set[Rule], want: set[Rule]) -> None:
        revoke, authorize = current - want, want - current
        if direction == "ingress":
            if revoke:
                ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=to_permissions(revoke))
            if authorize:
                ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=to_permissions(authorize))
        else:
            if authorize:
                ec2.authorize_security_group_egress(GroupId=group_id, IpPermissions=to_permissions(authorize))
            if revoke:
                ec2.revoke_security_group_egress(GroupId=group_id, IpPermissions=to_permissions(revoke))

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        ec2 = self.aws(res, "ec2")
        group_id = live.detail["group_id"]
        for direction in ("ingress", "egress"):
            if direction in changed:
                self._sync(ec2, group_id, direction, _flat(live.fields[direction]), _flat(want[direction]))
        if "tags" in changed:
            to_set, to_remove = self.tag_changes(live.fields["tags"], want["tags"])
            if to_set:
                ec2.create_tags(Resources=[group_id], Tags=tag_list(to_set))
            if to_remove:
                ec2.delete_tags(Resources=[group_id], Tags=[{"Key": k} for k in to_remove])

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        self.aws(res, "ec2").delete_security_group(GroupId=live.detail["group_id"])
