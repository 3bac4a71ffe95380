"""CloudTrail trails (their bucket must exist: seeded after S3)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from include.clouds.errors import error_code
from localdev.seed import SeedReport
from localdev.seed.aws.common import Clients, tag_list


def seed_cloudtrail(clients: Clients, trails: list[dict[str, Any]], report: SeedReport) -> None:
    """Trails known by name, logging unless the entry says ``logging: false``."""
    for trail in trails:
        ct = clients("cloudtrail", trail["region"])
        try:
            ct.get_trail(Name=trail["name"])
            report.add(False, "aws.cloudtrail.trail", trail["name"])
            continue
        except ClientError as exc:
            if error_code(exc) != "TrailNotFoundException":
                raise
        ct.create_trail(
            Name=trail["name"],
            S3BucketName=trail["bucket"],
            IsMultiRegionTrail=bool(trail.get("multi_region", False)),
            EnableLogFileValidation=bool(trail.get("log_file_validation", False)),
            TagsList=tag_list(trail),
        )
        if trail.get("logging", True):
            ct.start_logging(Name=trail["name"])
        report.add(True, "aws.cloudtrail.trail", trail["name"])
