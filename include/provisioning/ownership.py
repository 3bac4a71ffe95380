"""Who manages a resource: the ownership tags every provisioned resource carries, and how they are read.

Every resource an environment spec creates carries four tags (labels on Google Cloud, metadata on Azure
containers, a companion TXT record for Route 53 record sets, which take no tags)::

    managed-by: cloud-runbooks        # this project's provisioning
    runbooks-environment: <env>       # the spec (one spec per environment)
    owner: <owner>                    # the spec's owner
    cost-center: <cost center>        # the spec's cost center

Only a resource carrying ``managed-by: cloud-runbooks`` **and** ``runbooks-environment: <this spec>`` is
ever changed or deleted by that spec. A resource with the same name that lacks them is *unmanaged*, and one
tagged for another environment belongs to that spec: both are reported as a conflict, never adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MANAGED_BY_KEY = "managed-by"
MANAGED_BY = "cloud-runbooks"
ENVIRONMENT_KEY = "runbooks-environment"
OWNER_KEY = "owner"
COST_CENTER_KEY = "cost-center"
#: Keys a spec may not set itself (the runbook sets them).
RESERVED_KEYS = (MANAGED_BY_KEY, ENVIRONMENT_KEY, OWNER_KEY, COST_CENTER_KEY)

Status = Literal["managed", "unmanaged", "other"]


def ownership_tags(environment: str, owner: str, cost_center: str) -> dict[str, str]:
    """The four tags a resource of ``environment`` carries."""
    return {MANAGED_BY_KEY: MANAGED_BY, ENVIRONMENT_KEY: environment, OWNER_KEY: owner,
            COST_CENTER_KEY: cost_center}


@dataclass(frozen=True)
class Ownership:
    """What a live resource's tags say about who manages it."""

    status: Status
    environment: str | None = None  # the environment it is tagged for (status "managed" / "other")

    def describe(self) -> str:
        if self.status == "managed":
            return f"managed by environment {self.environment}"
        if self.status == "other":
            return f"managed by another environment ({self.environment})"
        return "not managed by cloud-runbooks (no managed-by tag)"


def ownership(tags: Mapping[str, str], environment: str) -> Ownership:
    """Read ``tags`` (with ``-`` / ``_`` read alike, as Azure metadata stores them) for ``environment``."""
    canon = {str(k).replace("_", "-").lower(): str(v) for k, v in tags.items()}
    if canon.get(MANAGED_BY_KEY) != MANAGED_BY:
        return Ownership("unmanaged")
    env = canon.get(ENVIRONMENT_KEY)
    return Ownership("managed" if env == environment else "other", env)
