"""KMS keys of a region: state, manager, rotation, aliases."""

from __future__ import annotations

from typing import Any

from include.clouds.aws.clients import client_for
from include.clouds.aws.inventory.common import paginate, tags
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = (
    "kms:ListKeys",
    "kms:ListAliases",
    "kms:DescribeKey",
    "kms:GetKeyRotationStatus",
    "kms:ListResourceTags",
)


@lister("aws", "kms", ["aws.kms.key"], permissions=PERMISSIONS)
def list_kms(ctx: ListContext) -> list[ResourceRecord]:
    """Every key of the region, AWS-managed ones included (``key_manager`` tells them apart)."""
    client = client_for(ctx.target, "kms", ctx.region)
    aliases: dict[str, list[str]] = {}
    for alias in paginate(client, "list_aliases", "Aliases"):
        if alias.get("TargetKeyId"):
            aliases.setdefault(alias["TargetKeyId"], []).append(alias["AliasName"])
    records = []
    for key in paginate(client, "list_keys", "Keys"):
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
        key_tags: dict[str, str] = {}
        if manager == "CUSTOMER":
            key_tags = tags(paginate(client, "list_resource_tags", "Tags", KeyId=key_id))
        records.append(
            ctx.record(
                resource_type="aws.kms.key",
                resource_id=meta["Arn"],  # as KMS reports it
                name=key_aliases[0] if key_aliases else key_id,
                tags=key_tags,
                attributes=attributes,
            )
        )
    return records
