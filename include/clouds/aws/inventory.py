"""AWS inventory: one lister per service, registered with :mod:`include.inventory.registry`.

Every lister talks to AWS only through the Airflow amazon provider hooks, built from the target's
connection id (and the region asked for, for regional services), and normalises what it finds into
:class:`~include.records.ResourceRecord` objects whose attributes follow ``docs/inventory-records.md``.

Errors propagate: the collector records them per (service, region). The only errors handled here are
the documented "this is not configured" answers of per-resource detail calls (a bucket without a
policy, a user without a console password...), which are facts, not failures.

This module imports boto3 / the provider at module top: the registry imports it lazily, and no DAG file
imports it at parse time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.rds import RdsHook
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.exceptions import ClientError

from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord
from include.targets import Target

T = TypeVar("T")

#: Cap on keys listed per bucket for ``object_count`` / ``size_bytes``. Listing costs one request per
#: 1,000 keys; the local estate is tiny, a real bucket can hold billions (use S3 Inventory or CloudWatch
#: storage metrics there). Past the cap the counts are partial and ``object_count_truncated`` is true.
MAX_KEYS_COUNTED = 10_000
#: Parallel detail calls inside the S3 lister (about 12 calls per bucket).
S3_DETAIL_WORKERS = 4
#: Ports wider than this in one rule are recorded as ``-1`` (all ports) in ``open_to_world_ports``.
MAX_EXPANDED_PORT_RANGE = 1024
WORLD_CIDRS = frozenset({"0.0.0.0/0", "::/0"})
_PUBLIC_GRANTEES = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)


# ---- plumbing ------------------------------------------------------------------------------------


def partition(region: str) -> str:
    """The ARN partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _home(ctx: ListContext) -> str:
    """Region used for a global service's endpoint: the target's first region."""
    return ctx.target.regions[0] if ctx.region == GLOBAL else ctx.region


def _hook(conn_id: str, service: str, region: str) -> AwsBaseHook:
    """The provider hook the runbooks use for ``service``."""
    if service == "s3":
        return S3Hook(aws_conn_id=conn_id, region_name=region)
    if service == "ec2":
        return EC2Hook(api_type="client_type", aws_conn_id=conn_id, region_name=region)
    if service == "rds":
        return RdsHook(aws_conn_id=conn_id, region_name=region)
    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region)


