"""AWS rules: storage, identity, keys, network, databases, logging.

Each function reads one normalised record (attributes documented in ``docs/inventory-records.md``) and
returns a :class:`Verdict`, or ``None`` when the rule does not apply to that resource (a key the
inventory could not read is "not applicable", never a silent pass or fail).
"""

from __future__ import annotations

from typing import Any

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, fact, rule, verdict
from include.records import ResourceRecord

_AT_REST = {"GDPR": ["Art.32"], "HIPAA": ["164.312(a)(2)(iv)"]}
_BACKUP = {"HIPAA": ["164.308(a)(7)(ii)(A)"]}


def _attr(record: ResourceRecord, key: str) -> Any:
    return record.attributes.get(key)


def _bool_rule(record: ResourceRecord, key: str, ok: str, failed: str) -> Verdict | None:
    """The common shape: a documented boolean that must be true (absent = not applicable)."""
    value = _attr(record, key)
    if value is None:
        return None
    return verdict(value is True, ok, failed, **{key: value})


# ---- derived facts (computed once per scan) --------------------------------------------------------------


@fact("aws.cloudtrail.log_buckets")
def cloudtrail_log_buckets(records: list[ResourceRecord]) -> frozenset[tuple[str, str]]:
    """(target, bucket name) of every bucket a trail delivers to."""
    return frozenset(
        (r.target, str(r.attributes["s3_bucket"]))
        for r in records
        if r.resource_type == "aws.cloudtrail.trail" and r.attributes.get("s3_bucket")
    )


@fact("aws.cloudtrail.trails_by_target")
def trails_by_target(records: list[ResourceRecord]) -> dict[str, list[dict[str, Any]]]:
    """Trails of each target: name, multi_region, logging."""
    found: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r.resource_type == "aws.cloudtrail.trail":
            found.setdefault(r.target, []).append(
                {"name": r.name, "multi_region": r.attributes.get("multi_region"),
                 "logging": r.attributes.get("logging")}
            )
    return found


# ---- S3 ----------------------------------------------------------------------------------------------------


