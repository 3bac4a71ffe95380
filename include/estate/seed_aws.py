"""Seed the AWS part of the local estate (the ``aws:`` section of ``config/estate.yaml``).

Idempotent: each resource is looked up first, by its ``seed-id`` tag where the service has tags and
lookups by tag, otherwise by its name (bucket, IAM user, table, trail, DB instance, KMS alias, record
set), and only what is missing is created. A bucket whose ``seed-id`` tag is missing is (re)configured:
the tag is written last, so it marks a completed bucket. Nothing is reconciled on existing resources:
the seed builds an estate, runbooks change it afterwards.

All calls go through the Airflow amazon provider hooks built from the target's connection id.
Independent services are seeded in parallel (KMS first: buckets, volumes and RDS use its keys;
CloudTrail last: it needs its bucket) so the whole AWS estate seeds in a few seconds on moto.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from include.clouds.aws.inventory import client_for, partition
from include.estate.seed import SEED_TAG, SeedError, SeedReport, object_body, seeded_objects
from include.targets import Target

#: Bucket policy statements the estate description can name (``policy: [...]``).
POLICY_TEMPLATES: dict[str, Callable[[str, str], list[dict[str, Any]]]] = {
    "public-read": lambda bucket, account: [
        {
            "Sid": "PublicRead",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/*",
        }
    ],
    "server-access-logs": lambda bucket, account: [
        {
            "Sid": "S3ServerAccessLogs",
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": ["s3:PutObject"],
            "Resource": f"arn:aws:s3:::{bucket}/*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account}},
        }
    ],
    "cloudtrail": lambda bucket, account: [
        {
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": f"arn:aws:s3:::{bucket}",
        },
        {
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/{account}/*",
            "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}},
        },
    ],
}






# ---- plumbing ------------------------------------------------------------------------------------


class _Clients:
    """One boto3 client per (service, region), built once through the provider hooks (thread-safe)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._clients: dict[tuple[str, str], Any] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str, region: str) -> Any:
        key = (service, region)
        with self._lock:  # one lock per client, so building different clients overlaps
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._clients:
                self._clients[key] = client_for(self.target, service, region)
            return self._clients[key]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _tag_list(spec: dict[str, Any], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    tags = {str(k): str(v) for k, v in (spec.get("tags") or {}).items()}
    tags[SEED_TAG] = str(spec["seed_id"])
    return [{key: k, value: v} for k, v in tags.items()]


def _tag_spec(resource_type: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": _tag_list(spec)}]


def _regional(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_region: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_region.setdefault(str(item["region"]), []).append(item)
    return by_region


def _need(mapping: dict[str, str], seed_id: str, what: str) -> str:
    if seed_id not in mapping:
        raise SeedError(f"aws estate: {what} refers to unknown seed_id {seed_id!r}")
    return mapping[seed_id]


# ---- KMS ---------------------------------------------------------------------------------------------


def _seed_kms(clients: _Clients, keys: list[dict[str, Any]], report: SeedReport) -> dict[str, str]:
    """Keys known by alias; returns seed_id -> key ARN."""
    arns: dict[str, str] = {}
    for region, specs in _regional(keys).items():
        kms = clients("kms", region)
        aliases = {
            a["AliasName"]: a.get("TargetKeyId")
            for page in kms.get_paginator("list_aliases").paginate()
            for a in page.get("Aliases", [])
        }
        for spec in specs:
            alias = spec["alias"]
            if aliases.get(alias):
                arns[spec["seed_id"]] = kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"]
                report.add(False, "aws.kms.key", alias)
                continue
            meta = kms.create_key(
                Description=spec.get("description", ""),
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=_tag_list(spec, "TagKey", "TagValue"),
            )["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
            if spec.get("rotation"):
                kms.enable_key_rotation(KeyId=meta["KeyId"])
            arns[spec["seed_id"]] = meta["Arn"]
            report.add(True, "aws.kms.key", alias)
    return arns


# ---- S3 ----------------------------------------------------------------------------------------------


def _bucket_seed_tag(s3: Any, name: str) -> str | None:
    """The bucket's seed-id tag; '' when it exists untagged; None when it does not exist."""
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if _code(exc) in {"404", "NoSuchBucket", "NotFound"}:
            return None
        raise
    try:
        tags = s3.get_bucket_tagging(Bucket=name)["TagSet"]
    except ClientError as exc:
        if _code(exc) == "NoSuchTagSet":
            return ""
        raise
    return next((t["Value"] for t in tags if t["Key"] == SEED_TAG), "")


def _seed_bucket(
    clients: _Clients, account: str, spec: dict[str, Any], keys: dict[str, str], report: SeedReport
) -> None:
    name, region = spec["name"], spec["region"]
    s3 = clients("s3", region)
    found = _bucket_seed_tag(s3, name)
    if found == spec["seed_id"]:
        report.add(False, "aws.s3.bucket", name)
        return
    if found is None:
        create: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if spec.get("acl"):  # ACLs are disabled under the default ownership, BucketOwnerEnforced
            create["ObjectOwnership"] = "ObjectWriter"
        s3.create_bucket(**create)

    encryption = spec.get("encryption", "none")
    # "none": left unset. (Real S3 encrypts every new bucket with SSE-S3 since 2023; moto does not.)
    if encryption == "aes256":
        rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    elif encryption == "kms":
        key = _need(keys, spec["kms_key"], f"bucket {name}")
        rule = {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key},
            "BucketKeyEnabled": True,
        }
    elif encryption != "none":
        raise SeedError(f"aws estate: bucket {name}: unknown encryption {encryption!r}")
    if encryption != "none":
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})
    if spec.get("versioning"):
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    block = spec.get("public_access_block", "full")
    if block == "full":
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
    elif block == "none":
        s3.delete_public_access_block(Bucket=name)  # real S3 blocks public access on new buckets
    else:
        raise SeedError(f"aws estate: bucket {name}: public_access_block must be full or none")
    if spec.get("acl"):
        s3.put_bucket_acl(Bucket=name, ACL=spec["acl"])
    if spec.get("policy"):
        statements = []
        for template in spec["policy"]:
            if template not in POLICY_TEMPLATES:
                raise SeedError(f"aws estate: bucket {name}: unknown policy template {template!r}")
            statements += POLICY_TEMPLATES[template](name, account)
        s3.put_bucket_policy(
            Bucket=name, Policy=json.dumps({"Version": "2012-10-17", "Statement": statements})
        )
    if spec.get("logging"):
        s3.put_bucket_logging(
            Bucket=name,
            BucketLoggingStatus={
                "LoggingEnabled": {
                    "TargetBucket": spec["logging"]["target"],
                    "TargetPrefix": spec["logging"].get("prefix", f"{name}/"),
                }
            },
        )
    if spec.get("lifecycle"):
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "expire",
                        "Status": "Enabled",
                        "Filter": {"Prefix": spec["lifecycle"].get("prefix", "")},
                        "Expiration": {"Days": int(spec["lifecycle"]["expire_days"])},
                    }
                ]
            },
        )
    objects = seeded_objects(spec)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed-s3-put") as pool:
        list(
            pool.map(
                lambda item: s3.put_object(Bucket=name, Key=item[0], Body=object_body(name, *item)),
                objects.items(),
            )
        )
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tag_list(spec)})  # last: marks completion
    report.add(True, "aws.s3.bucket", name)


