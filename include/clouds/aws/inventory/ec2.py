"""EC2: instances, volumes, the account's own snapshots, security groups, EBS default encryption."""

from __future__ import annotations

import re
from typing import Any

from include.clouds.aws.clients import client_for
from include.clouds.aws.ids import ec2_arn, ec2_region_settings_arn, ec2_snapshot_arn
from include.clouds.aws.inventory.common import name_tag, paginate, tags
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

#: Ports wider than this in one rule are recorded as ``-1`` (all ports) in ``open_to_world_ports``.
MAX_EXPANDED_PORT_RANGE = 1024
WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
#: EC2 tells when an instance was stopped only inside StateTransitionReason:
#: "User initiated (2026-11-28 10:00:00 GMT)".
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")

PERMISSIONS = (
    "ec2:DescribeInstances",
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:DescribeSecurityGroups",
    "ec2:GetEbsEncryptionByDefault",
)


def _world_ports(permission: dict[str, Any]) -> list[int]:
    protocol = str(permission.get("IpProtocol", "-1"))
    if protocol == "-1":
        return [-1]
    if protocol not in {"tcp", "udp", "6", "17"}:
        return []  # ICMP and other protocols have no ports
    low, high = int(permission.get("FromPort", 0)), int(permission.get("ToPort", 65535))
    if low <= 0 and high >= 65535 or high - low + 1 > MAX_EXPANDED_PORT_RANGE:
        return [-1]
    return list(range(low, high + 1))


def _security_group_record(ctx: ListContext, group: dict[str, Any]) -> ResourceRecord:
    ingress = []
    world_ports: set[int] = set()
    open_to_world = False
    for permission in group.get("IpPermissions", []):
        cidrs = [r["CidrIp"] for r in permission.get("IpRanges", [])]
        cidrs += [r["CidrIpv6"] for r in permission.get("Ipv6Ranges", [])]
        protocol = str(permission.get("IpProtocol", "-1"))
        ingress.append(
            {
                "protocol": protocol,
                "from_port": permission.get("FromPort", -1 if protocol == "-1" else None),
                "to_port": permission.get("ToPort", -1 if protocol == "-1" else None),
                "cidrs": cidrs,
            }
        )
        if WORLD_CIDRS & set(cidrs):
            open_to_world = True
            world_ports.update(_world_ports(permission))
    group_id = group["GroupId"]
    return ctx.record(
        resource_type="aws.ec2.security_group",
        resource_id=ec2_arn(ctx.region, ctx.target.account, "security-group", group_id),
        name=group.get("GroupName") or group_id,
        tags=tags(group.get("Tags")),
        attributes={
            "vpc_id": group.get("VpcId"),
            "group_id": group_id,
            "ingress": ingress,
            "open_to_world": open_to_world,
            "open_to_world_ports": sorted(world_ports),
        },
    )


