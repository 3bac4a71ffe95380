"""AWS resource ids (ARNs): how this project builds them and reads them back (one place).

Inventory records carry ARNs as ``resource_id``; fixers, backup and the other runbooks turn them back
into the names the APIs want. Snapshot ARNs carry no account id (IAM's format).
"""

from __future__ import annotations

from include.clouds.aws.clients import partition


class ArnError(ValueError):
    """A string is not the kind of ARN asked for."""


def s3_bucket_arn(name: str, region: str = "us-east-1") -> str:
    """``arn:aws:s3:::<bucket>`` (S3 ARNs carry neither region nor account)."""
    return f"arn:{partition(region)}:s3:::{name}"


def s3_object_arn(bucket: str, key: str, region: str = "us-east-1") -> str:
    """``arn:aws:s3:::<bucket>/<key>``; ``key`` may be a policy pattern such as ``*`` or ``AWSLogs/1/*``."""
    return f"{s3_bucket_arn(bucket, region)}/{key}"


def ec2_arn(region: str, account: str, kind: str, ident: str) -> str:
    """``arn:aws:ec2:<region>:<account>:<kind>/<id>`` (kind: instance, volume, security-group...)."""
    return f"arn:{partition(region)}:ec2:{region}:{account}:{kind}/{ident}"


def ec2_snapshot_arn(region: str, snapshot_id: str) -> str:
    """``arn:aws:ec2:<region>::snapshot/<id>`` (no account id, as IAM writes snapshot ARNs)."""
    return f"arn:{partition(region)}:ec2:{region}::snapshot/{snapshot_id}"


def ec2_region_arn(region: str, account: str) -> str:
    """The per-region EC2 account settings pseudo-resource (``arn:aws:ec2:<region>:<account>``)."""
    return f"arn:{partition(region)}:ec2:{region}:{account}"


def ec2_region_settings_arn(region: str, account: str) -> str:
    """Id of the ``aws.ec2.region_settings`` record: ``arn:aws:ec2:<region>:<account>:ebs-default-encryption``."""
    return f"{ec2_region_arn(region, account)}:ebs-default-encryption"


def rds_instance_arn(region: str, account: str, identifier: str) -> str:
    """``arn:aws:rds:<region>:<account>:db:<identifier>``."""
    return f"arn:{partition(region)}:rds:{region}:{account}:db:{identifier}"


def rds_snapshot_arn(region: str, account: str, identifier: str) -> str:
    """``arn:aws:rds:<region>:<account>:snapshot:<identifier>`` (a manual DB snapshot)."""
    return f"arn:{partition(region)}:rds:{region}:{account}:snapshot:{identifier}"


def route53_zone_arn(zone_id: str, region: str = "us-east-1") -> str:
    """``arn:aws:route53:::hostedzone/<zone id>`` (``region`` only picks the partition)."""
    return f"arn:{partition(region)}:route53:::hostedzone/{zone_id}"


def route53_record_arn(zone_id: str, suffix: str, region: str = "us-east-1") -> str:
    """Record sets have no ARN: the zone's ARN + ``/recordset/<name>/<type>[/<set identifier>]``."""
    return f"arn:{partition(region)}:route53:::hostedzone/{zone_id}/recordset/{suffix}"


def route53_health_check_arn(check_id: str, region: str = "us-east-1") -> str:
    """``arn:aws:route53:::healthcheck/<id>``."""
    return f"arn:{partition(region)}:route53:::healthcheck/{check_id}"


def iam_root_arn(account: str, region: str = "us-east-1") -> str:
    """``arn:aws:iam::<account>:root`` (the ``aws.iam.account`` record)."""
    return f"arn:{partition(region)}:iam::{account}:root"


def iam_arn(account: str, kind: str, name: str, region: str = "us-east-1") -> str:
    """``arn:aws:iam::<account>:<kind>/<name>`` (kind: user, role, policy...)."""
    return f"arn:{partition(region)}:iam::{account}:{kind}/{name}"


def parse_arn(arn: str) -> dict[str, str]:
    """The parts of an ARN: partition, service, region, account, resource."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise ArnError(f"not an ARN: {arn!r}")
    return dict(zip(("arn", "partition", "service", "region", "account", "resource"), parts, strict=True))


def bucket_name(arn: str) -> str:
    """The bucket of ``arn:aws:s3:::<name>`` (also of an object ARN ``.../<key>``)."""
    parts = parse_arn(arn)
    if parts["service"] != "s3" or not parts["resource"]:
        raise ArnError(f"not an S3 bucket ARN: {arn!r}")
    return parts["resource"].split("/", 1)[0]


def ec2_resource_id(arn: str) -> str:
    """``i-...`` / ``vol-...`` / ``sg-...`` from an EC2 ARN ``.../<kind>/<id>``."""
    parts = parse_arn(arn)
    if parts["service"] != "ec2" or "/" not in parts["resource"]:
        raise ArnError(f"not an EC2 resource ARN: {arn!r}")
    return parts["resource"].rsplit("/", 1)[1]


def rds_identifier(arn: str) -> str:
    """The DB instance identifier of ``arn:aws:rds:<region>:<account>:db:<id>``."""
    parts = parse_arn(arn)
    if parts["service"] != "rds" or not parts["resource"].startswith("db:"):
        raise ArnError(f"not an RDS DB instance ARN: {arn!r}")
    return parts["resource"][3:]


def rds_snapshot_identifier(arn: str) -> str:
    """The DB snapshot identifier of ``arn:aws:rds:<region>:<account>:snapshot:<id>``."""
    parts = parse_arn(arn)
    if parts["service"] != "rds" or not parts["resource"].startswith("snapshot:"):
        raise ArnError(f"not an RDS DB snapshot ARN: {arn!r}")
    return parts["resource"][len("snapshot:"):]


def dynamodb_table_name(arn: str) -> str:
    """The table of ``arn:aws:dynamodb:<region>:<account>:table/<name>`` (also of its backups' ARNs)."""
    parts = parse_arn(arn)
    if parts["service"] != "dynamodb" or not parts["resource"].startswith("table/"):
        raise ArnError(f"not a DynamoDB table ARN: {arn!r}")
    return parts["resource"].split("/")[1]