def _seed_s3(
    clients: _Clients, account: str, buckets: list[dict[str, Any]], keys: dict[str, str], report: SeedReport
) -> None:
    # Two waves: a logging target bucket must exist before the buckets that log to it.
    targets = {str((spec.get("logging") or {}).get("target")) for spec in buckets}
    waves = [[b for b in buckets if b["name"] in targets], [b for b in buckets if b["name"] not in targets]]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="seed-s3") as pool:
        for wave in waves:
            parts = [SeedReport() for _ in wave]
            list(
                pool.map(
                    lambda pair: _seed_bucket(clients, account, pair[0], keys, pair[1]), zip(wave, parts, strict=True)
                )
            )
            _merge(report, parts)


# ---- EC2 ---------------------------------------------------------------------------------------------


def _by_seed_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for item in items:
        for tag in item.get("Tags", []):
            if tag["Key"] == SEED_TAG:
                found[tag["Value"]] = item
    return found


def _seed_ec2_region(
    clients: _Clients, region: str, spec: dict[str, Any], keys: dict[str, str], report: SeedReport
) -> None:
    ec2 = clients("ec2", region)

    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [item for item in items if item["region"] == region]

    seed_filter = [{"Name": "tag-key", "Values": [SEED_TAG]}]

    # Security groups (default VPC).
    groups = _by_seed_id(
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
            TagSpecifications=_tag_spec("security-group", sg),
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
    instances = _by_seed_id(
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
            "TagSpecifications": _tag_spec("instance", inst) + _tag_spec("volume", _root_volume(inst)),
        }
        if inst.get("security_groups"):
            run["SecurityGroupIds"] = [
                _need(group_ids, g, f"instance {inst['seed_id']}") for g in inst["security_groups"]
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
    volumes = _by_seed_id(
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
            "TagSpecifications": _tag_spec("volume", vol),
        }
        if vol.get("kms_key"):
            create["KmsKeyId"] = _need(keys, vol["kms_key"], f"volume {vol['seed_id']}")
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
    snapshots = _by_seed_id(
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
            VolumeId=_need(volume_ids, snap["volume"], f"snapshot {snap['seed_id']}"),
            Description=f"{snap.get('description', snap['seed_id'])} (intended age {age} days)",
            TagSpecifications=_tag_spec("snapshot", tagged),
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


def _ec2_regions(spec: dict[str, Any]) -> list[str]:
    regions = set((spec.get("ebs_default_encryption") or {}).keys())
    for kind in ("security_groups", "instances", "volumes", "snapshots"):
        regions.update(str(item["region"]) for item in spec.get(kind, []))
    return sorted(regions)


# ---- RDS ---------------------------------------------------------------------------------------------


def _seed_rds(
    clients: _Clients, account: str, instances: list[dict[str, Any]], keys: dict[str, str], report: SeedReport
) -> None:
    """In order: a replica's source comes first in the description."""
    existing: dict[str, set[str]] = {}
    arns: dict[str, str] = {}
    for spec in instances:
        region, ident = spec["region"], spec["identifier"]
        rds = clients("rds", region)
        if region not in existing:
            existing[region] = {
                db["DBInstanceIdentifier"]
                for page in rds.get_paginator("describe_db_instances").paginate()
                for db in page["DBInstances"]
            }
        arns[ident] = f"arn:{partition(region)}:rds:{region}:{account}:db:{ident}"
        if ident in existing[region]:
            report.add(False, "aws.rds.instance", ident)
            continue
        common: dict[str, Any] = {
            "DBInstanceIdentifier": ident,
            "DBInstanceClass": spec["instance_class"],
            "PubliclyAccessible": bool(spec.get("public", False)),
            "Tags": _tag_list(spec),
        }
        if spec.get("replica_of"):
            source = spec["replica_of"]
            if source not in arns:
                raise SeedError(f"aws estate: replica {ident} of {source!r}, which is not listed before it")
            source_region = arns[source].split(":")[3]
            replica = dict(
                common, SourceDBInstanceIdentifier=arns[source] if source_region != region else source
            )
            if source_region != region:
                replica["SourceRegion"] = source_region
            if spec.get("kms_key"):
                replica["KmsKeyId"] = _need(keys, spec["kms_key"], f"replica {ident}")
            rds.create_db_instance_read_replica(**replica)
        else:
            create = dict(
                common,
                Engine=spec["engine"],
                EngineVersion=str(spec["engine_version"]),
                AllocatedStorage=int(spec.get("storage_gb", 20)),
                MasterUsername="runbooks",
                # Random and discarded: nothing logs in to the local databases.
                MasterUserPassword=secrets.token_urlsafe(18),
                StorageEncrypted=bool(spec.get("encrypted", False)),
                BackupRetentionPeriod=int(spec.get("backup_retention_days", 1)),
                MultiAZ=bool(spec.get("multi_az", False)),
                DeletionProtection=bool(spec.get("deletion_protection", False)),
            )
            if spec.get("kms_key"):
                create["KmsKeyId"] = _need(keys, spec["kms_key"], f"db {ident}")
            rds.create_db_instance(**create)
        report.add(True, "aws.rds.instance", ident)


# ---- Route 53 ----------------------------------------------------------------------------------------


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


def _seed_route53(clients: _Clients, spec: dict[str, Any], report: SeedReport) -> None:
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
        r53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id, AddTags=_tag_list(zone))
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
            ResourceType="healthcheck", ResourceId=check_id, AddTags=_tag_list(tagged)
        )
        check_ids[check["seed_id"]] = check_id
        report.add(True, "aws.route53.health_check", check["seed_id"])

    # Record sets have no tags: known by (name, type, set identifier).
    changes: dict[str, list[dict[str, Any]]] = {}
    present: dict[str, set[tuple[str, str, str]]] = {}
    for record in spec.get("records", []):
        zone_id = _need(zone_ids, record["zone"], f"record {record['name']}")
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
            rrset["HealthCheckId"] = _need(check_ids, record["health_check"], f"record {ident}")
        changes.setdefault(zone_id, []).append({"Action": "CREATE", "ResourceRecordSet": rrset})
        report.add(True, "aws.route53.record", ident)
    for zone_id, batch in changes.items():
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": batch})


# ---- IAM ---------------------------------------------------------------------------------------------


def _seed_iam(clients: _Clients, spec: dict[str, Any], report: SeedReport) -> None:
    iam = clients("iam", clients.target.regions[0])
    for user in spec.get("users", []):
        name = user["name"]
        try:
            iam.get_user(UserName=name)
            report.add(False, "aws.iam.user", name)
            continue
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
        iam.create_user(UserName=name, Tags=_tag_list(user))
        if user.get("console_password"):
            # Random and discarded: nobody signs in to the emulator's console.
            iam.create_login_profile(UserName=name, Password=f"Rb1-{secrets.token_urlsafe(18)}")
        if user.get("access_key"):
            iam.create_access_key(UserName=name)  # the secret is not kept: nothing uses it locally
        if user.get("mfa") == "virtual":
            serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"][
                "SerialNumber"
            ]
            iam.enable_mfa_device(
                UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
            )
        report.add(True, "aws.iam.user", name)

    if spec.get("password_policy"):
        try:
            iam.get_account_password_policy()
            report.add(False, "aws.iam.password_policy", "account")
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            iam.update_account_password_policy(**spec["password_policy"])
            report.add(True, "aws.iam.password_policy", "account")


