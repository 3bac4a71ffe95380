"""Google Cloud Storage rules: bucket access (uniform access, public access prevention, public grants), versioning."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.records import ResourceRecord

_FIX_GCS = "gcp.gcs.uniform_access_and_pap"


@rule(
    id="gcp_storage_bucket_uniform_access",
    title="Cloud Storage buckets use uniform bucket-level access",
    severity="medium",
    resource_types=("gcp.storage.bucket",),
    rationale="With per-object ACLs, one object can be made public without anyone reviewing bucket IAM.",
    remediation=(
        "`gcloud storage buckets update gs://<name> --uniform-bucket-level-access`, or run remediate_findings "
        "with fixer gcp.gcs.uniform_access_and_pap."
    ),
    frameworks={"CIS-GCP-3.0": ["5.2"]},
    fixer=_FIX_GCS,
)
def gcs_uniform_access(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    value = record.attributes.get("uniform_access")
    if value is None:
        return None
    return verdict(value is True, "uniform bucket-level access on", "fine-grained (per-object) ACLs allowed")


@rule(
    id="gcp_storage_bucket_public_access_prevention",
    title="Cloud Storage buckets enforce public access prevention",
    severity="high",
    resource_types=("gcp.storage.bucket",),
    rationale="Public access prevention blocks any later grant to allUsers / allAuthenticatedUsers.",
    remediation=(
        "`gcloud storage buckets update gs://<name> --public-access-prevention`, or run remediate_findings "
        "with fixer gcp.gcs.uniform_access_and_pap."
    ),
    # Not CIS GCP 3.0 5.1: that audits allUsers / allAuthenticatedUsers members (gcp_storage_bucket_not_public);
    # no recommendation of the benchmark covers public access prevention.
    frameworks={"Internal": ["PUB-1"]},
    fixer=_FIX_GCS,
)
def gcs_public_access_prevention(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    value = record.attributes.get("public_access_prevention")
    if value is None:
        return None
    return verdict(
        value == "enforced", "public access prevention enforced", f"public access prevention is {value!r}",
        public_access_prevention=value,
    )


@rule(
    id="gcp_storage_bucket_not_public",
    title="Cloud Storage buckets are not readable by allUsers / allAuthenticatedUsers",
    severity="critical",
    resource_types=("gcp.storage.bucket",),
    rationale="An IAM grant to allUsers publishes every object of the bucket to the internet.",
    remediation=(
        "Remove the allUsers / allAuthenticatedUsers bindings from the bucket IAM policy and enforce public "
        "access prevention (fixer gcp.gcs.uniform_access_and_pap)."
    ),
    frameworks={"CIS-GCP-3.0": ["5.1"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"]},
    fixer=_FIX_GCS,
)
def gcs_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    public = record.attributes.get("public")
    if public is None:
        return None
    reasons = list(record.attributes.get("public_reasons") or [])
    return verdict(
        public is False, "not public", "public: " + (", ".join(reasons) or "IAM grant to all users"),
        public_reasons=reasons,
    )


@rule(
    id="gcp_storage_bucket_versioning",
    title="Cloud Storage buckets have object versioning (or a retention policy)",
    severity="medium",
    resource_types=("gcp.storage.bucket",),
    rationale=(
        "Versioning keeps overwritten and deleted objects recoverable; a retention policy (which Cloud Storage "
        "does not allow together with versioning) protects them for its period instead."
    ),
    remediation="`gcloud storage buckets update gs://<name> --versioning` and add a lifecycle rule for old versions.",
    frameworks={"HIPAA": ["164.308(a)(7)(ii)(A)"]},
)
def gcs_versioning(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    value = record.attributes.get("versioning")
    if value is None:
        return None
    # Cloud Storage refuses versioning on a bucket with a retention policy; the retention policy already
    # keeps every object from being deleted or overwritten for its period.
    retention = int(record.attributes.get("retention_days") or 0)
    if value is not True and retention > 0:
        return verdict(True, f"protected by a {retention}-day retention policy", "", retention_days=retention)
    return verdict(value is True, "versioning on", "versioning is off (and no retention policy)")
