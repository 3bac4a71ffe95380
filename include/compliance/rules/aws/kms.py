"""AWS KMS rules: customer-managed key rotation."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule
from include.compliance.rules.aws._helpers import attr, bool_rule
from include.records import ResourceRecord


@rule(
    id="aws_kms_key_rotation",
    title="Customer-managed KMS keys have automatic rotation enabled",
    severity="medium",
    resource_types=("aws.kms.key",),
    rationale="Rotation limits how much data one key version protects and how long a leaked key is useful.",
    remediation="`aws kms enable-key-rotation --key-id <key id>` (symmetric keys with AWS-made material).",
    # KMS.4 is a Security Hub control of its CIS / PCI DSS / NIST standards, not of FSBP.
    frameworks={"CIS-AWS-3.0": ["3.6"], "AWS-SecurityHub": ["KMS.4"]},
)
def kms_rotation(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    # AWS-managed keys rotate themselves. The alias/aws/ prefix is reserved for them: a key behind it is
    # AWS-managed whatever KeyManager says (moto reports its alias/aws/ebs key as CUSTOMER).
    if attr(record, "key_manager") != "CUSTOMER" or record.name.startswith("alias/aws/"):
        return None
    return bool_rule(record, "rotation_enabled", "rotation enabled", "automatic rotation is off")
