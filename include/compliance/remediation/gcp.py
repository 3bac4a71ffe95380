"""Google Cloud fixers: Cloud Storage uniform bucket-level access + public access prevention; labels.

Calls go through ``GCSHook`` / ``ComputeEngineHook`` built from the target's ``conn_id`` (imported
lazily: the Google SDK is heavy). Bucket metadata is changed with one PATCH of only the fields that change.
"""

from __future__ import annotations

import re
import time
from typing import Any

from include.changes.model import ChangeError
from include.changes.waiting import WaitTimeout
from include.clouds.gcp import ids
from include.compliance.remediation.registry import Fixer, RemediationError, fixer
from include.compliance.remediation.tags import TagsFixerBase
from include.records import ResourceRecord

GCS_BUCKET = "gcp.storage.bucket"
GCE_INSTANCE = "gcp.compute.instance"
#: GCS label rules: keys start with a lowercase letter; keys and values use [a-z0-9_-], <= 63 chars.
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def gcs_bucket_name(record: ResourceRecord) -> str:
    """The bucket of the record's full resource name (a malformed id is an error, never a guess)."""
    return ids.bucket_name(record.resource_id)


class _GcsFixer(Fixer):
    def bucket(self, record: ResourceRecord) -> Any:
        """The bucket, freshly read (raises NotFound when it does not exist)."""
        conn_id = self.target(record).conn_id

        def make() -> Any:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            return GCSHook(gcp_conn_id=conn_id).get_conn()

        client = self.client(("gcs", conn_id), make)
        return client.get_bucket(gcs_bucket_name(record))


@fixer(
    "gcp.gcs.uniform_access_and_pap",
    "gcp",
    [GCS_BUCKET],
    permissions=("storage.buckets.get", "storage.buckets.update"),
    action="storage.buckets.patch",
)
class GcsUniformAccessAndPap(_GcsFixer):
    """Turn on uniform bucket-level access and enforce public access prevention.

    Uniform access disables object ACLs (reversible for 90 days on GCS); access is then by IAM only.
    """

    def read(self, record: ResourceRecord) -> dict[str, Any]:
        config = self.bucket(record).iam_configuration
        return {
            "uniform_access": bool(config.uniform_bucket_level_access_enabled),
            "public_access_prevention": str(config.public_access_prevention or "inherited"),
        }

    def desired(self, state: dict[str, Any], record: ResourceRecord) -> dict[str, Any]:
        return {"uniform_access": True, "public_access_prevention": "enforced"}

    def request_for(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        return {
            "bucket": gcs_bucket_name(record),
            "iamConfiguration": {
                "uniformBucketLevelAccess": {"enabled": True},
                "publicAccessPrevention": "enforced",
            },
        }

    def write(self, record: ResourceRecord, state: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
        bucket = self.bucket(record)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        bucket.patch()
        return self.request_for(record, state, desired)


def instance_parts(record: ResourceRecord) -> tuple[str, str, str]:
    """(project, zone, name) from ``//compute.googleapis.com/projects/<p>/zones/<z>/instances/<name>``."""
    return ids.instance_parts(record.resource_id)


@fixer(
    "tags.required",
    "gcp",
    [GCS_BUCKET, GCE_INSTANCE],
    permissions=(
        "storage.buckets.get", "storage.buckets.update",
        "compute.instances.get", "compute.instances.setLabels", "compute.zoneOperations.get",
    ),
)
class GcpRequiredLabels(TagsFixerBase, _GcsFixer):
    """Add missing required labels to Cloud Storage buckets and Compute Engine instances.

    Instances are labelled with ``instances.setLabels`` and the instance's ``labelFingerprint``, so a
    label changed by someone else in between makes the call fail instead of being overwritten.
    """

    #: Seconds to wait for a Compute Engine ``setLabels`` operation.
    operation_timeout = 120.0

    def action_for(self, record: ResourceRecord) -> str:
        return "compute.instances.setLabels" if record.resource_type == GCE_INSTANCE else "storage.buckets.patch"

    def validate_tag(self, key: str, value: str, record: ResourceRecord) -> None:
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
            raise RemediationError(
                f"label {key}={value!r} is not valid on Google Cloud: keys start with a lowercase letter, keys and "
                "values use only lowercase letters, digits, '_' and '-', at most 63 characters"
            )

    def gce(self, record: ResourceRecord) -> Any:
        conn_id = self.target(record).conn_id

        def make() -> Any:
            from airflow.providers.google.cloud.hooks.compute import ComputeEngineHook

            # The Google provider leaves ComputeEngineHook.get_conn unannotated (it returns a discovery Resource).
            return ComputeEngineHook(gcp_conn_id=conn_id).get_conn()  # type: ignore[no-untyped-call]

        return self.client(("gce", conn_id), make)

    def _instance(self, record: ResourceRecord) -> dict[str, Any]:
        project, zone, name = instance_parts(record)
        return dict(self.gce(record).instances().get(project=project, zone=zone, instance=name).execute())

    def current_tags(self, record: ResourceRecord) -> dict[str, str]:
        if record.resource_type == GCE_INSTANCE:
            return dict(self._instance(record).get("labels") or {})
        return dict(self.bucket(record).labels or {})

    def add_tags(self, record: ResourceRecord, current: dict[str, str], missing: dict[str, str]) -> None:
        if record.resource_type == GCE_INSTANCE:
            self._set_instance_labels(record, missing)
            return
        bucket = self.bucket(record)
        # Start from the labels read with this very bucket object: nothing is dropped or overwritten
        # (``missing`` holds only keys that are absent or empty).
        bucket.labels = {**(bucket.labels or {}), **missing}
        bucket.patch()

    def _set_instance_labels(self, record: ResourceRecord, missing: dict[str, str]) -> None:
        project, zone, name = instance_parts(record)
        service = self.gce(record)
        instance = self._instance(record)  # labels and fingerprint read together
        body = {
            "labels": {**(instance.get("labels") or {}), **missing},
            "labelFingerprint": instance.get("labelFingerprint"),
        }
        operation = service.instances().setLabels(project=project, zone=zone, instance=name, body=body).execute()
        deadline = time.monotonic() + self.operation_timeout
        while operation.get("status") != "DONE":
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"setLabels on {name} not done after {self.operation_timeout:.0f}s "
                                  f"(operation {operation.get('name')})")
            # zoneOperations.wait returns when the operation is DONE or after about two minutes.
            operation = service.zoneOperations().wait(project=project, zone=zone,
                                                      operation=operation["name"]).execute()
        if operation.get("error"):
            raise ChangeError(f"setLabels on {name} failed: {operation['error']}")
