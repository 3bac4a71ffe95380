"""Capabilities: one small interface per thing a runbook does, one implementation per cloud.

=================  ==========================================  ==========================================
capability         interface (``include/capabilities/*.py``)    implementations
=================  ==========================================  ==========================================
object_store       :class:`ObjectStore` (list/stat/read/write)  aws (S3Hook), gcp (GCSHook), azure (WasbHook)
=================  ==========================================  ==========================================

Runbooks ask the registry for a capability of a target (``capability("object_store", target)``)
and never branch on the cloud themselves. Later capabilities (snapshots, database failover, DNS)
are added the same way: a Protocol here, an implementation in ``include/clouds/<cloud>/``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from include.targets import Target

if TYPE_CHECKING:
    from include.capabilities.object_store import ObjectStore

#: capability name -> cloud -> "module:factory" (imported lazily: cloud SDKs stay out of DAG parsing)
REGISTRY: dict[str, dict[str, str]] = {
    "object_store": {
        "aws": "include.clouds.aws.object_store:S3ObjectStore",
        "gcp": "include.clouds.gcp.object_store:GCSObjectStore",
        "azure": "include.clouds.azure.object_store:BlobObjectStore",
    },
}


class CapabilityError(LookupError):
    """The requested capability does not exist for that cloud."""


def capability(name: str, target: Target, **kwargs: Any) -> Any:
    """Build the ``name`` capability for ``target`` (e.g. an ObjectStore bound to its connection)."""
    try:
        path = REGISTRY[name][target.cloud]
    except KeyError:
        known = ", ".join(f"{n}({', '.join(sorted(c))})" for n, c in sorted(REGISTRY.items()))
        raise CapabilityError(f"no capability {name!r} for cloud {target.cloud!r}; known: {known}") from None
    module_name, factory = path.split(":")
    return getattr(importlib.import_module(module_name), factory)(target, **kwargs)


def object_store(target: Target, **kwargs: Any) -> ObjectStore:
    """The object store of ``target`` (typed shortcut of ``capability("object_store", target)``)."""
    store: ObjectStore = capability("object_store", target, **kwargs)
    return store
