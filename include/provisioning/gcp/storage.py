"""Cloud Storage buckets: location (fixed), storage class, versioning, uniform access and public access
prevention (always on), lifecycle, default KMS key, retention, labels.

Through ``GCSHook`` (its client). A bucket is created with all its metadata in the one insert (what
Cloud Storage honours); the answer is compared with the spec and whatever the service did not take is
patched at once (the local emulator ignores everything but the name on insert; on Cloud Storage the
patch is never needed). A locked retention policy protects the bucket from teardown.
"""

from __future__ import annotations

from typing import Any

from include.provisioning.base import AlreadyExists, Live, ResourceStep
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

_RULE_KEYS = ("action", "storage_class", "age_days", "newer_versions", "is_live")


def lifecycle_from_spec(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: r[k] for k in _RULE_KEYS if k in r} for r in rules), key=repr)


def lifecycle_to_gcs(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        action: dict[str, Any] = {"type": "Delete" if rule["action"] == "delete" else "SetStorageClass"}
        if rule["action"] == "set_storage_class":
            action["storageClass"] = rule["storage_class"]
        condition: dict[str, Any] = {}
        if "age_days" in rule:
            condition["age"] = rule["age_days"]
        if "newer_versions" in rule:
            condition["numNewerVersions"] = rule["newer_versions"]
        if "is_live" in rule:
            condition["isLive"] = rule["is_live"]
        out.append({"action": action, "condition": condition})
    return out


def lifecycle_from_gcs(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for gcs in rules:
        action = gcs.get("action") or {}
        condition = gcs.get("condition") or {}
        rule: dict[str, Any] = {"action": "delete" if action.get("type") == "Delete" else "set_storage_class"}
        if action.get("storageClass"):
            rule["storage_class"] = action["storageClass"]
        if "age" in condition:
            rule["age_days"] = int(condition["age"])
        if "numNewerVersions" in condition:
            rule["newer_versions"] = int(condition["numNewerVersions"])
        if "isLive" in condition:
            rule["is_live"] = bool(condition["isLive"])
        out.append(rule)
    return sorted(out, key=repr)


def _resource(want: dict[str, Any]) -> dict[str, Any]:
    """The bucket's JSON resource fields for ``want`` (Cloud Storage JSON API names)."""
    resource: dict[str, Any] = {
        "location": want["location"], "storageClass": want["storage_class"],
        "versioning": {"enabled": want["versioning"]},
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}, "publicAccessPrevention": "enforced"},
        "lifecycle": {"rule": lifecycle_to_gcs(want["lifecycle"])},
        "labels": dict(want["tags"]),
    }
    if want.get("kms_key"):
        resource["encryption"] = {"defaultKmsKeyName": want["kms_key"]}
    if want.get("retention_days"):
        resource["retentionPolicy"] = {"retentionPeriod": str(int(want["retention_days"]) * 86400)}
    return resource


_JSON_KEYS = {"location": ("location",), "storage_class": ("storageClass",), "versioning": ("versioning",),
              "uniform_access": ("iamConfiguration",), "public_access_prevention": ("iamConfiguration",),
              "lifecycle": ("lifecycle",), "tags": ("labels",), "kms_key": ("encryption",),
              "retention_days": ("retentionPolicy",)}


def fields_of(props: dict[str, Any]) -> dict[str, Any]:
    """The comparable fields of a bucket's JSON resource."""
    iam = props.get("iamConfiguration") or {}
    prevention = iam.get("publicAccessPrevention") or "inherited"
    retention = (props.get("retentionPolicy") or {}).get("retentionPeriod")
    return {
        "location": str(props.get("location") or "").upper(),
        "storage_class": props.get("storageClass"),
        "versioning": bool((props.get("versioning") or {}).get("enabled", False)),
        "uniform_access": bool((iam.get("uniformBucketLevelAccess") or {}).get("enabled", False)),
        "public_access_prevention": "inherited" if prevention == "unspecified" else prevention,
        "lifecycle": lifecycle_from_gcs(list((props.get("lifecycle") or {}).get("rule") or [])),
        "kms_key": (props.get("encryption") or {}).get("defaultKmsKeyName") or None,
        "retention_days": int(retention) // 86400 if retention else None,
        "tags": dict(props.get("labels") or {}),
    }


