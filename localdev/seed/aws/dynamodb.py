"""DynamoDB tables (point-in-time recovery, a few items)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from include.clouds.errors import error_code
from localdev.seed import SeedReport
from localdev.seed.aws.common import Clients, tag_list


def seed_dynamodb(clients: Clients, tables: list[dict[str, Any]], report: SeedReport) -> None:
    """Tables known by name, created on demand billing, with PITR and items as the entry asks."""
    for table in tables:
        ddb = clients("dynamodb", table["region"])
        name = table["name"]
        try:
            ddb.describe_table(TableName=name)
            report.add(False, "aws.dynamodb.table", name)
            continue
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
            Tags=tag_list(table),
        )
        ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if table.get("pitr"):
            ddb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        items = [
            {"PutRequest": {"Item": {"pk": {"S": f"{name}-{i:03d}"}, "payload": {"S": f"seeded item {i}"}}}}
            for i in range(int(table.get("items", 0)))
        ]
        for start in range(0, len(items), 25):  # BatchWriteItem takes at most 25 items
            ddb.batch_write_item(RequestItems={name: items[start : start + 25]})
        report.add(True, "aws.dynamodb.table", name)
