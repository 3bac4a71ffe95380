"""DynamoDB tables with point-in-time recovery status."""

from __future__ import annotations

from include.clouds.aws.clients import client_for
from include.clouds.aws.inventory.common import paginate, tags
from include.inventory.registry import ListContext, lister
from include.records import ResourceRecord

PERMISSIONS = (
    "dynamodb:ListTables",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:ListTagsOfResource",
)


@lister("aws", "dynamodb", ["aws.dynamodb.table"], permissions=PERMISSIONS)
def list_dynamodb(ctx: ListContext) -> list[ResourceRecord]:
    """Tables with point-in-time recovery status."""
    client = client_for(ctx.target, "dynamodb", ctx.region)
    records = []
    for table_name in paginate(client, "list_tables", "TableNames"):
        table = client.describe_table(TableName=table_name)["Table"]
        backups = client.describe_continuous_backups(TableName=table_name)["ContinuousBackupsDescription"]
        pitr = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
        arn = table["TableArn"]
        records.append(
            ctx.record(
                resource_type="aws.dynamodb.table",
                resource_id=arn,  # as DynamoDB reports it
                name=table_name,
                tags=tags(paginate(client, "list_tags_of_resource", "Tags", ResourceArn=arn)),
                attributes={
                    "state": table.get("TableStatus"),
                    # DynamoDB always encrypts at rest; SSEDescription appears only for KMS keys.
                    "encrypted": True,
                    "kms_key": (table.get("SSEDescription") or {}).get("KMSMasterKeyArn"),
                    "pitr": pitr == "ENABLED",
                    "size_bytes": table.get("TableSizeBytes"),
                    "item_count": table.get("ItemCount"),
                    "created_at": table.get("CreationDateTime"),
                },
            )
        )
    return records
