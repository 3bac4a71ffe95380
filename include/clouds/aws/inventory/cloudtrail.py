"""CloudTrail trails, recorded once in their home region."""

from __future__ import annotations

from include.clouds.aws.clients import client_for
from include.clouds.aws.inventory.common import paginate, tags
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = ("cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:ListTags")


@lister("aws", "cloudtrail", ["aws.cloudtrail.trail"], permissions=PERMISSIONS)
def list_cloudtrail(ctx: ListContext) -> list[ResourceRecord]:
    """Trails whose home region is this region (multi-region trails are recorded once, at home)."""
    client = client_for(ctx.target, "cloudtrail", ctx.region)
    # DescribeTrails has no paginator; without shadow trails it returns only trails created here.
    trails = client.describe_trails(includeShadowTrails=False).get("trailList", [])
    records = []
    for trail in trails:
        arn = trail["TrailARN"]
        status = client.get_trail_status(Name=arn)
        tag_lists = list(paginate(client, "list_tags", "ResourceTagList", ResourceIdList=[arn]))
        region = trail.get("HomeRegion") or ctx.region
        records.append(
            ctx.record(
                resource_type="aws.cloudtrail.trail",
                resource_id=arn,  # as CloudTrail reports it
                name=trail["Name"],
                region=region,
                tags=tags(tag_lists[0].get("TagsList") if tag_lists else None),
                attributes={
                    "multi_region": bool(trail.get("IsMultiRegionTrail", False)),
                    "log_file_validation": bool(trail.get("LogFileValidationEnabled", False)),
                    "logging": bool(status.get("IsLogging", False)),
                    "s3_bucket": trail.get("S3BucketName"),
                    "kms_key": trail.get("KmsKeyId"),
                    "encrypted": bool(trail.get("KmsKeyId")),
                    "home_region": region,
                },
            )
        )
    return records
