"""Cross-cloud rules: required tags / labels / metadata, and residency of personal data.

One function per concept, registered once per cloud (ids stay prefixed by the cloud so waivers, reports
and the policy can address each cloud's rule on its own). Tag keys match case-insensitively with ``_``
equal to ``-``: Azure metadata names cannot contain ``-``, so ``cost_center`` satisfies ``cost-center``.
"""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, tag_value, verdict
from include.records import ResourceRecord

#: Resource types that carry tags / labels / metadata and cost money or hold data.
TAGGED_TYPES: dict[str, tuple[str, ...]] = {
    "aws": ("aws.s3.bucket", "aws.ec2.instance", "aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table"),
    "gcp": ("gcp.storage.bucket", "gcp.compute.instance"),
    "azure": ("azure.storage.container", "azure.compute.vm"),
}
#: Resource types that hold data, hence subject to residency (snapshots: copies travel across regions).
DATA_TYPES: dict[str, tuple[str, ...]] = {
    "aws": TAGGED_TYPES["aws"] + ("aws.ec2.snapshot",),
    "gcp": ("gcp.storage.bucket", "gcp.compute.instance"),
    "azure": ("azure.storage.container", "azure.compute.vm"),
}
_WORD = {"aws": "tags", "gcp": "labels", "azure": "metadata"}
_HOW = {
    "aws": "`aws resourcegroupstaggingapi tag-resources --resource-arn-list <arn> --tags owner=...,cost-center=...`",
    "gcp": "`gcloud storage buckets update gs://<name> --update-labels=owner=...,cost-center=...`",
    "azure": (
        "`az storage container metadata update --name <container> --metadata owner=... cost_center=...` "
        "(containers) or `az resource tag` (VMs)"
    ),
}
DEFAULT_REQUIRED = ("owner", "cost-center", "data-classification")


def required_tags(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    keys = tuple(ctx.params["required_tags"])
    missing = [key for key in keys if not (tag_value(record, key) or "").strip()]
    word = _WORD.get(record.cloud, "tags")
    return verdict(
        not missing, f"has {', '.join(keys)}", f"missing {word}: {', '.join(missing)}",
        missing=missing, required=list(keys),
    )


def pii_residency(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    marker = str(ctx.params["classification_tag"])
    values = {str(v).lower() for v in ctx.params["pii_values"]}
    classification = (tag_value(record, marker) or "").strip().lower()
    if classification not in values or ctx.target is None:
        return None
    allowed = [r for r in ctx.target.residency.pii_allowed_regions]
    if not allowed:
        return None  # the target states no residency constraint
    inside = record.region.lower() in {r.lower() for r in allowed}
    return verdict(
        inside, f"personal data in {record.region} (allowed)",
        f"personal data in {record.region}, outside the allowed regions {', '.join(allowed)}",
        region=record.region, allowed_regions=allowed,
    )


for _cloud in ("aws", "gcp", "azure"):
    _word = _WORD[_cloud]
    rule(
        id=f"{_cloud}_required_{_word}",
        title=f"Resources carry the required {_word} (owner, cost-center, data-classification)",
        severity="low",
        resource_types=TAGGED_TYPES[_cloud],
        rationale=(
            "Owner, cost centre and data classification tell who to call, who pays and how the data must be "
            "protected; untagged resources are orphans for incident response and cost reports."
        ),
        remediation=f"Add the missing {_word}: {_HOW[_cloud]}, or run remediate_findings with fixer tags.required.",
        frameworks={"Internal": ["TAG-1"]},
        fixer="tags.required",
        params={"required_tags": DEFAULT_REQUIRED},
    )(required_tags)
    rule(
        id=f"{_cloud}_pii_data_residency",
        title="Personal data stays in the target's allowed regions",
        severity="high",
        resource_types=DATA_TYPES[_cloud],
        rationale=(
            "Data classified as PII may only be stored where the target's residency policy allows (e.g. EU "
            "only), including copies such as snapshots."
        ),
        remediation=(
            "Move the data to an allowed region (copy, verify, delete the original) or correct its "
            "data-classification if it holds no personal data. Allowed regions: config/targets.yaml residency."
        ),
        frameworks={"GDPR": ["Art.44"], "Internal": ["RES-1"]},
        params={"classification_tag": "data-classification", "pii_values": ("pii",)},
    )(pii_residency)
