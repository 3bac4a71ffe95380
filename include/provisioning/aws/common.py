"""What the AWS provisioning steps share: clients through the provider hooks, tags, error codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.clouds.aws.clients import client_for
from include.clouds.errors import error_code, http_status
from include.provisioning.base import ResourceStep
from include.provisioning.spec import SpecResource


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_dict(tags: Any) -> dict[str, str]:
    """``[{"Key": k, "Value": v}]`` -> ``{k: v}``, leaving out ``aws:`` system tags (nobody can set them)."""
    found: dict[str, str] = {}
    for tag in tags or []:
        key = str(tag.get("Key", ""))
        if key and not key.lower().startswith("aws:"):
            found[key] = str(tag.get("Value") or "")
    return found


def code_of(exc: BaseException) -> str:
    return error_code(exc)


def is_missing(exc: BaseException, *codes: str) -> bool:
    """The call says the resource does not exist (one of ``codes``, or HTTP 404)."""
    return error_code(exc) in codes or http_status(exc) == 404


class AwsStep(ResourceStep):
    """Clients from :func:`include.clouds.aws.clients.client_for`, one per (service, connection, region)."""

    def aws(self, res: SpecResource, service: str, region: str | None = None) -> Any:
        """One boto3 client per (service, connection, region) for the whole run: clients are thread-safe, and
        building one costs more CPU than most calls it makes."""
        conn_id = self.target_of(res).conn_id
        where = region or (res.region if res.region != "global" else self.target_of(res).regions[0])
        return self.session.memo(("aws-client", service, conn_id, where), lambda: client_for(conn_id, service, where))

    def tag_changes(self, current: Mapping[str, str], want: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """(tags to set, keys to remove) to turn ``current`` into ``want``."""
        to_set = {k: v for k, v in want.items() if current.get(k) != v}
        to_remove = sorted(k for k in current if k not in want)
        return to_set, to_remove
