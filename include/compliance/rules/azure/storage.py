"""Azure Storage rules: anonymous access to Blob containers."""

from __future__ import annotations

from include.compliance.model import Verdict
from include.compliance.registry import RuleContext, rule, verdict
from include.records import ResourceRecord


@rule(
    id="azure_storage_container_not_public",
    title="Blob containers allow no anonymous access",
    severity="high",
    resource_types=("azure.storage.container",),
    rationale=(
        "A container with public access level 'blob' serves any blob to anyone with its URL; 'container' also "
        "lets anyone list the blobs."
    ),
    remediation=(
        "`az storage container set-permission --name <container> --public-access off --account-name <account>` "
        "and set 'Allow Blob anonymous access' to Disabled on the account; or run remediate_findings with fixer "
        "azure.blob.private_access."
    ),
    frameworks={"CIS-Azure-2.1": ["3.17"], "GDPR": ["Art.32"], "HIPAA": ["164.312(a)(1)"]},
    fixer="azure.blob.private_access",
)
def container_not_public(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
    level = record.attributes.get("public_access")
    public = record.attributes.get("public")
    if public is None and "public_access" not in record.attributes:
        return None
    exposed = bool(public) or level is not None
    return verdict(not exposed, "private (no anonymous access)", f"anonymous access level {level!r}", public_access=level)
