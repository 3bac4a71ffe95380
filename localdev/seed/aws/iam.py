"""IAM users (console password, access key, virtual MFA) and the account password policy."""

from __future__ import annotations

import secrets
from typing import Any

from botocore.exceptions import ClientError

from include.clouds.errors import error_code
from localdev.seed import SeedReport
from localdev.seed.aws.common import Clients, tag_list


def seed_iam(clients: Clients, spec: dict[str, Any], report: SeedReport) -> None:
    """Users known by name; the password policy is set only when the account has none."""
    iam = clients("iam", clients.target.regions[0])
    for user in spec.get("users", []):
        name = user["name"]
        try:
            iam.get_user(UserName=name)
            report.add(False, "aws.iam.user", name)
            continue
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
        iam.create_user(UserName=name, Tags=tag_list(user))
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
            if error_code(exc) != "NoSuchEntity":
                raise
            iam.update_account_password_policy(**spec["password_policy"])
            report.add(True, "aws.iam.password_policy", "account")
