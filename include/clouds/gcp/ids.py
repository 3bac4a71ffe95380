"""Google Cloud resource ids (full resource names): built and read back in one place."""

from __future__ import annotations

import re

_BUCKET_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
_INSTANCE = re.compile(r"^//compute\.googleapis\.com/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$")


class ResourceNameError(ValueError):
    """A string is not the kind of Google Cloud resource name asked for."""


def bucket_resource_id(name: str) -> str:
    """The full resource name of a Cloud Storage bucket."""
    return f"{_BUCKET_PREFIX}{name}"


def bucket_name(resource_id: str) -> str:
    if not resource_id.startswith(_BUCKET_PREFIX) or "/" in resource_id[len(_BUCKET_PREFIX):]:
        raise ResourceNameError(f"not a Cloud Storage bucket id: {resource_id!r}")
    return resource_id[len(_BUCKET_PREFIX):]


def instance_resource_id(project: str, zone: str, name: str) -> str:
    """The full resource name of a Compute Engine instance."""
    return f"//compute.googleapis.com/projects/{project}/zones/{zone}/instances/{name}"


def instance_parts(resource_id: str) -> tuple[str, str, str]:
    """(project, zone, name) of a Compute Engine instance id."""
    match = _INSTANCE.match(resource_id)
    if not match:
        raise ResourceNameError(f"not a Compute Engine instance id: {resource_id!r}")
    return match.group(1), match.group(2), match.group(3)
