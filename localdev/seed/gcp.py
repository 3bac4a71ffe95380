"""Seed the ``gcp:`` section of ``config/estate.yaml``: Cloud Storage buckets, their IAM grants, objects.

Through ``GCSHook`` (the client it builds), as the runbooks do. A bucket is identified by its name plus
the label ``seed-id``: an existing bucket carrying the right label is reported ``existing`` and left as it
is (so a remediated bucket stays remediated); a bucket of that name *without* the label is somebody
else's and stops the run. Objects are created when missing, never overwritten.

Bucket metadata is sent on create (what real Cloud Storage honours) and then compared with what the API
reports and patched where it differs: the local emulator ignores everything but the name on create.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.providers.google.cloud.hooks.gcs import GCSHook

from include.capabilities.object_store import CHUNK_SIZE
from include.targets import Target
from localdev.seed import SEED_TAG, SeedError, SeedReport, object_body, seeded_objects

_BUCKET_KEYS = frozenset(
    [
        *("name", "seed_id", "location", "storage_class", "labels", "objects", "iam", "logging"),
        *("uniform_access", "public_access_prevention", "versioning", "kms_key", "retention_days"),
    ]
)
_PREVENTION = {"enforced", "inherited"}
#: ``objects:``: `count` objects of `size_kib` KiB under `prefix`, plus one of `large_mib` MiB (mixed sizes).
_OBJECT_KEYS = frozenset({"prefix", "count", "size_kib", "large_mib"})


def bucket_labels(entry: Mapping[str, Any]) -> dict[str, str]:
    """The entry's labels plus ``seed-id``."""
    labels = {str(k): str(v) for k, v in (entry.get("labels") or {}).items()}
    labels[SEED_TAG] = str(entry["seed_id"])
    return labels


def bucket_resource(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The bucket's JSON resource fields (Cloud Storage JSON API names) an entry asks for."""
    prevention = str(entry.get("public_access_prevention", "inherited"))
    resource: dict[str, Any] = {
        "location": str(entry.get("location", "US")).upper(),
        "storageClass": str(entry.get("storage_class", "STANDARD")),
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": bool(entry.get("uniform_access", True))},
            "publicAccessPrevention": prevention,
        },
        "versioning": {"enabled": bool(entry.get("versioning", False))},
    }
    if entry.get("kms_key"):
        resource["encryption"] = {"defaultKmsKeyName": str(entry["kms_key"])}
    if entry.get("retention_days"):
        resource["retentionPolicy"] = {"retentionPeriod": str(int(entry["retention_days"]) * 86400)}
    if entry.get("logging"):
        log = entry["logging"]
        resource["logging"] = {"logBucket": str(log["bucket"]), "logObjectPrefix": str(log.get("prefix", ""))}
    return resource


def _validate(entry: Mapping[str, Any]) -> None:
    where = f"estate gcp bucket {entry.get('name')!r}"
    if not entry.get("name") or not entry.get("seed_id"):
        raise SeedError(f"{where}: needs name and seed_id")
    unknown = set(entry) - _BUCKET_KEYS
    if unknown:
        raise SeedError(f"{where}: unknown keys {sorted(unknown)}")
    if entry.get("public_access_prevention", "inherited") not in _PREVENTION:
        raise SeedError(f"{where}: public_access_prevention must be one of {sorted(_PREVENTION)}")
    objects = entry.get("objects") or {}
    if not isinstance(objects, Mapping) or set(objects) - _OBJECT_KEYS:
        raise SeedError(f"{where}: objects takes {sorted(_OBJECT_KEYS)}, not {objects!r}")
    if any(not isinstance(objects.get(k, 0), int) or objects.get(k, 0) < 0 for k in ("count", "size_kib", "large_mib")):
        raise SeedError(f"{where}: objects count / size_kib / large_mib must be non-negative integers")
    if entry.get("versioning") and entry.get("retention_days"):
        # Cloud Storage refuses a retention policy on a versioned bucket.
        raise SeedError(f"{where}: versioning and retention_days cannot be combined")


def _differs(actual: Any, wanted: Any) -> bool:
    """True when ``wanted`` (possibly nested) is not contained in ``actual``."""
    if isinstance(wanted, Mapping):
        if not isinstance(actual, Mapping):
            return True
        return any(_differs(actual.get(key), value) for key, value in wanted.items())
    return bool(str(actual) != str(wanted))


def _converge(bucket: Any, resource: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Patch the fields the API did not apply on create (all of them on the emulator; none on GCS)."""
    changed = False
    for key, wanted in resource.items():
        if _differs(bucket._properties.get(key), wanted):
            bucket._patch_property(key, wanted)
            changed = True
    current = dict(bucket.labels or {})
    if any(current.get(k) != v for k, v in labels.items()):
        bucket.labels = {**current, **labels}
        changed = True
    if changed:
        bucket.patch()


def _grant(bucket: Any, bindings: list[Mapping[str, Any]]) -> None:
    """Add IAM bindings (role -> members) to the bucket's policy."""
    policy = bucket.get_iam_policy(requested_policy_version=3)
    for binding in bindings:
        role, members = str(binding["role"]), {str(m) for m in binding["members"]}
        existing = next((b for b in policy.bindings if b.get("role") == role), None)
        if existing is None:
            policy.bindings.append({"role": role, "members": members})
        else:
            existing["members"] = set(existing.get("members", ())) | members
    bucket.set_iam_policy(policy)


def seed_bucket(hook: GCSHook, target: Target, entry: Mapping[str, Any], report: SeedReport) -> None:
    """Create one bucket (metadata, IAM grants) when missing, then its missing objects."""
    _validate(entry)
    client = hook.get_conn()
    name, seed_id = str(entry["name"]), str(entry["seed_id"])
    labels = bucket_labels(entry)
    bucket = client.lookup_bucket(name)
    if bucket is not None:
        if (bucket.labels or {}).get(SEED_TAG) != seed_id:
            raise SeedError(
                f"bucket {name} exists without label {SEED_TAG}={seed_id}: not ours, refusing to adopt it"
            )
        report.add(False, "gcp.storage.bucket", name)
    else:
        resource = bucket_resource(entry)
        extra = {k: v for k, v in resource.items() if k not in ("location", "storageClass")}
        hook.create_bucket(
            bucket_name=name,
            resource=extra,
            storage_class=resource["storageClass"],
            location=resource["location"],
            project_id=target.account,
            labels=dict(labels),
        )
        bucket = client.get_bucket(name)
        _converge(bucket, resource, labels)
        if entry.get("iam"):
            _grant(bucket, list(entry["iam"]))
        report.add(True, "gcp.storage.bucket", name)

    for key, size in seeded_objects(entry).items():
        blob = bucket.blob(key)
        if blob.exists():
            report.add(False, "gcp.storage.object", f"{name}/{key}")
            continue
        # A large object (`large_mib`) goes as a resumable upload in CHUNK_SIZE pieces, like the runbooks' writes.
        hook.upload(bucket_name=name, object_name=key, data=object_body(name, key, size), chunk_size=CHUNK_SIZE)
        report.add(True, "gcp.storage.object", f"{name}/{key}")


def seed(target: Target, section: Mapping[str, Any], report: SeedReport) -> None:
    """Apply the ``gcp:`` section: buckets in the listed order (log buckets before their users)."""
    hook = GCSHook(gcp_conn_id=target.conn_id)
    for entry in section.get("buckets") or []:
        seed_bucket(hook, target, entry, report)
