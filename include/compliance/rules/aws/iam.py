"""AWS IAM rules: the root user, the account password policy, users' MFA and access keys."""

from __future__ import annotations

from typing import Any

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.compliance.rules.aws._helpers import attr, bool_rule
from include.records import ResourceRecord


@rule(
    id="aws_iam_root_mfa_enabled",
    title="The root user has MFA enabled",
    severity="critical",
    resource_types=("aws.iam.account",),
    rationale="The root user can do anything, including closing the account; a password alone is not enough.",
    remediation="Sign in as root, Security credentials -> Assign MFA device (hardware MFA preferred).",
    # FSBP has only IAM.6 (hardware MFA for root), a stricter check than this one.
    frameworks={"CIS-AWS-3.0": ["1.5"], "AWS-SecurityHub": ["IAM.9"], "HIPAA": ["164.312(d)"]},
)
def iam_root_mfa(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    return bool_rule(record, "root_mfa_enabled", "root MFA enabled", "root user has no MFA")


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
    present = attr(record, "root_access_keys_present")
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
    # IAM.7 checks the minimum length among other settings (its default minimum is 8, a parameter).
    frameworks={"CIS-AWS-3.0": ["1.8"], "AWS-FSBP": ["IAM.7"], "AWS-SecurityHub": ["IAM.15"]},
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
    # No FSBP control checks password reuse (IAM.7's parameters do not include it).
    frameworks={"CIS-AWS-3.0": ["1.9"], "AWS-SecurityHub": ["IAM.16"]},
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
    if attr(record, "password_enabled") is not True or attr(record, "mfa_enabled") is None:
        return None  # no console password: MFA for the console does not apply
    return verdict(attr(record, "mfa_enabled") is True, "console user has MFA", "console password without MFA")


def _active_keys(record: ResourceRecord) -> list[dict[str, Any]]:
    return [k for k in (attr(record, "access_keys") or []) if k.get("status") == "Active"]


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
    # FSBP IAM.8 checks the same with a 90-day default; IAM.22 (45 days) is in Security Hub's CIS standards.
    frameworks={"CIS-AWS-3.0": ["1.12"], "AWS-FSBP": ["IAM.8"], "AWS-SecurityHub": ["IAM.22"]},
    params={"max_unused_days": 45},
)
def iam_credentials_unused(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    limit = float(ctx.params["max_unused_days"])
    stale: dict[str, int] = {}
    checked = 0
    if attr(record, "password_enabled") is True:
        checked += 1
        # Never used: count from the user's creation (the password's own date is not in the record).
        age = ctx.age_days(attr(record, "password_last_used") or attr(record, "created_at"))
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
    if attr(record, "access_keys") is None:
        return None
    active = [k["id"] for k in _active_keys(record)]
    return verdict(len(active) <= 1, f"{len(active)} active key(s)", f"{len(active)} active keys", active=active)
