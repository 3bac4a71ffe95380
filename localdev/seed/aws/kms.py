"""KMS keys, known by alias (buckets, volumes and RDS refer to them by seed id)."""

from __future__ import annotations

from typing import Any

from localdev.seed import SeedReport
from localdev.seed.aws.common import Clients, by_region, tag_list


def seed_kms(clients: Clients, keys: list[dict[str, Any]], report: SeedReport) -> dict[str, str]:
    """Keys known by alias; returns seed_id -> key ARN."""
    arns: dict[str, str] = {}
    for region, specs in by_region(keys).items():
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
                Tags=tag_list(spec, "TagKey", "TagValue"),
            )["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
            if spec.get("rotation"):
                kms.enable_key_rotation(KeyId=meta["KeyId"])
            arns[spec["seed_id"]] = meta["Arn"]
            report.add(True, "aws.kms.key", alias)
    return arns
