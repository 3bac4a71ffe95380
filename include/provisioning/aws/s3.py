"""S3 buckets: region, default encryption, versioning, public access block (always on), lifecycle, tags."""

from __future__ import annotations

from typing import Any

from include.changes.model import ChangeError
from include.clouds.aws.ids import s3_bucket_arn
from include.clouds.errors import http_status
from include.provisioning.aws.common import AwsStep, code_of, is_missing, tag_dict, tag_list
from include.provisioning.base import AlreadyExists, Live
from include.provisioning.registry import provisions
from include.provisioning.spec import SpecResource

_PAB = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
_RULE_KEYS = ("id", "prefix", "expire_days", "noncurrent_expire_days", "abort_multipart_days", "transition_days",
              "transition_storage_class")


def lifecycle_from_spec(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spec's rules in the comparable form (``prefix`` defaults to "", sorted by id)."""
    return sorted(({"prefix": "", **{k: r[k] for k in _RULE_KEYS if k in r}} for r in rules), key=lambda r: r["id"])


def lifecycle_to_aws(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rule in rules:
        aws: dict[str, Any] = {"ID": rule["id"], "Status": "Enabled", "Filter": {"Prefix": rule.get("prefix", "")}}
        if "expire_days" in rule:
            aws["Expiration"] = {"Days": rule["expire_days"]}
        if "noncurrent_expire_days" in rule:
            aws["NoncurrentVersionExpiration"] = {"NoncurrentDays": rule["noncurrent_expire_days"]}
        if "abort_multipart_days" in rule:
            aws["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": rule["abort_multipart_days"]}
        if "transition_days" in rule:
            aws["Transitions"] = [{"Days": rule["transition_days"], "StorageClass": rule["transition_storage_class"]}]
        out.append(aws)
    return out


def lifecycle_from_aws(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AWS rules as the comparable form (a rule the spec format cannot express keeps an ``other`` marker)."""
    out = []
    for aws in rules:
        prefix = (aws.get("Filter") or {}).get("Prefix", aws.get("Prefix", ""))
        rule: dict[str, Any] = {"id": aws.get("ID", ""), "prefix": prefix or ""}
        if aws.get("Status") != "Enabled":
            rule["status"] = aws.get("Status")
        if "Days" in (aws.get("Expiration") or {}):
            rule["expire_days"] = aws["Expiration"]["Days"]
        if "NoncurrentDays" in (aws.get("NoncurrentVersionExpiration") or {}):
            rule["noncurrent_expire_days"] = aws["NoncurrentVersionExpiration"]["NoncurrentDays"]
        if "DaysAfterInitiation" in (aws.get("AbortIncompleteMultipartUpload") or {}):
            rule["abort_multipart_days"] = aws["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        transitions = aws.get("Transitions") or []
        if transitions:
            rule["transition_days"] = transitions[0].get("Days")
            rule["transition_storage_class"] = transitions[0].get("StorageClass")
        out.append(rule)
    return sorted(out, key=lambda r: str(r["id"]))


def _encryption_from_spec(props: dict[str, Any]) -> dict[str, Any]:
    if props.get("encryption") == "kms":
        return {"algorithm": "kms", "kms_key": props["kms_key"]}
    return {"algorithm": "aes256"}


@provisions(
    "s3",
    read=("s3:GetBucketLocation", "s3:GetBucketTagging", "s3:GetEncryptionConfiguration", "s3:GetBucketVersioning",
          "s3:GetBucketPublicAccessBlock", "s3:GetLifecycleConfiguration", "s3:GetBucketObjectLockConfiguration",
          "s3:ListBucket"),
    create=("s3:CreateBucket", "s3:PutBucketTagging", "s3:PutBucketPublicAccessBlock", "s3:PutEncryptionConfiguration",
            "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration", "s3:DeleteBucket"),
    update=("s3:PutBucketTagging", "s3:PutBucketPublicAccessBlock", "s3:PutEncryptionConfiguration",
            "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration"),
    delete=("s3:DeleteBucket", "s3:ListBucketVersions", "s3:DeleteObject", "s3:DeleteObjectVersion"),
    actions={"create": "s3:CreateBucket + PutBucketTagging, PutBucketPublicAccessBlock, PutEncryptionConfiguration, "
                       "PutBucketVersioning, PutLifecycleConfiguration",
             "update": "s3:PutBucket* (the fields that differ)", "delete": "s3:DeleteBucket"},
)
class S3Bucket(AwsStep):
    """An S3 bucket. Public access is always blocked (all four flags); ``force_destroy`` empties it on teardown."""

    immutable = ("region",)
    # Not optimistic: in us-east-1, CreateBucket on a bucket the account already owns answers 200 (S3's legacy
    # behaviour), so only a read first can tell an unmanaged bucket of ours from a new one.
    optimistic_create = False

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {"region": res.region, "encryption": _encryption_from_spec(props),
                "versioning": bool(props.get("versioning", True)), "public_access_block": True,
                "lifecycle": lifecycle_from_spec(list(props.get("lifecycle") or []))}

    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        s3 = self.aws(res, "s3")
        name = str(props["name"])
        try:
            constraint = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
        except Exception as exc:
            if is_missing(exc, "NoSuchBucket"):
                return None
            if code_of(exc) in ("AccessDenied", "AllAccessDisabled"):
                if not self._foreign(s3, name):  # ours, or no bucket: the permission is missing, never "foreign"
                    raise
                return Live(fields={}, outputs={}, tags={}, detail={"foreign": True})  # another account's name
            raise
        region = "us-east-1" if not constraint else ("eu-west-1" if constraint == "EU" else str(constraint))
        tags = tag_dict(self._optional(lambda: s3.get_bucket_tagging(Bucket=name)["TagSet"], "NoSuchTagSet", []))
        outputs = {"id": name, "name": name, "arn": s3_bucket_arn(name, region), "region": region}
        if tags.get("managed-by") is None:  # not ours: read nothing more about it
            return Live(fields={"tags": tags}, outputs=outputs, tags=tags)
        rules = self._optional(
            lambda: s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"],
            "ServerSideEncryptionConfigurationNotFoundError", [])
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algorithm = {"AES256": "aes256", "aws:kms": "kms"}.get(str(default.get("SSEAlgorithm")))
        encryption: dict[str, Any] = {"algorithm": algorithm}
        if algorithm == "kms":
            encryption["kms_key"] = default.get("KMSMasterKeyID")
        block = self._optional(lambda: s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"],
                               "NoSuchPublicAccessBlockConfiguration", {})
        lifecycle = self._optional(lambda: s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"],
                                   "NoSuchLifecycleConfiguration", [])
        fields = {
            "region": region,
            "encryption": encryption,
            "versioning": s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled",
            "public_access_block": all(block.get(flag) for flag in _PAB),
            "lifecycle": lifecycle_from_aws(lifecycle),
            "tags": tags,
        }
        live = Live(fields=fields, outputs=outputs, tags=tags)
        if self.teardown:
            live.protected = self._protection(s3, name, props)
        return live

    @staticmethod
    def _foreign(s3: Any, name: str) -> bool:
        """After an AccessDenied on GetBucketLocation: is ``name`` another account's bucket? Listing it (s3:ListBucket,
        already needed to read) is refused (403) for another account's bucket; it answers for one this account may
        use (200) or for no bucket at all (404), and then the denial was a permission this run lacks."""
        try:
            s3.list_objects_v2(Bucket=name, MaxKeys=1)
        except Exception as exc:
            return http_status(exc) == 403 or code_of(exc) in ("403", "AccessDenied", "Forbidden", "AllAccessDisabled")
        return False

    @staticmethod
    def _optional(call: Any, missing_code: str, default: Any) -> Any:
        try:
            return call()
        except Exception as exc:
            if code_of(exc) == missing_code:
                return default
            raise

    def _protection(self, s3: Any, name: str, props: dict[str, Any]) -> str | None:
        lock = self._optional(lambda: s3.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"],
                              "ObjectLockConfigurationNotFoundError", {})
        if lock.get("ObjectLockEnabled") == "Enabled":
            return "S3 Object Lock is enabled (its objects may be under retention): a retention lock"
        if not props.get("force_destroy"):
            if s3.list_object_versions(Bucket=name, MaxKeys=1).get("Versions") or \
                    s3.list_objects_v2(Bucket=name, MaxKeys=1).get("KeyCount"):
                return "it holds objects and force_destroy is false"
        return None

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        s3 = self.aws(res, "s3")
        name = str(props["name"])
        request: dict[str, Any] = {"Bucket": name}
        if res.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": res.region}
        try:
            s3.create_bucket(**request)
        except Exception as exc:
            if code_of(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise AlreadyExists(f"bucket {name} exists") from exc
            raise
        try:  # ownership first: a bucket this step created never stays unmarked
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(want["tags"])})
        except Exception:
            s3.delete_bucket(Bucket=name)  # compensation: the bucket is new and empty
            raise
        for field in ("public_access_block", "encryption", "versioning", "lifecycle"):
            if field != "versioning" or want["versioning"]:
                if field != "lifecycle" or want["lifecycle"]:
                    self._put(s3, name, field, want)
        return {"id": name, "name": name, "arn": s3_bucket_arn(name, res.region), "region": res.region}

    def _put(self, s3: Any, name: str, field: str, want: dict[str, Any]) -> None:
        if field == "tags":
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(want["tags"])})
        elif field == "public_access_block":
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=dict(_PAB))
        elif field == "encryption":
            default: dict[str, Any] = {"SSEAlgorithm": "aws:kms" if want["encryption"]["algorithm"] == "kms"
                                       else "AES256"}
            rule: dict[str, Any] = {"ApplyServerSideEncryptionByDefault": default}
            if want["encryption"].get("kms_key"):
                default["KMSMasterKeyID"] = want["encryption"]["kms_key"]
                rule["BucketKeyEnabled"] = True
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [rule]})
        elif field == "versioning":
            status = "Enabled" if want["versioning"] else "Suspended"
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
        elif field == "lifecycle":
            if want["lifecycle"]:
                s3.put_bucket_lifecycle_configuration(
                    Bucket=name, LifecycleConfiguration={"Rules": lifecycle_to_aws(want["lifecycle"])})
            else:
                s3.delete_bucket_lifecycle(Bucket=name)
        else:
            raise ChangeError(f"s3 bucket {name}: {field} cannot be changed by this step")

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        s3 = self.aws(res, "s3")
        for field in changed:
            self._put(s3, str(props["name"]), field, want)

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        s3 = self.aws(res, "s3")
        name = str(props["name"])
        if props.get("force_destroy"):
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                          for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]]
                for start in range(0, len(doomed), 1000):
                    answer = s3.delete_objects(Bucket=name, Delete={"Objects": doomed[start:start + 1000],
                                                                    "Quiet": True})
                    # DeleteObjects answers 200 with per-key errors: a denied delete must say so, not surface
                    # later as BucketNotEmpty.
                    errors = answer.get("Errors") or []
                    if errors:
                        first = errors[0]
                        code, message = str(first.get("Code", "")), str(first.get("Message", ""))
                        if code == "AccessDenied":  # each key names its version: AWS checks s3:DeleteObjectVersion
                            message = (f"{message} (missing permission s3:DeleteObjectVersion, or s3:DeleteObject "
                                       "where the store checks that: emptying the bucket needs it)")
                        raise ChangeError(f"could not empty bucket {name!r} before deleting it: {len(errors)} "
                                          f"object version(s) not deleted, e.g. {first.get('Key')!r}: {code}: "
                                          f"{message}")
        s3.delete_bucket(Bucket=name)
