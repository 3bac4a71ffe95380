"""Capabilities: one small interface per thing a runbook does, one implementation per cloud.

=================  ==========================================  ==========================================
capability         interface (``include/capabilities/*.py``)    implementations
=================  ==========================================  ==========================================
object_store       :class:`ObjectStore` (list/stat/read/write)  aws (S3Hook), gcp (GCSHook), azure (WasbHook)
snapshots          :class:`Snapshots` (tagged resources,        aws (EC2 / RDS / DynamoDB through the
                   create / copy / ours / delete / wait)       provider's hooks)
database_failover  :class:`DatabaseFailover` (status, promote,  aws (RDS), gcp (Cloud SQL), azure (PostgreSQL
                   create_replica, fence, retire)              flexible server through ARM REST)
dns                :class:`Dns` (read, switch, in_sync)        aws (Route 53), gcp (Cloud DNS), azure (ARM REST)
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
    from include.capabilities.snapshots import Snapshots

#: capability name -> cloud -> "module:factory" (imported lazily: cloud SDKs stay out of DAG parsing)
REGISTRY: dict[str, dict[str, str]] = {
    "object_store": {
        "aws": "include.clouds.aws.object_store:S3ObjectStore",
        "gcp": "include.clouds.gcp.object_store:GCSObjectStore",
        "azure": "include.clouds.azure.object_store:BlobObjectStore",
    },
    "snapshots": {
        "aws": "include.clouds.aws.snapshots:AwsSnapshots",
    },
    "database_failover": {
        "aws": "include.clouds.aws.database_failover:RdsFailover",
        "gcp": "include.clouds.gcp.database_failover:CloudSqlFailover",
        "azure": "include.clouds.azure.database_failover:FlexibleServerFailover",
    },
    "dns": {
        "aws": "include.clouds.aws.dns:Route53Dns",
        "gcp": "include.clouds.gcp.dns:CloudDns",
        "azure": "include.clouds.azure.dns:AzureDns",
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


def object_store_for(target: Target, **kwargs: Any) -> ObjectStore:
    """The object store of ``target`` (typed shortcut of ``capability("object_store", target)``; not named
    ``object_store``: the submodule of that name would shadow it once imported)."""
    store: ObjectStore = capability("object_store", target, **kwargs)
    return store


def snapshots_for(target: Target, **kwargs: Any) -> Snapshots:
    """The snapshots of ``target`` (typed shortcut of ``capability("snapshots", target)``).

    Not named ``snapshots``: importing the submodule ``include.capabilities.snapshots`` rebinds that package
    attribute to the module.
    """
    made: Snapshots = capability("snapshots", target, **kwargs)
    return made
