"""IAM: users (console password, MFA, access keys) and the account's root and password-policy settings."""

from __future__ import annotations

from functools import partial

from include.clouds.aws.clients import client_for
from include.clouds.aws.ids import iam_root_arn
from include.clouds.aws.inventory.common import home, paginate, tags, unless
from include.inventory.registry import GLOBAL, ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = (
    "iam:ListUsers",
    "iam:ListUserTags",
    "iam:GetLoginProfile",
    "iam:ListMFADevices",
    "iam:ListAccessKeys",
    "iam:GetAccessKeyLastUsed",
    "iam:GetAccountSummary",
    "iam:GetAccountPasswordPolicy",
)


@lister("aws", "iam", ["aws.iam.user", "aws.iam.account"], regional=False, permissions=PERMISSIONS)
def list_iam(ctx: ListContext) -> list[ResourceRecord]:
    """Users (console password, MFA, access keys with last use) and the account's root/password settings.

    Per-user calls suit a small account; a large one would read the credential report instead.
    """
    client = client_for(ctx.target, "iam", home(ctx))
    records = []
    for user in paginate(client, "list_users", "Users"):
        name = user["UserName"]
        password = unless({"NoSuchEntity"}, partial(client.get_login_profile, UserName=name), None)
        mfa = list(paginate(client, "list_mfa_devices", "MFADevices", UserName=name))
        keys = []
        for key in paginate(client, "list_access_keys", "AccessKeyMetadata", UserName=name):
            used = client.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get("AccessKeyLastUsed", {})
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
                resource_type="aws.iam.user",
                resource_id=user["Arn"],  # as IAM reports it (paths included)
                name=name,
                region=GLOBAL,
                tags=tags(paginate(client, "list_user_tags", "Tags", UserName=name)),
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
    policy = unless({"NoSuchEntity"}, lambda: client.get_account_password_policy().get("PasswordPolicy"), None)
    account = ctx.target.account
    records.append(
        ctx.record(
            resource_type="aws.iam.account",
            resource_id=iam_root_arn(account, home(ctx)),
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
