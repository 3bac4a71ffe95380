"""Cleanup steps of the cost_hygiene runbook: change-engine steps on inventory records.

==================================  ======================  ==================================================
step                                resource type           what it does
==================================  ======================  ==================================================
``cost.aws.ec2.volume.delete``      ``aws.ec2.volume``      snapshot it (unless ``snapshot_before_delete`` is
                                                            false), then delete it
``cost.aws.ec2.snapshot.delete``    ``aws.ec2.snapshot``    delete it
``cost.aws.ec2.instance.terminate`` ``aws.ec2.instance``    terminate it (its volumes go with it)
``cost.aws.s3.lifecycle``           ``aws.s3.bucket``       add the hygiene rule: abort incomplete uploads after
                                                            7 days, expire old versions after N days
``cost.gcp.gcs.lifecycle``          ``gcp.storage.bucket``  the same rule on Cloud Storage
``tags.required`` (remediation)     taggable types          add the missing cost-allocation tags, never
                                                            overwriting a value
==================================  ======================  ==================================================

Each step re-reads the resource first and refuses when the inventory is out of date in a way that
matters: a volume attached since, an instance running again, a lifecycle rule added meanwhile (nothing to
do). A resource that an environment spec manages (``managed-by: cloud-runbooks``) is never cleaned up here:
its spec owns it (change the spec, or tear the environment down).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from include.changes.engine import Item, StepCache
from include.changes.model import ChangeError
from include.changes.step import LifecycleStep, Step, UpdateStep
from include.clouds.aws import ids
from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code
from include.provisioning.ownership import ENVIRONMENT_KEY, MANAGED_BY, MANAGED_BY_KEY
from include.records import ResourceRecord

HYGIENE_RULE_ID = "rb-cost-hygiene"
_STEPS: dict[str, type[Step[Any]]] = {}


def cleanup_step(cls: type[Step[Any]]) -> type[Step[Any]]:
    """Register a cleanup step (it declares id, cloud, resource types, permissions and action)."""
    if not cls.permissions:
        raise ValueError(f"{cls.__name__}: every step declares the permissions it needs")
    _STEPS[cls.id] = cls
    return cls


def _refuse_managed(record_id: str, tags: Mapping[str, str]) -> None:
    canon = {str(k).replace("_", "-").lower(): v for k, v in tags.items()}
    if canon.get(MANAGED_BY_KEY) == MANAGED_BY:
        raise ChangeError(f"{record_id} is managed by environment {canon.get(ENVIRONMENT_KEY)} (managed-by tag): "
                          "change its spec or tear the environment down instead")


class _Ec2(LifecycleStep):
    cloud = "aws"

    def ec2(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id
        return self.client(("ec2", conn_id, record.region), lambda: client_for(conn_id, "ec2", record.region))


def _tags(tag_list: Any) -> dict[str, str]:
    return {str(t["Key"]): str(t.get("Value") or "") for t in tag_list or []}


@cleanup_step
class DeleteVolume(_Ec2):
    """Snapshot an unattached volume (its data stays recoverable), then delete it."""

    id = "cost.aws.ec2.volume.delete"
    resource_types = ("aws.ec2.volume",)
    permissions = ("ec2:DescribeVolumes", "ec2:CreateSnapshot", "ec2:CreateTags", "ec2:DeleteVolume")
    action = "ec2:CreateSnapshot (unless snapshot_before_delete is false) + ec2:DeleteVolume"
    destructive = True

    def read(self, record: ResourceRecord) -> dict[str, Any] | None:
        try:
            found = self.ec2(record).describe_volumes(VolumeIds=[ids.ec2_resource_id(record.resource_id)])["Volumes"]
        except Exception as exc:
            if error_code(exc) == "InvalidVolume.NotFound":
                return None
            raise
        if not found:
            return None
        volume = found[0]
        attached = [a["InstanceId"] for a in volume.get("Attachments", []) if a.get("State") in ("attached", "attaching")]
        return {"state": volume.get("State"), "attached_to": attached, "size_gb": volume.get("Size"),
                "tags": _tags(volume.get("Tags"))}

    def desired(self, state: dict[str, Any] | None, record: ResourceRecord) -> dict[str, Any] | None:
        if state is not None:
            _refuse_managed(record.resource_id, state["tags"])
            if state["attached_to"]:
                raise ChangeError(f"{record.name} is attached to {', '.join(state['attached_to'])} now (the "
                                  "inventory is older): not deleted")
        return None

    def request_for(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        return {"VolumeId": ids.ec2_resource_id(record.resource_id),
                "snapshot_first": self.options.get("snapshot_before_delete", True) is not False}

    def write(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        ec2 = self.ec2(record)
        volume_id = ids.ec2_resource_id(record.resource_id)
        request = self.request_for(record, state, desired)
        if request["snapshot_first"]:
            tags = {**state["tags"], "created-by": "cost_hygiene", "source-volume": volume_id}
            snapshot = ec2.create_snapshot(
                VolumeId=volume_id, Description=f"cost_hygiene: {record.name} before deletion",
                TagSpecifications=[{"ResourceType": "snapshot",
                                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()
                                             if not k.lower().startswith("aws:")]}])
            request["snapshot_id"] = snapshot["SnapshotId"]
        ec2.delete_volume(VolumeId=volume_id)
        return request


@cleanup_step
class DeleteSnapshot(_Ec2):
    """Delete a snapshot past its retention."""

    id = "cost.aws.ec2.snapshot.delete"
    resource_types = ("aws.ec2.snapshot",)
    permissions = ("ec2:DescribeSnapshots", "ec2:DeleteSnapshot")
    action = "ec2:DeleteSnapshot"
    destructive = True

    def read(self, record: ResourceRecord) -> dict[str, Any] | None:
        try:
            found = self.ec2(record).describe_snapshots(
                SnapshotIds=[ids.ec2_resource_id(record.resource_id)])["Snapshots"]
        except Exception as exc:
            if error_code(exc) == "InvalidSnapshot.NotFound":
                return None
            raise
        return {"state": found[0].get("State"), "tags": _tags(found[0].get("Tags"))} if found else None

    def desired(self, state: dict[str, Any] | None, record: ResourceRecord) -> dict[str, Any] | None:
        if state is not None:
            _refuse_managed(record.resource_id, state["tags"])
        return None

    def request_for(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        return {"SnapshotId": ids.ec2_resource_id(record.resource_id)}

    def write(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.ec2(record).delete_snapshot(**request)
        return request


@cleanup_step
class TerminateInstance(_Ec2):
    """Terminate an instance stopped for longer than allowed (refused when it runs again, or is protected)."""

    id = "cost.aws.ec2.instance.terminate"
    resource_types = ("aws.ec2.instance",)
    permissions = ("ec2:DescribeInstances", "ec2:DescribeInstanceAttribute", "ec2:TerminateInstances")
    action = "ec2:TerminateInstances"
    destructive = True
    verify_wait = 600.0
    verify_interval = 10.0

    def read(self, record: ResourceRecord) -> dict[str, Any] | None:
        ec2 = self.ec2(record)
        instance_id = ids.ec2_resource_id(record.resource_id)
        try:
            found = [i for r in ec2.describe_instances(InstanceIds=[instance_id])["Reservations"] for i in r["Instances"]]
        except Exception as exc:
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return None
            raise
        if not found or found[0]["State"]["Name"] == "terminated":
            return None
        protected = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiTermination")
        return {"state": found[0]["State"]["Name"], "tags": _tags(found[0].get("Tags")),
                "protected": bool(protected["DisableApiTermination"]["Value"])}

    def desired(self, state: dict[str, Any] | None, record: ResourceRecord) -> dict[str, Any] | None:
        if state is not None and state["state"] != "shutting-down":
            _refuse_managed(record.resource_id, state["tags"])
            if state["state"] != "stopped":
                raise ChangeError(f"{record.name} is {state['state']} now (the inventory is older): not terminated")
            if state["protected"]:
                raise ChangeError(f"{record.name} has termination protection on: not terminated")
        return None

    def accepted(self, state: dict[str, Any] | None, desired: dict[str, Any] | None) -> bool:
        return state is None or state["state"] == "shutting-down"  # termination is on its way

    def request_for(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        return {"InstanceIds": [ids.ec2_resource_id(record.resource_id)]}

    def write(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.ec2(record).terminate_instances(**request)
        return request


class _LifecycleRule(UpdateStep):
    """Add the hygiene rule to a bucket with no lifecycle rule (a bucket that has one since is left alone)."""

    noncurrent_default: ClassVar[int] = 30

    @property
    def noncurrent_days(self) -> int:
        return int(self.options.get("noncurrent_days") or self.noncurrent_default)

    def rules(self, record: ResourceRecord) -> tuple[list[dict[str, Any]], dict[str, str]]:
        raise NotImplementedError

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        rules, tags = self.rules(record)
        _refuse_managed(record.resource_id, tags)
        return {"lifecycle_rules": len(rules)}

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"lifecycle_rules": max(1, int(state["lifecycle_rules"]))}

    def satisfied(self, state: dict[str, Any], desired: dict[str, Any]) -> bool:
        return int(state["lifecycle_rules"]) > 0

    def describe(self, record: ResourceRecord, before: Any, after: Any) -> str:
        return (f"{record.name}: add lifecycle rule {HYGIENE_RULE_ID} (abort incomplete uploads after 7 days, "
                f"delete non-current versions after {self.noncurrent_days} days; current objects are kept)")


@cleanup_step
class S3LifecycleRule(_LifecycleRule):
    id = "cost.aws.s3.lifecycle"
    cloud = "aws"
    resource_types = ("aws.s3.bucket",)
    permissions = ("s3:GetLifecycleConfiguration", "s3:GetBucketTagging", "s3:PutLifecycleConfiguration")
    action = "s3:PutLifecycleConfiguration"

    def s3(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id
        return self.client(("s3", conn_id, record.region), lambda: client_for(conn_id, "s3", record.region))

    def rules(self, record: ResourceRecord) -> tuple[list[dict[str, Any]], dict[str, str]]:
        s3 = self.s3(record)
        name = ids.bucket_name(record.resource_id)

        def optional(call: Callable[[], Any], code: str, default: Any) -> Any:
            try:
                return call()
            except Exception as exc:
                if error_code(exc) == code:
                    return default
                raise

        rules = optional(lambda: s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"],
                         "NoSuchLifecycleConfiguration", [])
        tags = _tags(optional(lambda: s3.get_bucket_tagging(Bucket=name)["TagSet"], "NoSuchTagSet", []))
        return list(rules), tags

    def request_for(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        return {"Bucket": ids.bucket_name(record.resource_id), "LifecycleConfiguration": {"Rules": [{
            "ID": HYGIENE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
            "NoncurrentVersionExpiration": {"NoncurrentDays": self.noncurrent_days}}]}}

    def write(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        request = self.request_for(record, state, desired)
        self.s3(record).put_bucket_lifecycle_configuration(**request)
        return request


@cleanup_step
class GcsLifecycleRule(_LifecycleRule):
    id = "cost.gcp.gcs.lifecycle"
    cloud = "gcp"
    resource_types = ("gcp.storage.bucket",)
    permissions = ("storage.buckets.get", "storage.buckets.update")
    action = "storage.buckets.patch (lifecycle)"

    def bucket(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id

        def make() -> Any:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            return GCSHook(gcp_conn_id=conn_id).get_conn()

        from include.clouds.gcp.ids import bucket_name

        return self.client(("gcs", conn_id), make).get_bucket(bucket_name(record.resource_id))

    def rules(self, record: ResourceRecord) -> tuple[list[dict[str, Any]], dict[str, str]]:
        bucket = self.bucket(record)
        return list(bucket.lifecycle_rules), dict(bucket.labels or {})

    def request_for(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        return {"lifecycle": {"rule": [
            {"action": {"type": "AbortIncompleteMultipartUpload"}, "condition": {"age": 7}},
            {"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": self.noncurrent_days,
                                                          "isLive": False}}]}}

    def write(self, record: ResourceRecord, state: Any, desired: Any) -> dict[str, Any]:
        bucket = self.bucket(record)
        request = self.request_for(record, state, desired)
        bucket._patch_property("lifecycle", request["lifecycle"])
        bucket.patch()
        return request


def step_for(step_id: str, resource_type: str, options: Mapping[str, Any]) -> Step[Any]:
    """The cleanup step ``step_id`` for ``resource_type`` (``tags.required`` comes from the remediation fixers)."""
    if step_id == "tags.required":
        from include.compliance.remediation.registry import get_fixer

        return get_fixer(step_id, resource_type).create(options)
    try:
        cls = _STEPS[step_id]
    except KeyError:
        raise ChangeError(f"unknown cleanup step {step_id!r}; known: {', '.join(sorted(_STEPS))}") from None
    if resource_type not in cls.resource_types:
        raise ChangeError(f"cleanup step {step_id} handles {', '.join(cls.resource_types)}, not {resource_type}")
    return cls(options)


def all_steps() -> dict[str, type[Step[Any]]]:
    return dict(_STEPS)


def resolver(options: Mapping[str, Any]) -> StepCache:
    """The engine's resolver for cleanup items."""
    def make(item: Item) -> Step[Any]:
        return step_for(item.step, item.record.resource_type, options)

    return StepCache(make)
