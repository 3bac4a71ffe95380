"""DynamoDB tables: key schema (fixed at creation), billing mode and capacity, PITR, deletion protection, tags."""

from __future__ import annotations

from typing import Any

from include.changes.waiting import poll_until
from include.provisioning.aws.common import AwsStep, code_of, is_missing, tag_dict, tag_list
from include.provisioning.base import AlreadyExists, Live
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

#: A table must be ACTIVE before its backups can be configured (seconds to minutes).
ACTIVE_WAIT = 600.0


@provisions(
    "dynamodb",
    read=("dynamodb:DescribeTable", "dynamodb:ListTagsOfResource", "dynamodb:DescribeContinuousBackups"),
    create=("dynamodb:CreateTable", "dynamodb:TagResource", "dynamodb:DescribeTable",
            "dynamodb:UpdateContinuousBackups"),
    update=("dynamodb:UpdateTable", "dynamodb:UpdateContinuousBackups", "dynamodb:TagResource",
            "dynamodb:UntagResource"),
    delete=("dynamodb:DeleteTable",),
    actions={"create": "dynamodb:CreateTable (with tags) + UpdateContinuousBackups",
             "update": "dynamodb:UpdateTable / UpdateContinuousBackups / TagResource|UntagResource",
             "delete": "dynamodb:DeleteTable"},
)
class DynamoDbTable(AwsStep):
    """A DynamoDB table (on-demand by default, point-in-time recovery on by default)."""

    immutable = ("hash_key", "range_key")
    optimistic_create = True  # table names are unique per region (ResourceInUseException)
    verify_wait = 600.0
    verify_interval = 10.0

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        want: dict[str, Any] = {"hash_key": dict(props["hash_key"]), "range_key": props.get("range_key"),
                                "billing_mode": props.get("billing_mode", "PAY_PER_REQUEST"),
                                "pitr": bool(props.get("pitr", True)),
                                "deletion_protection": bool(props.get("deletion_protection", False))}
        if want["billing_mode"] == "PROVISIONED":
            want["capacity"] = {"read": int(props["read_capacity"]), "write": int(props["write_capacity"])}
        return want

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        ddb = self.aws(res, "dynamodb")
        name = str(props["name"])
        try:
            table = ddb.describe_table(TableName=name)["Table"]
        except Exception as exc:
            if is_missing(exc, "ResourceNotFoundException"):
                return None
            raise
        if table.get("TableStatus") == "DELETING":
            return None
        arn = table["TableArn"]
        tags = tag_dict(ddb.list_tags_of_resource(ResourceArn=arn).get("Tags"))
        outputs = {"id": name, "name": name, "arn": arn}
        if tags.get("managed-by") is None:
            return Live(fields={"tags": tags}, outputs=outputs, tags=tags)
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        keys = {k["KeyType"]: {"name": k["AttributeName"], "type": types.get(k["AttributeName"])}
                for k in table.get("KeySchema", [])}
        billing = (table.get("BillingModeSummary") or {}).get("BillingMode") or "PROVISIONED"
        backups = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        pitr = (backups.get("PointInTimeRecoveryDescription") or {}).get("PointInTimeRecoveryStatus") == "ENABLED"
        fields: dict[str, Any] = {"hash_key": keys.get("HASH"), "range_key": keys.get("RANGE"), "billing_mode": billing,
                                  "pitr": pitr, "deletion_protection": bool(table.get("DeletionProtectionEnabled")),
                                  "tags": tags}
        if billing == "PROVISIONED":
            throughput = table.get("ProvisionedThroughput") or {}
            fields["capacity"] = {"read": throughput.get("ReadCapacityUnits"),
                                  "write": throughput.get("WriteCapacityUnits")}
        live = Live(fields=fields, outputs=outputs, tags=tags, ready=table.get("TableStatus") == "ACTIVE")
        if fields["deletion_protection"]:
            live.protected = "deletion protection is on"
        return live

    def _wait_active(self, ddb: Any, name: str) -> None:
        poll_until(lambda: str(ddb.describe_table(TableName=name)["Table"]["TableStatus"]), lambda s: s == "ACTIVE",
                   timeout=ACTIVE_WAIT, interval=2.0, what=f"table {name} to be ACTIVE", clock=self.clock,
                   sleep=self.sleep)

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        ddb = self.aws(res, "dynamodb")
        name = str(props["name"])
        keys = [("HASH", want["hash_key"])] + ([("RANGE", want["range_key"])] if want.get("range_key") else [])
        request: dict[str, Any] = {
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": k["name"], "AttributeType": k["type"]} for _, k in keys],
            "KeySchema": [{"AttributeName": k["name"], "KeyType": kind} for kind, k in keys],
            "BillingMode": want["billing_mode"], "Tags": tag_list(want["tags"]),
            "DeletionProtectionEnabled": want["deletion_protection"],
        }
        if want["billing_mode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = {"ReadCapacityUnits": want["capacity"]["read"],
                                                "WriteCapacityUnits": want["capacity"]["write"]}
        try:
            arn = ddb.create_table(**request)["TableDescription"]["TableArn"]
        except Exception as exc:
            if code_of(exc) == "ResourceInUseException":
                raise AlreadyExists(f"table {name} exists") from exc
            raise
        if want["pitr"]:
            self._wait_active(ddb, name)
            ddb.update_continuous_backups(TableName=name,
                                          PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        return {"id": name, "name": name, "arn": arn}

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        ddb = self.aws(res, "dynamodb")
        name = str(props["name"])
        table: dict[str, Any] = {}
        if "billing_mode" in changed or "capacity" in changed:
            table["BillingMode"] = want["billing_mode"]
            if want["billing_mode"] == "PROVISIONED":
                table["ProvisionedThroughput"] = {"ReadCapacityUnits": want["capacity"]["read"],
                                                  "WriteCapacityUnits": want["capacity"]["write"]}
        if "deletion_protection" in changed:
            table["DeletionProtectionEnabled"] = want["deletion_protection"]
        if table:
            ddb.update_table(TableName=name, **table)
        if "pitr" in changed:
            ddb.update_continuous_backups(TableName=name,
                                          PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": want["pitr"]})
        if "tags" in changed:
            to_set, to_remove = self.tag_changes(live.fields["tags"], want["tags"])
            arn = live.outputs["arn"]
            if to_set:
                ddb.tag_resource(ResourceArn=arn, Tags=tag_list(to_set))
            if to_remove:
                ddb.untag_resource(ResourceArn=arn, TagKeys=to_remove)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        self.aws(res, "dynamodb").delete_table(TableName=str(props["name"]))