@rule(
    id="aws_s3_bucket_default_encryption",
    title="S3 buckets have default encryption configured",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Default encryption makes every new object encrypted at rest, whatever the uploader sends.",
    remediation=(
        "Set default encryption on the bucket: `aws s3api put-bucket-encryption --bucket <name> "
        "--server-side-encryption-configuration "
        "'{\"Rules\":[{\"ApplyServerSideEncryptionByDefault\":{\"SSEAlgorithm\":\"aws:kms\"}}]}'` "
        "(or AES256), or run remediate_findings with fixer aws.s3.default_encryption."
    ),
    frameworks=_AT_REST,  # AWS-FSBP S3.4 was retired once S3 began encrypting new objects by default
    fixer="aws.s3.default_encryption",
)
def s3_default_encryption(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    encrypted = _attr(record, "encrypted")
    if encrypted is None:
        return None
    algorithm = _attr(record, "encryption_algorithm")
    return verdict(
        encrypted is True, f"default encryption {algorithm}", "no default encryption configured",
        encryption_algorithm=algorithm, kms_key=_attr(record, "kms_key"),
    )


@rule(
    id="aws_s3_bucket_versioning",
    title="S3 buckets have versioning enabled",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Versioning keeps overwritten and deleted objects recoverable (mistakes, ransomware).",
    remediation=(
        "`aws s3api put-bucket-versioning --bucket <name> --versioning-configuration Status=Enabled`, "
        "or run remediate_findings with fixer aws.s3.versioning. Add a lifecycle rule for old versions."
    ),
    frameworks={"AWS-FSBP": ["S3.14"], **_BACKUP},
    fixer="aws.s3.versioning",
)
def s3_versioning(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "versioning", "versioning enabled", "versioning is not enabled")


_PAB_FLAGS = ("block_public_acls", "ignore_public_acls", "block_public_policy", "restrict_public_buckets")


@rule(
    id="aws_s3_bucket_public_access_block",
    title="S3 buckets block public access (all four settings)",
    severity="high",
    resource_types=("aws.s3.bucket",),
    rationale=(
        "Block Public Access stops a later ACL or bucket policy from exposing the bucket; all four "
        "settings are needed (two for ACLs, two for policies)."
    ),
    remediation=(
        "`aws s3api put-public-access-block --bucket <name> --public-access-block-configuration "
        "BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true`, "
        "or run remediate_findings with fixer aws.s3.block_public_access."
    ),
    frameworks={"CIS-AWS-3.0": ["2.1.4"], "AWS-FSBP": ["S3.8"]},
    fixer="aws.s3.block_public_access",
)
def s3_public_access_block(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    block = _attr(record, "public_access_block")
    if not isinstance(block, dict):
        return None
    missing = [flag for flag in _PAB_FLAGS if block.get(flag) is not True]
    return verdict(
        not missing, "all four public access block settings are on",
        "public access block settings off: " + ", ".join(missing),
        missing=missing, configured=_attr(record, "public_access_block_configured"),
    )


@rule(
    id="aws_s3_bucket_not_public",
    title="S3 buckets are not public through their policy or ACL",
    severity="critical",
    resource_types=("aws.s3.bucket",),
    rationale="A public bucket lets anyone on the internet read (or write) its objects.",
    remediation=(
        "Remove the public grant (bucket policy statement with Principal \"*\" or ACL grant to AllUsers / "
        "AuthenticatedUsers) and turn on Block Public Access (fixer aws.s3.block_public_access)."
    ),
    frameworks={
        "CIS-AWS-3.0": ["2.1.4"], "AWS-FSBP": ["S3.2", "S3.3"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"],
    },
    fixer="aws.s3.block_public_access",
)
def s3_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    public = _attr(record, "public")
    if public is None:
        return None
    reasons = list(_attr(record, "public_reasons") or [])
    return verdict(
        public is False, "not public", "public via " + (", ".join(reasons) or "unknown grant"),
        public_reasons=reasons,
    )


@rule(
    id="aws_s3_bucket_access_logging",
    title="S3 buckets have server access logging enabled",
    severity="low",
    resource_types=("aws.s3.bucket",),
    rationale="Access logs are the record of who read or changed what, needed for investigations.",
    remediation=(
        "`aws s3api put-bucket-logging --bucket <name> --bucket-logging-status "
        "'{\"LoggingEnabled\":{\"TargetBucket\":\"<log bucket>\",\"TargetPrefix\":\"<name>/\"}}'`."
    ),
    frameworks={"AWS-FSBP": ["S3.9"], "HIPAA": ["164.312(b)"]},
)
def s3_access_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "logging", "server access logging enabled", "server access logging is off")


@rule(
    id="aws_s3_cloudtrail_bucket_access_logging",
    title="The S3 bucket CloudTrail writes to has access logging enabled",
    severity="medium",
    resource_types=("aws.s3.bucket",),
    rationale="Access logs on the trail bucket show who read or tampered with the audit trail itself.",
    remediation="Enable server access logging on the trail's bucket, to a different bucket.",
    frameworks={"CIS-AWS-3.0": ["3.4"], "HIPAA": ["164.312(b)"]},
)
def s3_cloudtrail_bucket_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if (record.target, record.name) not in ctx.facts["aws.cloudtrail.log_buckets"]:
        return None
    return _bool_rule(
        record, "logging", "CloudTrail bucket has access logging", "CloudTrail bucket has no access logging"
    )


# ---- IAM ---------------------------------------------------------------------------------------------------


@rule(
    id="aws_iam_root_mfa_enabled",
    title="The root user has MFA enabled",
    severity="critical",
    resource_types=("aws.iam.account",),
    rationale="The root user can do anything, including closing the account; a password alone is not enough.",
    remediation="Sign in as root, Security credentials -> Assign MFA device (hardware MFA preferred).",
    frameworks={"CIS-AWS-3.0": ["1.5"], "AWS-FSBP": ["IAM.9"], "HIPAA": ["164.312(d)"]},
)
def iam_root_mfa(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "root_mfa_enabled", "root MFA enabled", "root user has no MFA")


@rule(
    id="aws_iam_root_access_keys_absent",
    title="The root user has no access keys",
    severity="critical",
    resource_types=("aws.iam.account",),
    rationale="Root access keys give unrestricted, unscoped API access that no policy can limit.",
    remediation="Sign in as root, Security credentials -> Access keys: delete every key (use IAM roles).",
    frameworks={"CIS-AWS-3.0": ["1.4"], "AWS-FSBP": ["IAM.4"]},
)
def iam_root_keys(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    present = _attr(record, "root_access_keys_present")
    if present is None:
        return None
    return verdict(present is False, "root has no access keys", "root user has access keys", present=present)


def _password_policy(record: ResourceRecord) -> tuple[bool, dict[str, Any]]:
    """(known, policy): known is False when the lister did not read the policy at all."""
    if "password_policy" not in record.attributes:
        return False, {}
    return True, dict(record.attributes.get("password_policy") or {})


@rule(
    id="aws_iam_password_policy_exists",
    title="An IAM account password policy is set",
    severity="medium",
    resource_types=("aws.iam.account",),
    rationale="Without a policy, IAM users may choose trivial passwords that never expire.",
    remediation=(
        "`aws iam update-account-password-policy --minimum-password-length 14 --password-reuse-prevention 24 "
        "--require-symbols --require-numbers --require-uppercase-characters --require-lowercase-characters`."
    ),
    frameworks={"AWS-FSBP": ["IAM.7"]},
)
def iam_password_policy_exists(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    known, policy = _password_policy(record)
    if not known:
        return None
    return verdict(bool(policy), "password policy set", "no account password policy is set")


@rule(
    id="aws_iam_password_policy_min_length",
    title="The IAM password policy requires at least 14 characters",
    severity="medium",
    resource_types=("aws.iam.account",),
    rationale="Length is the strongest single defence against guessing and brute force.",
    remediation="`aws iam update-account-password-policy --minimum-password-length 14` (keep other settings).",
    frameworks={"CIS-AWS-3.0": ["1.8"], "AWS-FSBP": ["IAM.15"]},
    params={"min_length": 14},
)
def iam_password_min_length(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    known, policy = _password_policy(record)
    if not known:
        return None
    wanted = int(ctx.params["min_length"])
    length = int(policy.get("MinimumPasswordLength") or 0)
    return verdict(
        length >= wanted, f"minimum length {length}",
        f"minimum password length {length or 'not set'} < {wanted}" if policy else "no password policy is set",
        minimum_length=length, required=wanted,
    )


@rule(
    id="aws_iam_password_policy_reuse_prevention",
    title="The IAM password policy prevents reusing the last 24 passwords",
    severity="medium",
    resource_types=("aws.iam.account",),
    rationale="Reuse prevention stops users from cycling back to a password that may have leaked.",
    remediation="`aws iam update-account-password-policy --password-reuse-prevention 24` (keep other settings).",
    frameworks={"CIS-AWS-3.0": ["1.9"], "AWS-FSBP": ["IAM.16"]},
    params={"min_remembered": 24},
)
def iam_password_reuse(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    known, policy = _password_policy(record)
    if not known:
        return None
    wanted = int(ctx.params["min_remembered"])
    remembered = int(policy.get("PasswordReusePrevention") or 0)
    return verdict(
        remembered >= wanted, f"last {remembered} passwords remembered",
        f"password reuse prevention {remembered or 'not set'} < {wanted}" if policy else "no password policy is set",
        reuse_prevention=remembered, required=wanted,
    )


@rule(
    id="aws_iam_user_console_mfa",
    title="IAM users with a console password have MFA",
    severity="high",
    resource_types=("aws.iam.user",),
    rationale="A phished or reused console password alone must not be enough to sign in.",
    remediation="IAM -> Users -> <user> -> Security credentials -> Assign MFA device; or remove the password.",
    frameworks={"CIS-AWS-3.0": ["1.10"], "AWS-FSBP": ["IAM.5"], "HIPAA": ["164.312(d)"]},
)
def iam_user_console_mfa(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _attr(record, "password_enabled") is not True or _attr(record, "mfa_enabled") is None:
        return None  # no console password: MFA for the console does not apply
    return verdict(_attr(record, "mfa_enabled") is True, "console user has MFA", "console password without MFA")


def _active_keys(record: ResourceRecord) -> list[dict[str, Any]]:
    return [k for k in (_attr(record, "access_keys") or []) if k.get("status") == "Active"]


@rule(
    id="aws_iam_access_key_rotation",
    title="Active access keys are rotated every 90 days",
    severity="medium",
    resource_types=("aws.iam.user",),
    rationale="Long-lived keys accumulate exposure (laptops, CI logs, old scripts); rotation bounds it.",
    remediation="Create a new key, move its users to it, deactivate then delete the old one.",
    frameworks={"CIS-AWS-3.0": ["1.14"], "AWS-FSBP": ["IAM.3"]},
    params={"max_age_days": 90},
)
def iam_access_key_rotation(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    keys = _active_keys(record)
    if not keys:
        return None
    limit = float(ctx.params["max_age_days"])
    old = {k["id"]: round(age) for k in keys if (age := ctx.age_days(k.get("created_at"))) is not None and age > limit}
    return verdict(
        not old, f"{len(keys)} active key(s) younger than {limit:g} days",
        "access keys older than {:g} days: {}".format(limit, ", ".join(f"{k} ({d}d)" for k, d in old.items())),
        old_keys=old,
    )


@rule(
    id="aws_iam_credentials_unused",
    title="Credentials unused for 45 days or more are disabled",
    severity="medium",
    resource_types=("aws.iam.user",),
    rationale="Unused passwords and keys are pure risk: nobody notices when an attacker starts using them.",
    remediation="Disable the console password and deactivate access keys not used in 45 days; delete them later.",
    frameworks={"CIS-AWS-3.0": ["1.12"], "AWS-FSBP": ["IAM.22", "IAM.8"]},
    params={"max_unused_days": 45},
)
def iam_credentials_unused(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    limit = float(ctx.params["max_unused_days"])
    stale: dict[str, int] = {}
    checked = 0
    if _attr(record, "password_enabled") is True:
        checked += 1
        # Never used: count from the user's creation (the password's own date is not in the record).
        age = ctx.age_days(_attr(record, "password_last_used") or _attr(record, "created_at"))
        if age is not None and age >= limit:
            stale["console password"] = round(age)
    for key in _active_keys(record):
        checked += 1
        age = ctx.age_days(key.get("last_used_at") or key.get("created_at"))
        if age is not None and age >= limit:
            stale[f"access key {key['id']}"] = round(age)
    if not checked:
        return None
    return verdict(
        not stale, f"{checked} credential(s) used within {limit:g} days",
        "unused for {:g}+ days: {}".format(limit, ", ".join(f"{k} ({d}d)" for k, d in stale.items())),
        unused=stale,
    )


@rule(
    id="aws_iam_user_single_active_key",
    title="IAM users have at most one active access key",
    severity="low",
    resource_types=("aws.iam.user",),
    rationale="Two active keys are only needed during a rotation; a lasting second key is usually forgotten.",
    remediation="Deactivate and delete the access key that is no longer used.",
    frameworks={"CIS-AWS-3.0": ["1.13"]},
)
def iam_single_active_key(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _attr(record, "access_keys") is None:
        return None
    active = [k["id"] for k in _active_keys(record)]
    return verdict(len(active) <= 1, f"{len(active)} active key(s)", f"{len(active)} active keys", active=active)


# ---- KMS ---------------------------------------------------------------------------------------------------


@rule(
    id="aws_kms_key_rotation",
    title="Customer-managed KMS keys have automatic rotation enabled",
    severity="medium",
    resource_types=("aws.kms.key",),
    rationale="Rotation limits how much data one key version protects and how long a leaked key is useful.",
    remediation="`aws kms enable-key-rotation --key-id <key id>` (symmetric keys with AWS-made material).",
    frameworks={"CIS-AWS-3.0": ["3.6"], "AWS-FSBP": ["KMS.4"]},
)
def kms_rotation(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    # AWS-managed keys rotate themselves. The alias/aws/ prefix is reserved for them: a key behind it is
    # AWS-managed whatever KeyManager says (moto reports its alias/aws/ebs key as CUSTOMER).
    if _attr(record, "key_manager") != "CUSTOMER" or record.name.startswith("alias/aws/"):
        return None
    return _bool_rule(record, "rotation_enabled", "rotation enabled", "automatic rotation is off")


# ---- EC2 ---------------------------------------------------------------------------------------------------


def _world_port_rule(record: ResourceRecord, port: int, label: str) -> Verdict | None:
    ports = _attr(record, "open_to_world_ports")
    if ports is None:
        return None
    exposed = port in ports or -1 in ports
    return verdict(
        not exposed, f"{label} not open to the internet",
        f"{label} (port {port}) open to 0.0.0.0/0 or ::/0" + (" (all ports open)" if -1 in ports else ""),
        open_to_world_ports=list(ports),
    )


@rule(
    id="aws_ec2_security_group_ssh_open",
    title="No security group allows SSH (22) from the internet",
    severity="high",
    resource_types=("aws.ec2.security_group",),
    rationale="SSH open to the world invites brute force and exploits; reach hosts through SSM or a bastion.",
    remediation="Remove the ingress rule for port 22 from 0.0.0.0/0 and ::/0; allow known ranges only.",
    frameworks={"CIS-AWS-3.0": ["5.2"], "AWS-FSBP": ["EC2.13"]},
)
def sg_ssh_open(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _world_port_rule(record, 22, "SSH")


@rule(
    id="aws_ec2_security_group_rdp_open",
    title="No security group allows RDP (3389) from the internet",
    severity="high",
    resource_types=("aws.ec2.security_group",),
    rationale="RDP open to the world is a leading ransomware entry point.",
    remediation="Remove the ingress rule for port 3389 from 0.0.0.0/0 and ::/0; use a VPN or Fleet Manager.",
    frameworks={"CIS-AWS-3.0": ["5.2"], "AWS-FSBP": ["EC2.14"]},
)
def sg_rdp_open(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _world_port_rule(record, 3389, "RDP")


@rule(
    id="aws_ec2_security_group_all_ports_open",
    title="No security group allows all ports from the internet",
    severity="critical",
    resource_types=("aws.ec2.security_group",),
    rationale="All protocols / all ports from anywhere exposes every service on every attached host.",
    remediation="Replace the all-traffic ingress rule with the specific ports and source ranges needed.",
    frameworks={"CIS-AWS-3.0": ["5.2"], "AWS-FSBP": ["EC2.18"]},
)
def sg_all_ports_open(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    ports = _attr(record, "open_to_world_ports")
    if ports is None:
        return None
    return verdict(
        -1 not in ports, "no all-ports rule from the internet", "all ports open to the internet",
        open_to_world_ports=list(ports),
    )


@rule(
    id="aws_ec2_ebs_default_encryption",
    title="EBS encryption by default is enabled in every region",
    severity="medium",
    resource_types=("aws.ec2.region_settings",),
    rationale="With default encryption on, no new volume or snapshot copy can be created unencrypted.",
    remediation="`aws ec2 enable-ebs-encryption-by-default --region <region>` in every region used.",
    frameworks={"CIS-AWS-3.0": ["2.2.1"], "AWS-FSBP": ["EC2.7"], **_AT_REST},
)
def ebs_default_encryption(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(
        record, "ebs_default_encryption", "EBS encryption by default is on",
        f"EBS encryption by default is off in {record.region}",
    )


@rule(
    id="aws_ec2_volume_encrypted",
    title="EBS volumes are encrypted",
    severity="high",
    resource_types=("aws.ec2.volume",),
    rationale="Unencrypted volumes and their snapshots expose data to anyone who can copy them.",
    remediation=(
        "Snapshot the volume, copy the snapshot with --encrypted, create a volume from it and swap it in; "
        "turn on EBS encryption by default so it does not happen again."
    ),
    frameworks={"AWS-FSBP": ["EC2.3"], **_AT_REST},
)
def ebs_volume_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "encrypted", "volume encrypted", "volume is not encrypted")


@rule(
    id="aws_ec2_volume_unattached",
    title="EBS volumes are attached to an instance",
    severity="low",
    resource_types=("aws.ec2.volume",),
    rationale="Detached volumes cost money every month and often hold forgotten copies of data.",
    remediation="Snapshot the volume if its data is needed, then delete it.",
    frameworks={"Internal": ["COST-1"]},
)
def ebs_volume_unattached(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "attached", "attached", f"not attached ({_attr(record, 'size_gb')} GiB billed)")


@rule(
    id="aws_ec2_snapshot_age",
    title="EBS snapshots are younger than 90 days",
    severity="low",
    resource_types=("aws.ec2.snapshot",),
    rationale="Old snapshots outlive their retention policy, cost money and keep data that should be gone.",
    remediation="Delete snapshots past retention, or manage them with a lifecycle policy / the backup runbook.",
    frameworks={"Internal": ["COST-2"], "GDPR": ["Art.5(1)(e)"]},
    params={"max_age_days": 90},
)
def ebs_snapshot_age(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    age = ctx.age_days(_attr(record, "created_at"))
    if age is None:
        return None
    limit = float(ctx.params["max_age_days"])
    return verdict(
        age <= limit, f"{age:.0f} days old", f"{age:.0f} days old (limit {limit:g})",
        age_days=round(age, 1), max_age_days=limit,
    )


@rule(
    id="aws_ec2_snapshot_encrypted",
    title="EBS snapshots are encrypted",
    severity="medium",
    resource_types=("aws.ec2.snapshot",),
    rationale="A snapshot is a full copy of a disk; unencrypted, it can be shared or copied out in the clear.",
    remediation="Copy the snapshot with `aws ec2 copy-snapshot --encrypted --kms-key-id <key>`, delete the original.",
    frameworks=_AT_REST,
)
def ebs_snapshot_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "encrypted", "snapshot encrypted", "snapshot is not encrypted")


@rule(
    id="aws_ec2_instance_imdsv2",
    title="EC2 instances require IMDSv2",
    severity="medium",
    resource_types=("aws.ec2.instance",),
    rationale="IMDSv1 answers simple GETs, so an SSRF bug can steal the instance role's credentials.",
    remediation="`aws ec2 modify-instance-metadata-options --instance-id <id> --http-tokens required`.",
    frameworks={"CIS-AWS-3.0": ["5.6"], "AWS-FSBP": ["EC2.8"]},
)
def ec2_imdsv2(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _attr(record, "state") == "terminated":
        return None
    return _bool_rule(record, "imdsv2_required", "IMDSv2 required", "IMDSv1 still allowed (http tokens optional)")


# ---- RDS ---------------------------------------------------------------------------------------------------


def _aurora(record: ResourceRecord) -> bool:
    return str(_attr(record, "engine") or "").startswith("aurora")


@rule(
    id="aws_rds_instance_encrypted",
    title="RDS instances are encrypted at rest",
    severity="high",
    resource_types=("aws.rds.instance",),
    rationale="Encryption at rest covers the storage, automated backups, replicas and snapshots.",
    remediation="Snapshot, copy the snapshot with a KMS key, restore from the encrypted copy, switch over.",
    frameworks={"CIS-AWS-3.0": ["2.3.1"], "AWS-FSBP": ["RDS.3"], **_AT_REST},
)
def rds_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "encrypted", "storage encrypted", "storage is not encrypted")


@rule(
    id="aws_rds_instance_not_public",
    title="RDS instances are not publicly accessible",
    severity="critical",
    resource_types=("aws.rds.instance",),
    rationale="A publicly accessible database endpoint is one leaked password away from a breach.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --no-publicly-accessible --apply-immediately`.",
    frameworks={"CIS-AWS-3.0": ["2.3.3"], "AWS-FSBP": ["RDS.2"], "GDPR": ["Art.32"]},
)
def rds_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    public = _attr(record, "public")
    if public is None:
        return None
    return verdict(public is False, "not publicly accessible", "publicly accessible endpoint")


@rule(
    id="aws_rds_instance_backup_retention",
    title="RDS instances keep automated backups for at least 7 days",
    severity="medium",
    resource_types=("aws.rds.instance",),
    rationale="Automated backups give point-in-time restore; less than a week misses slow-burning mistakes.",
    remediation=(
        "`aws rds modify-db-instance --db-instance-identifier <id> --backup-retention-period 7 "
        "--apply-immediately`, or run remediate_findings with fixer aws.rds.backup_retention."
    ),
    frameworks={"AWS-FSBP": ["RDS.11"], **_BACKUP},
    fixer="aws.rds.backup_retention",
    params={"min_days": 7},
)
def rds_backup_retention(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    days = _attr(record, "retention_days")
    # Read replicas take no backups of their own; Aurora keeps retention on the cluster, not the instance.
    if days is None or _attr(record, "replica_source") or _aurora(record):
        return None
    wanted = int(ctx.params["min_days"])
    return verdict(
        int(days) >= wanted, f"{days} days of backups", f"backup retention {days} days < {wanted}",
        retention_days=days, required=wanted,
    )


@rule(
    id="aws_rds_instance_multi_az",
    title="RDS instances are deployed Multi-AZ",
    severity="medium",
    resource_types=("aws.rds.instance",),
    rationale="A single-AZ database goes down with its zone and during maintenance.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --multi-az --apply-immediately`.",
    frameworks={"AWS-FSBP": ["RDS.5"]},
)
def rds_multi_az(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _aurora(record):
        return None  # Aurora spreads storage over three zones; availability is a cluster matter
    return _bool_rule(record, "multi_az", "Multi-AZ", "single-AZ deployment")


@rule(
    id="aws_rds_instance_deletion_protection",
    title="RDS instances have deletion protection",
    severity="low",
    resource_types=("aws.rds.instance",),
    rationale="Deletion protection stops one wrong API call or script from dropping a production database.",
    remediation="`aws rds modify-db-instance --db-instance-identifier <id> --deletion-protection`.",
    frameworks={"AWS-FSBP": ["RDS.8"]},
)
def rds_deletion_protection(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    if _aurora(record):
        return None
    return _bool_rule(record, "deletion_protection", "deletion protection on", "deletion protection is off")


# ---- DynamoDB ----------------------------------------------------------------------------------------------


@rule(
    id="aws_dynamodb_table_pitr",
    title="DynamoDB tables have point-in-time recovery",
    severity="medium",
    resource_types=("aws.dynamodb.table",),
    rationale="PITR restores a table to any second of the last 35 days after a bad write or delete.",
    remediation=(
        "`aws dynamodb update-continuous-backups --table-name <name> "
        "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true`."
    ),
    frameworks={"AWS-FSBP": ["DynamoDB.2"], **_BACKUP},
)
def dynamodb_pitr(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "pitr", "point-in-time recovery on", "point-in-time recovery is off")


# ---- CloudTrail --------------------------------------------------------------------------------------------


@rule(
    id="aws_cloudtrail_account_multi_region_trail",
    title="The account has a logging multi-region CloudTrail trail",
    severity="high",
    resource_types=("aws.iam.account",),
    rationale="Without a multi-region trail, API activity in unused regions (a favourite of attackers) is unseen.",
    remediation=(
        "`aws cloudtrail create-trail --name <name> --s3-bucket-name <bucket> --is-multi-region-trail "
        "--enable-log-file-validation --kms-key-id <key>` then `aws cloudtrail start-logging --name <name>`."
    ),
    frameworks={"CIS-AWS-3.0": ["3.1"], "AWS-FSBP": ["CloudTrail.1"], "HIPAA": ["164.312(b)"]},
)
def cloudtrail_account_trail(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    trails = ctx.facts["aws.cloudtrail.trails_by_target"].get(record.target, [])
    good = [t["name"] for t in trails if t["multi_region"] and t["logging"]]
    return verdict(
        bool(good), "multi-region trail logging: " + ", ".join(good),
        f"no logging multi-region trail among {len(trails)} trail(s) (in the target's regions)",
        trails=[t["name"] for t in trails],
    )


@rule(
    id="aws_cloudtrail_multi_region",
    title="CloudTrail trails cover all regions",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="A single-region trail misses activity everywhere else.",
    remediation="`aws cloudtrail update-trail --name <name> --is-multi-region-trail`.",
    frameworks={"CIS-AWS-3.0": ["3.1"], "AWS-FSBP": ["CloudTrail.1"]},
)
def cloudtrail_multi_region(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "multi_region", "multi-region trail", "trail covers one region only")


@rule(
    id="aws_cloudtrail_logging_enabled",
    title="CloudTrail trails are logging",
    severity="high",
    resource_types=("aws.cloudtrail.trail",),
    rationale="A stopped trail records nothing; stopping it is a classic step before an attack.",
    remediation="`aws cloudtrail start-logging --name <name>`; alert on StopLogging events.",
    frameworks={"CIS-AWS-3.0": ["3.1"], "HIPAA": ["164.312(b)"]},
)
def cloudtrail_logging(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "logging", "trail is logging", "trail is not logging")


@rule(
    id="aws_cloudtrail_log_file_validation",
    title="CloudTrail log file validation is enabled",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="Digest files prove that delivered logs were not altered or deleted afterwards.",
    remediation="`aws cloudtrail update-trail --name <name> --enable-log-file-validation`.",
    frameworks={"CIS-AWS-3.0": ["3.2"], "AWS-FSBP": ["CloudTrail.4"]},
)
def cloudtrail_validation(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "log_file_validation", "log file validation on", "log file validation is off")


@rule(
    id="aws_cloudtrail_kms_encryption",
    title="CloudTrail logs are encrypted with a KMS key",
    severity="medium",
    resource_types=("aws.cloudtrail.trail",),
    rationale="SSE-KMS adds a key policy between readers of the log bucket and the audit trail.",
    remediation="`aws cloudtrail update-trail --name <name> --kms-key-id <key arn>` (key policy must allow CloudTrail).",
    frameworks={"CIS-AWS-3.0": ["3.5"], "AWS-FSBP": ["CloudTrail.2"], "HIPAA": ["164.312(a)(2)(iv)"]},
)
def cloudtrail_kms(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return _bool_rule(record, "encrypted", "logs encrypted with KMS", "logs are not encrypted with a KMS key")