#: boto3 sessions made by the hooks, one per connection (id + content). ``hook.conn`` builds a fresh session
#: per client, and each fresh session parses the service model again (~0.2-0.8 s CPU for EC2): sharing one
#: session per connection cuts a whole-estate seed or inventory from ~4 s to ~1 s of client-side CPU.
#: Sessions are not thread-safe, clients are: clients are created under the lock and shared freely.
_SESSIONS: dict[tuple[str, str], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _connection_fingerprint(hook: AwsBaseHook) -> str:
    """Digest of the Airflow connection behind ``hook`` (a changed connection gets a new session)."""
    wrapper = hook.conn_config
    fields = (
        wrapper.conn_type,
        wrapper.login,
        wrapper.password,
        wrapper.schema,
        json.dumps(wrapper.extra_config, sort_keys=True, default=str),
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()


def client_for(target: Target, service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region``, built from the matching provider hook.

    Same endpoint, botocore config (``config_kwargs``), TLS verification and credentials (including an
    assumed role) as ``hook.conn``; only the hook-made session is shared between clients of one connection.
    """
    hook = _hook(target.conn_id, service, region)
    key = (target.conn_id, _connection_fingerprint(hook))
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = hook.get_session(region_name=region)
        return session.client(
            service_name=hook.service_name,
            region_name=region,
            endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=hook.service_name),
            config=hook.config,
            verify=hook.verify,
        )


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unless(codes: Iterable[str], call: Callable[[], T], default: T) -> T:
    """``call()``, or ``default`` when AWS answers with one of ``codes`` ("not configured")."""
    try:
        return call()
    except ClientError as exc:
        if _error_code(exc) in set(codes):
            return default
        raise


def _paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, [])


def _tags(tag_list: Iterable[dict[str, Any]] | None) -> dict[str, str]:
    """AWS ``[{"Key": k, "Value": v}]`` (any capitalisation of the keys) -> ``{k: v}``."""
    tags: dict[str, str] = {}
    for tag in tag_list or []:
        key = tag.get("Key", tag.get("key", tag.get("TagKey")))
        value = tag.get("Value", tag.get("value", tag.get("TagValue", "")))
        if key is not None:
            tags[str(key)] = "" if value is None else str(value)
    return tags


def probe(target: Target) -> None:
    """Raise if ``target``'s connection cannot reach AWS or is refused (STS GetCallerIdentity)."""
    client_for(target, "sts", target.regions[0]).get_caller_identity()


# ---- S3 ----------------------------------------------------------------------------------------------

_S3_PERMISSIONS = (
    "s3:ListAllMyBuckets",
    "s3:GetBucketLocation",
    "s3:GetBucketTagging",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketVersioning",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketAcl",
    "s3:GetBucketLogging",
    "s3:GetLifecycleConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucket",
)


def _bucket_region(client: Any, bucket: str) -> str:
    constraint = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    # us-east-1 answers with no constraint; "EU" is the legacy spelling of eu-west-1.
    if not constraint:
        return "us-east-1"
    return "eu-west-1" if constraint == "EU" else str(constraint)


def _bucket_record(ctx: ListContext, client: Any, bucket: dict[str, Any], region: str) -> ResourceRecord:
    name = bucket["Name"]
    tags = _tags(_unless({"NoSuchTagSet"}, lambda: client.get_bucket_tagging(Bucket=name)["TagSet"], []))

    rules = _unless(
        {"ServerSideEncryptionConfigurationNotFoundError"},
        lambda: client.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"],
        [],
    )
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")

    versioning = client.get_bucket_versioning(Bucket=name)

    block = _unless(
        {"NoSuchPublicAccessBlockConfiguration"},
        lambda: client.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"],
        None,
    )
    pab = {
        "block_public_acls": bool((block or {}).get("BlockPublicAcls", False)),
        "ignore_public_acls": bool((block or {}).get("IgnorePublicAcls", False)),
        "block_public_policy": bool((block or {}).get("BlockPublicPolicy", False)),
        "restrict_public_buckets": bool((block or {}).get("RestrictPublicBuckets", False)),
    }
    # AWS evaluates the policy itself (conditions included); no policy at all is "not public".
    policy_public = _unless(
        {"NoSuchBucketPolicy"},
        lambda: bool(client.get_bucket_policy_status(Bucket=name)["PolicyStatus"]["IsPublic"]),
        False,
    )
    grants = client.get_bucket_acl(Bucket=name).get("Grants", [])
    acl_public = any(g.get("Grantee", {}).get("URI") in _PUBLIC_GRANTEES for g in grants)
    # Effective exposure: IgnorePublicAcls voids public ACLs, RestrictPublicBuckets voids public policies.
    # (The account-level public access block, s3control, is not read here.)
    public_reasons = []
    if acl_public and not pab["ignore_public_acls"]:
        public_reasons.append("acl")
    if policy_public and not pab["restrict_public_buckets"]:
        public_reasons.append("policy")

    logging = "LoggingEnabled" in client.get_bucket_logging(Bucket=name)
    lifecycle = _unless(
        {"NoSuchLifecycleConfiguration"},
        lambda: client.get_bucket_lifecycle_configuration(Bucket=name).get("Rules", []),
        [],
    )
    lock = _unless(
        {"ObjectLockConfigurationNotFoundError"},
        lambda: client.get_object_lock_configuration(Bucket=name).get("ObjectLockConfiguration", {}),
        {},
    )

    count = size = 0
    truncated = False
    for obj in _paginate(client, "list_objects_v2", "Contents", Bucket=name):
        if count >= MAX_KEYS_COUNTED:
            truncated = True
            break
        count += 1
        size += int(obj.get("Size", 0))

    return ctx.record(
        service="s3",
        resource_type="aws.s3.bucket",
        resource_id=f"arn:{partition(region)}:s3:::{name}",
        name=name,
        region=region,
        tags=tags,
        attributes={
            "encrypted": algorithm is not None,
            "encryption_algorithm": algorithm,
            "kms_key": default.get("KMSMasterKeyID"),
            "versioning": versioning.get("Status") == "Enabled",
            "mfa_delete": versioning.get("MFADelete") == "Enabled",
            "public": bool(public_reasons),
            "public_reasons": public_reasons,
            "public_access_block": pab,
            "public_access_block_configured": block is not None,
            "policy_public": policy_public,
            "acl_public": acl_public,
            "logging": logging,
            "lifecycle_rules": len(lifecycle),
            "object_lock": lock.get("ObjectLockEnabled") == "Enabled",
            "object_count": count,
            "object_count_truncated": truncated,
            "size_bytes": size,
            "created_at": bucket.get("CreationDate"),
        },
    )


@lister("aws", "s3", ["aws.s3.bucket"], regional=False, permissions=_S3_PERMISSIONS)
def list_s3(ctx: ListContext) -> list[ResourceRecord]:
    """Every bucket of the account (S3 lists them globally), each recorded in its own region."""
    home = client_for(ctx.target, "s3", _home(ctx))
    buckets = list(_paginate(home, "list_buckets", "Buckets"))
    if not buckets:
        return []
    clients: dict[str, Any] = {_home(ctx): home}
    lock = threading.Lock()

    def regional(region: str) -> Any:
        with lock:
            if region not in clients:
                clients[region] = client_for(ctx.target, "s3", region)
            return clients[region]

    def one(bucket: dict[str, Any]) -> ResourceRecord | None:
        try:
            region = _bucket_region(home, bucket["Name"])
            return _bucket_record(ctx, regional(region), bucket, region)
        except ClientError as exc:
            if _error_code(exc) == "NoSuchBucket":  # deleted between the list and the detail calls
                return None
            raise

    with ThreadPoolExecutor(max_workers=S3_DETAIL_WORKERS, thread_name_prefix="inv-s3") as pool:
        return [record for record in pool.map(one, buckets) if record is not None]


# ---- EC2 ---------------------------------------------------------------------------------------------


def _ec2_arn(ctx: ListContext) -> str:
    return f"arn:{partition(ctx.region)}:ec2:{ctx.region}:{ctx.target.account}"


def _name(tags: dict[str, str], default: str) -> str:
    return tags.get("Name") or default


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
    tags = _tags(group.get("Tags"))
    group_id = group["GroupId"]
    return ctx.record(
        service="ec2",
        resource_type="aws.ec2.security_group",
        resource_id=f"{_ec2_arn(ctx)}:security-group/{group_id}",
        name=group.get("GroupName") or group_id,
        tags=tags,
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
    permissions=(
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
        "ec2:DescribeSnapshots",
        "ec2:DescribeSecurityGroups",
        "ec2:GetEbsEncryptionByDefault",
    ),
)
def list_ec2(ctx: ListContext) -> list[ResourceRecord]:
    """Instances, volumes, snapshots owned by the account, security groups, EBS default encryption."""
    client = client_for(ctx.target, "ec2", ctx.region)
    arn = _ec2_arn(ctx)
    records: list[ResourceRecord] = []

    # Explicit pages: an unpaginated answer for thousands of instances can outlast botocore's read timeout.
    for reservation in _paginate(client, "describe_instances", "Reservations", PaginationConfig={"PageSize": 500}):
        for inst in reservation.get("Instances", []):
            tags = _tags(inst.get("Tags"))
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
            tokens = inst.get("MetadataOptions", {}).get("HttpTokens")
            if tokens:
                attributes["imdsv2_required"] = tokens == "required"
            records.append(
                ctx.record(
                    service="ec2",
                    resource_type="aws.ec2.instance",
                    resource_id=f"{arn}:instance/{inst['InstanceId']}",
                    name=_name(tags, inst["InstanceId"]),
                    tags=tags,
                    attributes=attributes,
                )
            )

    for vol in _paginate(client, "describe_volumes", "Volumes", PaginationConfig={"PageSize": 500}):
        tags = _tags(vol.get("Tags"))
        attached_to = [
            a["InstanceId"] for a in vol.get("Attachments", []) if a.get("State") in {"attached", "attaching"}
        ]
        records.append(
            ctx.record(
                service="ec2",
                resource_type="aws.ec2.volume",
                resource_id=f"{arn}:volume/{vol['VolumeId']}",
                name=_name(tags, vol["VolumeId"]),
                tags=tags,
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
    own = {"OwnerIds": ["self"], "Filters": [{"Name": "owner-id", "Values": [ctx.target.account]}]}
    for snap in _paginate(client, "describe_snapshots", "Snapshots", **own):
        tags = _tags(snap.get("Tags"))
        records.append(
            ctx.record(
                service="ec2",
                resource_type="aws.ec2.snapshot",
                # Snapshot ARNs carry no account id (IAM's format: arn:aws:ec2:<region>::snapshot/<id>).
                resource_id=f"arn:{partition(ctx.region)}:ec2:{ctx.region}::snapshot/{snap['SnapshotId']}",
                name=_name(tags, snap["SnapshotId"]),
                tags=tags,
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
        for group in _paginate(client, "describe_security_groups", "SecurityGroups")
    )

    default_encryption = client.get_ebs_encryption_by_default()
    records.append(
        ctx.record(
            service="ec2",
            resource_type="aws.ec2.region_settings",
            resource_id=f"{arn}:ebs-default-encryption",
            name=ctx.region,
            attributes={
                "ebs_default_encryption": bool(default_encryption.get("EbsEncryptionByDefault", False))
            },
        )
    )
    return records


# ---- RDS ---------------------------------------------------------------------------------------------


@lister("aws", "rds", ["aws.rds.instance"], permissions=("rds:DescribeDBInstances",))
def list_rds(ctx: ListContext) -> list[ResourceRecord]:
    """DB instances with encryption, exposure, backups and replication topology."""
    client = client_for(ctx.target, "rds", ctx.region)
    records = []
    for db in _paginate(client, "describe_db_instances", "DBInstances"):
        records.append(
            ctx.record(
                service="rds",
                resource_type="aws.rds.instance",
                resource_id=db["DBInstanceArn"],
                name=db["DBInstanceIdentifier"],
                tags=_tags(db.get("TagList")),
                attributes={
                    "engine": db.get("Engine"),
                    "engine_version": db.get("EngineVersion"),
                    "instance_class": db.get("DBInstanceClass"),
                    "encrypted": bool(db.get("StorageEncrypted", False)),
                    "kms_key": db.get("KmsKeyId"),
                    "public": bool(db.get("PubliclyAccessible", False)),
                    "retention_days": int(db.get("BackupRetentionPeriod", 0)),
                    "multi_az": bool(db.get("MultiAZ", False)),
                    "state": db.get("DBInstanceStatus"),
                    # Same-region sources are identifiers, cross-region ones ARNs (as RDS reports them).
                    "replica_source": db.get("ReadReplicaSourceDBInstanceIdentifier"),
                    "read_replicas": list(db.get("ReadReplicaDBInstanceIdentifiers", [])),
                    "deletion_protection": bool(db.get("DeletionProtection", False)),
                    "endpoint": (db.get("Endpoint") or {}).get("Address"),
                    "created_at": db.get("InstanceCreateTime"),
                },
            )
        )
    return records


# ---- Route 53 ----------------------------------------------------------------------------------------


def _route53_tags(client: Any, resource_type: str, ids: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for start in range(0, len(ids), 10):  # ListTagsForResources takes at most 10 ids
        answer = client.list_tags_for_resources(
            ResourceType=resource_type, ResourceIds=ids[start : start + 10]
        )
        for entry in answer.get("ResourceTagSets", []):
            found[entry["ResourceId"]] = _tags(entry.get("Tags"))
    return found


@lister(
    "aws",
    "route53",
    ["aws.route53.zone", "aws.route53.record", "aws.route53.health_check"],
    regional=False,
    permissions=(
        "route53:ListHostedZones",
        "route53:ListResourceRecordSets",
        "route53:ListHealthChecks",
        "route53:ListTagsForResources",
    ),
)
def list_route53(ctx: ListContext) -> list[ResourceRecord]:
    """Hosted zones, their record sets and health checks. Names are spelled as Route 53 does (final dot)."""
    client = client_for(ctx.target, "route53", _home(ctx))
    part = partition(_home(ctx))
    records = []
    zones = list(_paginate(client, "list_hosted_zones", "HostedZones"))
    zone_ids = [zone["Id"].split("/")[-1] for zone in zones]
    zone_tags = _route53_tags(client, "hostedzone", zone_ids)
    for zone, zone_id in zip(zones, zone_ids, strict=True):
        records.append(
            ctx.record(
                service="route53",
                resource_type="aws.route53.zone",
                resource_id=f"arn:{part}:route53:::hostedzone/{zone_id}",
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
        for rrset in _paginate(
            client, "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone_id
        ):
            set_id = rrset.get("SetIdentifier")
            alias = rrset.get("AliasTarget")
            # Record sets have no ARN: the id extends the zone's ARN with name, type and set identifier.
            suffix = f"{rrset['Name']}/{rrset['Type']}" + (f"/{set_id}" if set_id else "")
            records.append(
                ctx.record(
                    service="route53",
                    resource_type="aws.route53.record",
                    resource_id=f"arn:{part}:route53:::hostedzone/{zone_id}/recordset/{suffix}",
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

    checks = list(_paginate(client, "list_health_checks", "HealthChecks"))
    check_tags = _route53_tags(client, "healthcheck", [c["Id"] for c in checks])
    for check in checks:
        config = check.get("HealthCheckConfig", {})
        tags = check_tags.get(check["Id"], {})
        records.append(
            ctx.record(
                service="route53",
                resource_type="aws.route53.health_check",
                resource_id=f"arn:{part}:route53:::healthcheck/{check['Id']}",
                name=_name(tags, check["Id"]),
                region=GLOBAL,
                tags=tags,
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


# ---- IAM ---------------------------------------------------------------------------------------------


@lister(
    "aws",
    "iam",
    ["aws.iam.user", "aws.iam.account"],
    regional=False,
    permissions=(
        "iam:ListUsers",
        "iam:ListUserTags",
        "iam:GetLoginProfile",
        "iam:ListMFADevices",
        "iam:ListAccessKeys",
        "iam:GetAccessKeyLastUsed",
        "iam:GetAccountSummary",
        "iam:GetAccountPasswordPolicy",
    ),
)
def list_iam(ctx: ListContext) -> list[ResourceRecord]:
    """Users (console password, MFA, access keys with last use) and the account's root/password settings.

    Per-user calls suit a small account; a large one would read the credential report instead.
    """
    client = client_for(ctx.target, "iam", _home(ctx))
    records = []
    for user in _paginate(client, "list_users", "Users"):
        name = user["UserName"]
        password = _unless({"NoSuchEntity"}, lambda n=name: client.get_login_profile(UserName=n), None)
        mfa = list(_paginate(client, "list_mfa_devices", "MFADevices", UserName=name))
        keys = []
        for key in _paginate(client, "list_access_keys", "AccessKeyMetadata", UserName=name):
            used = client.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get(
                "AccessKeyLastUsed", {}
            )
            keys.append(
                {
                    "id": key["AccessKeyId"],
                    "status": key.get("Status"),
                    "created_at": key.get("CreateDate"),
                    "last_used_at": used.get("LastUsedDate"),
                }
            )
        records.append(
            ctx.record(
                service="iam",
                resource_type="aws.iam.user",
                resource_id=user["Arn"],
                name=name,
                region=GLOBAL,
                tags=_tags(_paginate(client, "list_user_tags", "Tags", UserName=name)),
                attributes={
                    "created_at": user.get("CreateDate"),
                    "password_enabled": password is not None,
                    "password_last_used": user.get("PasswordLastUsed"),
                    "mfa_enabled": bool(mfa),
                    "access_keys": keys,
                },
            )
        )

    summary = client.get_account_summary().get("SummaryMap", {})
    policy = _unless(
        {"NoSuchEntity"}, lambda: client.get_account_password_policy().get("PasswordPolicy"), None
    )
    account = ctx.target.account
    records.append(
        ctx.record(
            service="iam",
            resource_type="aws.iam.account",
            resource_id=f"arn:{partition(_home(ctx))}:iam::{account}:root",
            name=account,
            region=GLOBAL,
            attributes={
                "root_mfa_enabled": bool(summary.get("AccountMFAEnabled", 0)),
                "root_access_keys_present": bool(summary.get("AccountAccessKeysPresent", 0)),
                "password_policy": policy,
            },
        )
    )
    return records


# ---- KMS ---------------------------------------------------------------------------------------------


@lister(
    "aws",
    "kms",
    ["aws.kms.key"],
    permissions=(
        "kms:ListKeys",
        "kms:ListAliases",
        "kms:DescribeKey",
        "kms:GetKeyRotationStatus",
        "kms:ListResourceTags",
    ),
)
def list_kms(ctx: ListContext) -> list[ResourceRecord]:
    """Every key of the region, AWS-managed ones included (``key_manager`` tells them apart)."""
    client = client_for(ctx.target, "kms", ctx.region)
    aliases: dict[str, list[str]] = {}
    for alias in _paginate(client, "list_aliases", "Aliases"):
        if alias.get("TargetKeyId"):
            aliases.setdefault(alias["TargetKeyId"], []).append(alias["AliasName"])
    records = []
    for key in _paginate(client, "list_keys", "Keys"):
        meta = client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        key_id = meta["KeyId"]
        key_aliases = sorted(aliases.get(key_id, []))
        manager = meta.get("KeyManager")
        # Only AWS may name an alias alias/aws/*: such a key is AWS-managed even where an emulator (moto, for
        # the key it makes for EBS default encryption) reports CUSTOMER.
        if any(a.startswith("alias/aws/") for a in key_aliases):
            manager = "AWS"
        state = meta.get("KeyState")
        attributes: dict[str, Any] = {
            "state": state,
            "key_manager": manager,
            "key_spec": meta.get("KeySpec", meta.get("CustomerMasterKeySpec")),
            "key_usage": meta.get("KeyUsage"),
            "created_at": meta.get("CreationDate"),
            "aliases": key_aliases,
        }
        # Rotation applies to enabled/disabled symmetric keys with AWS-made material only; elsewhere the key
        # is absent ("not applicable") rather than false.
        rotatable = (
            state in {"Enabled", "Disabled"}
            and attributes["key_spec"] == "SYMMETRIC_DEFAULT"
            and meta.get("Origin", "AWS_KMS") == "AWS_KMS"
        )
        if rotatable:
            attributes["rotation_enabled"] = bool(
                client.get_key_rotation_status(KeyId=key_id).get("KeyRotationEnabled", False)
            )
        tags: dict[str, str] = {}
        if manager == "CUSTOMER":
            tags = _tags(_paginate(client, "list_resource_tags", "Tags", KeyId=key_id))
        records.append(
            ctx.record(
                service="kms",
                resource_type="aws.kms.key",
                resource_id=meta["Arn"],
                name=attributes["aliases"][0] if attributes["aliases"] else key_id,
                tags=tags,
                attributes=attributes,
            )
        )
    return records


# ---- CloudTrail --------------------------------------------------------------------------------------


@lister(
    "aws",
    "cloudtrail",
    ["aws.cloudtrail.trail"],
    permissions=("cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags"),
)
def list_cloudtrail(ctx: ListContext) -> list[ResourceRecord]:
    """Trails whose home region is this region (multi-region trails are recorded once, at home)."""
    client = client_for(ctx.target, "cloudtrail", ctx.region)
    # DescribeTrails has no paginator; without shadow trails it returns only trails created here.
    trails = client.describe_trails(includeShadowTrails=False).get("trailList", [])
    records = []
    for trail in trails:
        arn = trail["TrailARN"]
        status = client.get_trail_status(Name=arn)
        tag_lists = list(_paginate(client, "list_tags", "ResourceTagList", ResourceIdList=[arn]))
        home = trail.get("HomeRegion") or ctx.region
        records.append(
            ctx.record(
                service="cloudtrail",
                resource_type="aws.cloudtrail.trail",
                resource_id=arn,
                name=trail["Name"],
                region=home,
                tags=_tags(tag_lists[0].get("TagsList") if tag_lists else None),
                attributes={
                    "multi_region": bool(trail.get("IsMultiRegionTrail", False)),
                    "log_file_validation": bool(trail.get("LogFileValidationEnabled", False)),
                    "logging": bool(status.get("IsLogging", False)),
                    "s3_bucket": trail.get("S3BucketName"),
                    "kms_key": trail.get("KmsKeyId"),
                    "encrypted": bool(trail.get("KmsKeyId")),
                    "home_region": home,
                },
            )
        )
    return records


# ---- DynamoDB ----------------------------------------------------------------------------------------


@lister(
    "aws",
    "dynamodb",
    ["aws.dynamodb.table"],
    permissions=(
        "dynamodb:ListTables",
        "dynamodb:DescribeTable",
        "dynamodb:DescribeContinuousBackups",
        "dynamodb:ListTagsOfResource",
    ),
)
def list_dynamodb(ctx: ListContext) -> list[ResourceRecord]:
    """Tables with point-in-time recovery status."""
    client = client_for(ctx.target, "dynamodb", ctx.region)
    records = []
    for table_name in _paginate(client, "list_tables", "TableNames"):
        table = client.describe_table(TableName=table_name)["Table"]
        backups = client.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
        pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        arn = table["TableArn"]
        records.append(
            ctx.record(
                service="dynamodb",
                resource_type="aws.dynamodb.table",
                resource_id=arn,
                name=table_name,
                tags=_tags(_paginate(client, "list_tags_of_resource", "Tags", ResourceArn=arn)),
                attributes={
                    "state": table.get("TableStatus"),
                    # DynamoDB always encrypts at rest; SSEDescription appears only for KMS keys.
                    "encrypted": True,
                    "kms_key": (table.get("SSEDescription") or {}).get("KMSMasterKeyArn"),
                    "pitr": pitr == "ENABLED",
                    "size_bytes": table.get("TableSizeBytes"),
                    "item_count": table.get("ItemCount"),
                    "created_at": table.get("CreationDateTime"),
                },
            )
        )
    return records