@lister(
    "aws",
    "ec2",
    [
        "aws.ec2.instance",
        "aws.ec2.volume",
        "aws.ec2.snapshot",
        "aws.ec2.security_group",
        "aws.ec2.region_settings",
    ],
    permissions=PERMISSIONS,
)
def list_ec2(ctx: ListContext) -> list[ResourceRecord]:
    """Instances, volumes, snapshots owned by the account, security groups, EBS default encryption."""
    client = client_for(ctx.target, "ec2", ctx.region)
    account = ctx.target.account
    records: list[ResourceRecord] = []

    # Explicit pages: an unpaginated answer for thousands of instances can outlast botocore's read timeout.
    for reservation in paginate(client, "describe_instances", "Reservations", PaginationConfig={"PageSize": 500}):
        for inst in reservation.get("Instances", []):
            inst_tags = tags(inst.get("Tags"))
            attributes: dict[str, Any] = {
                "state": inst.get("State", {}).get("Name"),
                "instance_type": inst.get("InstanceType"),
                "image_id": inst.get("ImageId"),
                "created_at": inst.get("LaunchTime"),
                "public_ip": inst.get("PublicIpAddress"),
                "vpc_id": inst.get("VpcId"),
                "subnet_id": inst.get("SubnetId"),
                "security_groups": [g["GroupId"] for g in inst.get("SecurityGroups", [])],
                "volume_ids": [
                    m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if "Ebs" in m
                ],
            }
            stopped = _TRANSITION_TIME.search(str(inst.get("StateTransitionReason") or ""))
            if attributes["state"] == "stopped" and stopped:
                attributes["stopped_at"] = f"{stopped.group(1)}T{stopped.group(2)}Z"
            tokens = inst.get("MetadataOptions", {}).get("HttpTokens")
            if tokens:
                attributes["imdsv2_required"] = tokens == "required"
            records.append(
                ctx.record(
                    resource_type="aws.ec2.instance",
                    resource_id=ec2_arn(ctx.region, account, "instance", inst["InstanceId"]),
                    name=name_tag(inst_tags, inst["InstanceId"]),
                    tags=inst_tags,
                    attributes=attributes,
                )
            )

    for vol in paginate(client, "describe_volumes", "Volumes", PaginationConfig={"PageSize": 500}):
        vol_tags = tags(vol.get("Tags"))
        attached_to = [
            a["InstanceId"] for a in vol.get("Attachments", []) if a.get("State") in {"attached", "attaching"}
        ]
        records.append(
            ctx.record(
                resource_type="aws.ec2.volume",
                resource_id=ec2_arn(ctx.region, account, "volume", vol["VolumeId"]),
                name=name_tag(vol_tags, vol["VolumeId"]),
                tags=vol_tags,
                attributes={
                    "state": vol.get("State"),
                    "size_bytes": int(vol.get("Size", 0)) * 1024**3,
                    "size_gb": int(vol.get("Size", 0)),
                    "encrypted": bool(vol.get("Encrypted", False)),
                    "kms_key": vol.get("KmsKeyId"),
                    "attached": bool(attached_to),
                    "attachments": attached_to,
                    "volume_type": vol.get("VolumeType"),
                    "snapshot_id": vol.get("SnapshotId") or None,
                    "created_at": vol.get("CreateTime"),
                },
            )
        )

    # The owner-id filter repeats OwnerIds=self for emulators that ignore OwnerIds (moto lists every public
    # AMI snapshot, ~1,300 per region, without it); on AWS both mean the same.
    own = {"OwnerIds": ["self"], "Filters": [{"Name": "owner-id", "Values": [account]}]}
    for snap in paginate(client, "describe_snapshots", "Snapshots", **own):
        snap_tags = tags(snap.get("Tags"))
        records.append(
            ctx.record(
                resource_type="aws.ec2.snapshot",
                # Snapshot ARNs carry no account id (IAM's format: arn:aws:ec2:<region>::snapshot/<id>).
                resource_id=ec2_snapshot_arn(ctx.region, snap["SnapshotId"]),
                name=name_tag(snap_tags, snap["SnapshotId"]),
                tags=snap_tags,
                attributes={
                    "volume_id": snap.get("VolumeId"),
                    "size_gb": snap.get("VolumeSize"),
                    "encrypted": bool(snap.get("Encrypted", False)),
                    "kms_key": snap.get("KmsKeyId"),
                    "state": snap.get("State"),
                    "description": snap.get("Description"),
                    "created_at": snap.get("StartTime"),
                },
            )
        )

    records.extend(
        _security_group_record(ctx, group)
        for group in paginate(client, "describe_security_groups", "SecurityGroups")
    )

    default_encryption = client.get_ebs_encryption_by_default()
    records.append(
        ctx.record(
            resource_type="aws.ec2.region_settings",
            resource_id=ec2_region_settings_arn(ctx.region, account),
            name=ctx.region,
            attributes={
                "ebs_default_encryption": bool(default_encryption.get("EbsEncryptionByDefault", False))
            },
        )
    )
    return records