# ---- CloudTrail --------------------------------------------------------------------------------------


def _seed_cloudtrail(clients: _Clients, trails: list[dict[str, Any]], report: SeedReport) -> None:
    for trail in trails:
        ct = clients("cloudtrail", trail["region"])
        try:
            ct.get_trail(Name=trail["name"])
            report.add(False, "aws.cloudtrail.trail", trail["name"])
            continue
        except ClientError as exc:
            if _code(exc) != "TrailNotFoundException":
                raise
        ct.create_trail(
            Name=trail["name"],
            S3BucketName=trail["bucket"],
            IsMultiRegionTrail=bool(trail.get("multi_region", False)),
            EnableLogFileValidation=bool(trail.get("log_file_validation", False)),
            TagsList=_tag_list(trail),
        )
        if trail.get("logging", True):
            ct.start_logging(Name=trail["name"])
        report.add(True, "aws.cloudtrail.trail", trail["name"])


# ---- DynamoDB ----------------------------------------------------------------------------------------


def _seed_dynamodb(clients: _Clients, tables: list[dict[str, Any]], report: SeedReport) -> None:
    for table in tables:
        ddb = clients("dynamodb", table["region"])
        name = table["name"]
        try:
            ddb.describe_table(TableName=name)
            report.add(False, "aws.dynamodb.table", name)
            continue
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            Tags=_tag_list(table),
        )
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if table.get("pitr"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        items = [
            {"PutRequest": {"Item": {"pk": {"S": f"{name}-{i:03d}"}, "payload": {"S": f"seeded item {i}"}}}}
            for i in range(int(table.get("items", 0)))
        ]
        for start in range(0, len(items), 25):  # BatchWriteItem takes at most 25 items
            ddb.batch_write_item(RequestItems={name: items[start : start + 25]})
        report.add(True, "aws.dynamodb.table", name)


# ---- entry point -------------------------------------------------------------------------------------


def _merge(report: SeedReport, parts: list[SeedReport]) -> None:
    """Fold per-job reports into ``report`` in a fixed order (the result does not depend on timing)."""
    for part in parts:
        report.created.extend(part.created)
        report.existing.extend(part.existing)


def seed(target: Target, section: dict[str, Any], report: SeedReport) -> None:
    """Apply the ``aws:`` section of the estate description to ``target`` (idempotent).

    Services run in parallel; buckets, volumes and RDS wait for the KMS keys, CloudTrail for its bucket.
    """
    clients = _Clients(target)
    account = target.account
    ec2 = section.get("ec2") or {}
    regions = _ec2_regions(ec2)
    names = ["kms", "s3", "rds", "route53", "iam", "dynamodb", *(f"ec2-{r}" for r in regions), "cloudtrail"]
    parts = {name: SeedReport() for name in names}

    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="seed-aws") as pool:
        kms = pool.submit(_seed_kms, clients, section.get("kms_keys", []), parts["kms"])

        def s3_job() -> None:
            _seed_s3(clients, account, section.get("s3_buckets", []), kms.result(), parts["s3"])

        def rds_job() -> None:
            _seed_rds(clients, account, section.get("rds_instances", []), kms.result(), parts["rds"])

        def ec2_job(region: str) -> None:
            _seed_ec2_region(clients, region, ec2, kms.result(), parts[f"ec2-{region}"])

        s3 = pool.submit(s3_job)

        def cloudtrail_job() -> None:
            s3.result()
            _seed_cloudtrail(clients, section.get("cloudtrail", []), parts["cloudtrail"])

        # Jobs wait only for jobs submitted before them, so the FIFO pool cannot deadlock.
        jobs = [
            kms,
            s3,
            pool.submit(rds_job),
            pool.submit(_seed_route53, clients, section.get("route53") or {}, parts["route53"]),
            pool.submit(_seed_iam, clients, section.get("iam") or {}, parts["iam"]),
            pool.submit(_seed_dynamodb, clients, section.get("dynamodb", []), parts["dynamodb"]),
            *(pool.submit(ec2_job, region) for region in regions),
            pool.submit(cloudtrail_job),
        ]
        for job in jobs:
            job.result()  # re-raises the first failure
    _merge(report, [parts[name] for name in names])
