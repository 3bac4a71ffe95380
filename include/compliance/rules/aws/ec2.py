"""AWS EC2 rules: security groups open to the internet, EBS encryption and hygiene, instance metadata."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.compliance.rules.aws._helpers import AT_REST, attr, bool_rule
from include.records import ResourceRecord


def _world_port_rule(record: ResourceRecord, port: int, label: str) -> Verdict | None:
    ports = attr(record, "open_to_world_ports")
    if ports is None:
        return None
    exposed = port in ports or -1 in ports
    return verdict(
        not exposed, f"{label} not open to the internet",
        f"{label} (port {port}) open to 0.0.0.0/0 or ::/0" + (" (all ports open)" if -1 in ports else ""),
        open_to_world_ports=list(ports),
    )


# The three security-group rules read open_to_world_ports (0.0.0.0/0 and ::/0): CIS AWS 3.0 5.2 is the
# IPv4 half and 5.3 the IPv6 half. FSBP's EC2.19 (high-risk ports) lists 22 and 3389; EC2.13 / EC2.14
# are Security Hub controls of its CIS standard, not of FSBP.
@rule(
    id="aws_ec2_security_group_ssh_open",
    title="No security group allows SSH (22) from the internet",
    severity="high",
    resource_types=("aws.ec2.security_group",),
    rationale="SSH open to the world invites brute force and exploits; reach hosts through SSM or a bastion.",
    remediation="Remove the ingress rule for port 22 from 0.0.0.0/0 and ::/0; allow known ranges only.",
    frameworks={"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.19"], "AWS-SecurityHub": ["EC2.13"]},
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
    frameworks={"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.19"], "AWS-SecurityHub": ["EC2.14"]},
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
    frameworks={"CIS-AWS-3.0": ["5.2", "5.3"], "AWS-FSBP": ["EC2.18", "EC2.19"]},
)
def sg_all_ports_open(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    ports = attr(record, "open_to_world_ports")
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
    frameworks={"CIS-AWS-3.0": ["2.2.1"], "AWS-FSBP": ["EC2.7"], **AT_REST},
)
def ebs_default_encryption(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(
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
    frameworks={"AWS-FSBP": ["EC2.3"], **AT_REST},
)
def ebs_volume_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "encrypted", "volume encrypted", "volume is not encrypted")


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
    return bool_rule(record, "attached", "attached", f"not attached ({attr(record, 'size_gb')} GiB billed)")


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
    age = ctx.age_days(attr(record, "created_at"))
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
    frameworks=AT_REST,
)
def ebs_snapshot_encrypted(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "encrypted", "snapshot encrypted", "snapshot is not encrypted")


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
    if attr(record, "state") == "terminated":
        return None
    return bool_rule(record, "imdsv2_required", "IMDSv2 required", "IMDSv1 still allowed (http tokens optional)")