@provisions(
    "gcs",
    read=("storage.buckets.get", "storage.objects.list"),
    create=("storage.buckets.create", "storage.buckets.update", "storage.buckets.delete"),
    update=("storage.buckets.update",),
    delete=("storage.buckets.delete", "storage.objects.list", "storage.objects.delete"),
    actions={"create": "storage.buckets.insert (+ storage.buckets.patch of what the insert did not take)",
             "update": "storage.buckets.patch (the fields that differ)", "delete": "storage.buckets.delete"},
)
class GcsBucket(ResourceStep):
    """A Cloud Storage bucket, private by construction (uniform access, public access prevention enforced)."""

    immutable = ("location",)
    optimistic_create = True  # bucket names are global: insert answers 409 when the name is taken

    def storage(self, res: SpecResource) -> Any:
        conn_id = self.target_of(res).conn_id

        def make() -> Any:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook

            return GCSHook(gcp_conn_id=conn_id).get_conn()

        return self.client(("gcs", conn_id), make)

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {"location": str(props.get("location") or "US").upper(),
                "storage_class": props.get("storage_class", "STANDARD"),
                "versioning": bool(props.get("versioning", True)), "uniform_access": True,
                "public_access_prevention": "enforced",
                "lifecycle": lifecycle_from_spec(list(props.get("lifecycle") or [])),
                "kms_key": props.get("kms_key"), "retention_days": props.get("retention_days")}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        from google.api_core.exceptions import Forbidden

        try:
            bucket = self.storage(res).lookup_bucket(str(props["name"]))
        except Forbidden:  # the name belongs to another project
            return Live(fields={}, outputs={}, tags={}, detail={"foreign": True})
        if bucket is None:
            return None
        data = dict(bucket._properties)  # the JSON resource as the API returned it
        fields = fields_of(data)
        name = str(props["name"])
        live = Live(fields=fields, outputs={"id": name, "name": name, "url": f"gs://{name}"}, tags=fields["tags"])
        if self.teardown:
            if (data.get("retentionPolicy") or {}).get("isLocked"):
                live.protected = "its retention policy is locked (a retention lock)"
            elif not props.get("force_destroy") and next(iter(bucket.list_blobs(max_results=1)), None) is not None:
                live.protected = "it holds objects and force_destroy is false"
        return live

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        from google.api_core.exceptions import Conflict

        client = self.storage(res)
        name = str(props["name"])
        bucket = client.bucket(name)
        resource = _resource(want)
        for key, value in resource.items():
            if key != "location":
                bucket._patch_property(key, value)
        try:
            bucket = client.create_bucket(bucket, project=self.target_of(res).account, location=want["location"])
        except Conflict as exc:
            raise AlreadyExists(f"bucket {name} exists") from exc
        self._converge(bucket, want)
        return {"id": name, "name": name, "url": f"gs://{name}"}

    def _converge(self, bucket: Any, want: dict[str, Any]) -> None:
        """Patch, in one call, the fields the insert's answer shows were not taken (the emulator's gap)."""
        have = fields_of(dict(bucket._properties))
        stale = self.differing(have, {**want, "tags": want["tags"]})
        self._patch(bucket, want, stale)

    def _patch(self, bucket: Any, want: dict[str, Any], fields: list[str]) -> None:
        resource = _resource(want)
        keys = {key for field in fields for key in _JSON_KEYS.get(field, ())}
        for key in sorted(keys):
            value = resource.get(key)
            bucket._patch_property(key, value)
        if keys:
            bucket.patch()

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        bucket = self.storage(res).bucket(str(props["name"]))
        self._patch(bucket, want, changed)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        bucket = self.storage(res).get_bucket(str(props["name"]))
        if props.get("force_destroy"):
            for blob in list(bucket.list_blobs(versions=True)):
                blob.delete()
        bucket.delete()
