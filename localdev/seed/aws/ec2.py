"""EC2 in one region: security groups, instances, volumes, snapshots, EBS default encryption."""

from __future__ import annotations

from typing import Any

from localdev.seed import SEED_TAG, SeedError, SeedReport
from localdev.seed.aws.common import Clients, by_seed_id, need, tag_spec


def seed_ec2_region(  # noqa: C901 - a linear seed script: one create-if-missing section per resource kind
    clients: Clients, region: str, spec: dict[str, Any], keys: dict[str, str], report: SeedReport
) -> None:
    """The ``ec2:`` entries of ``region``, in dependency order; ``keys``: KMS seed id -> ARN."""
    ec2 = clients("ec2", region)

    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [item for item in items if item["region"] == region]

    seed_filter = [{"Name": "tag-key", "Values": [SEED_TAG]}]

    # Security groups (default VPC).
    groups = by_seed_id(
        [
            g
            for page in ec2.get_paginator("describe_security_groups").paginate(Filters=seed_filter)
            for g in page["SecurityGroups"]
        ]
    )
    group_ids: dict[str, str] = {}
    for sg in mine(spec.get("security_groups", [])):
        if sg["seed_id"] in groups:
            group_ids[sg["seed_id"]] = groups[sg["seed_id"]]["GroupId"]
            report.add(False, "aws.ec2.security_group", sg["seed_id"])
            continue
        group_id = ec2.create_security_group(
            GroupName=sg["name"],
            Description=sg.get("description", sg["name"]),
            TagSpecifications=tag_spec("security-group", sg),
        )["GroupId"]
        permissions = [
            {
                "IpProtocol": rule["protocol"],
                "FromPort": int(rule["from_port"]),
                "ToPort": int(rule["to_port"]),
                "IpRanges": [{"CidrIp": c} for c in rule.get("cidrs", []) if ":" not in c],
                "Ipv6Ranges": [{"CidrIpv6": c} for c in rule.get("cidrs", []) if ":" in c],
            }
            for rule in sg.get("ingress", [])
        ]
        if permissions:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions)
        group_ids[sg["seed_id"]] = group_id
        report.add(True, "aws.ec2.security_group", sg["seed_id"])

    # Instances (terminated ones do not count).
    alive = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    instances = by_seed_id(
        [
            i
            for page in ec2.get_paginator("describe_instances").paginate(Filters=seed_filter + alive)
            for r in page["Reservations"]
            for i in r["Instances"]
        ]
    )
    to_stop = []
    for inst in mine(spec.get("instances", [])):
        if inst["seed_id"] in instances:
            report.add(False, "aws.ec2.instance", inst["seed_id"])
            continue
        run: dict[str, Any] = {
            "ImageId": inst["image_id"],
            "InstanceType": inst["instance_type"],
            "MinCount": 1,
            "MaxCount": 1,
            # The root volume carries the instance's tags, its own seed-id and Name.
            "TagSpecifications": tag_spec("instance", inst) + tag_spec("volume", _root_volume(inst)),
        }
        if inst.get("security_groups"):
            run["SecurityGroupIds"] = [
                need(group_ids, g, f"instance {inst['seed_id']}") for g in inst["security_groups"]
            ]
        if "imdsv2_required" in inst:
            run["MetadataOptions"] = {"HttpTokens": "required" if inst["imdsv2_required"] else "optional"}
        created = ec2.run_instances(**run)["Instances"][0]
        instances[inst["seed_id"]] = created
        if inst.get("state", "running") == "stopped":
            to_stop.append(created["InstanceId"])
        report.add(True, "aws.ec2.instance", inst["seed_id"])
    if to_stop:
        ec2.stop_instances(InstanceIds=to_stop)

    # Volumes, attached where asked.
    volumes = by_seed_id(
        [
            v
            for page in ec2.get_paginator("describe_volumes").paginate(Filters=seed_filter)
            for v in page["Volumes"]
        ]
    )
    volume_ids = {seed: v["VolumeId"] for seed, v in volumes.items()}
    for vol in mine(spec.get("volumes", [])):
        if vol["seed_id"] in volumes:
            report.add(False, "aws.ec2.volume", vol["seed_id"])
            continue
        attach_to = instances.get(vol["attach_to"]) if vol.get("attach_to") else None
        if vol.get("attach_to") and attach_to is None:
            raise SeedError(
                f"aws estate: volume {vol['seed_id']} attaches to unknown instance {vol['attach_to']!r}"
            )
        create = {
            "AvailabilityZone": attach_to["Placement"]["AvailabilityZone"] if attach_to else f"{region}a",
            "Size": int(vol["size_gb"]),
            "VolumeType": vol.get("volume_type", "gp3"),
            "Encrypted": bool(vol.get("encrypted", False)),
            "TagSpecifications": tag_spec("volume", vol),
        }
        if vol.get("kms_key"):
            create["KmsKeyId"] = need(keys, vol["kms_key"], f"volume {vol['seed_id']}")
        volume_id = ec2.create_volume(**create)["VolumeId"]
        if attach_to:
            ec2.attach_volume(
                VolumeId=volume_id, InstanceId=attach_to["InstanceId"], Device=vol.get("device", "/dev/sdf")
            )
        volume_ids[vol["seed_id"]] = volume_id
        report.add(True, "aws.ec2.volume", vol["seed_id"])

    # Snapshots: moto cannot backdate StartTime, so the intended age travels as a tag and in the description.
    # (The owner-id filter repeats OwnerIds=self for moto, which ignores OwnerIds.)
    own = [{"Name": "owner-id", "Values": [clients.target.account]}]
    snapshots = by_seed_id(
        [
            s
            for page in ec2.get_paginator("describe_snapshots").paginate(
                OwnerIds=["self"], Filters=own + seed_filter
            )
            for s in page["Snapshots"]
        ]
    )
    for snap in mine(spec.get("snapshots", [])):
        if snap["seed_id"] in snapshots:
            report.add(False, "aws.ec2.snapshot", snap["seed_id"])
            continue
        age = int(snap.get("intended_age_days", 0))
        tagged = dict(snap, tags={**(snap.get("tags") or {}), "intended-age-days": str(age)})
        ec2.create_snapshot(
            VolumeId=need(volume_ids, snap["volume"], f"snapshot {snap['seed_id']}"),
            Description=f"{snap.get('description', snap['seed_id'])} (intended age {age} days)",
            TagSpecifications=tag_spec("snapshot", tagged),
        )
        report.add(True, "aws.ec2.snapshot", snap["seed_id"])

    # Region setting: EBS encryption by default (only ever switched on by the seed).
    if (spec.get("ebs_default_encryption") or {}).get(region):
        if ec2.get_ebs_encryption_by_default()["EbsEncryptionByDefault"]:
            report.add(False, "aws.ec2.ebs_default_encryption", region)
        else:
            ec2.enable_ebs_encryption_by_default()
            report.add(True, "aws.ec2.ebs_default_encryption", region)


def _root_volume(instance: dict[str, Any]) -> dict[str, Any]:
    """Tag spec of an instance's root volume: the instance's tags, ``<seed_id>-root``, ``<Name>-root``."""
    tags = dict(instance.get("tags") or {})
    if "Name" in tags:
        tags["Name"] = f"{tags['Name']}-root"
    return dict(instance, seed_id=f"{instance['seed_id']}-root", tags=tags)


def ec2_regions(spec: dict[str, Any]) -> list[str]:
    """Every region the ``ec2:`` section names (one seeding job each)."""
    regions = set((spec.get("ebs_default_encryption") or {}).keys())
    for kind in ("security_groups", "instances", "volumes", "snapshots"):
        regions.update(str(item["region"]) for item in spec.get(kind, []))
    return sorted(regions)
