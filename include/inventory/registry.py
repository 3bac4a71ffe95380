"""Registry of inventory listers: one small function per (cloud, service).

A lister takes a :class:`ListContext` (target + region) and yields :class:`ResourceRecord` objects.
It talks to the cloud only through the Airflow provider's hooks, built from ``ctx.target.conn_id``.
Listers declare the read permissions they need so a least-privilege policy can be generated.

Adding a service means writing one decorated function in ``include/clouds/<cloud>/inventory.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from include.records import ResourceRecord
from include.targets import Target

#: Region value for listers of global services (IAM, Route 53, S3 bucket list, GCS, Azure blob).
GLOBAL = "global"


@dataclass(frozen=True)
class ListContext:
    """What a lister needs: the target, the region it is asked for, and a record factory."""

    target: Target
    region: str

    def record(
        self,
        *,
        service: str,
        resource_type: str,
        resource_id: str,
        name: str,
        region: str | None = None,
        tags: dict[str, str] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        return ResourceRecord(
            cloud=self.target.cloud,
            target=self.target.name,
            account=self.target.account,
            region=region or self.region,
            service=service,
            resource_type=resource_type,
            resource_id=resource_id,
            name=name,
            tags=tags or {},
            attributes=attributes or {},
        )


ListerFunc = Callable[[ListContext], Iterable[ResourceRecord]]


@dataclass(frozen=True)
class Lister:
    cloud: str
    service: str
    resource_types: tuple[str, ...]
    regional: bool
    func: ListerFunc
    permissions: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.cloud}.{self.service}"


_LISTERS: dict[str, Lister] = {}

#: Modules that register listers when imported; imported lazily so DAG parsing stays SDK-free.
_CLOUD_MODULES = {
    "aws": "include.clouds.aws.inventory",
    "gcp": "include.clouds.gcp.inventory",
    "azure": "include.clouds.azure.inventory",
}


def lister(
    cloud: str,
    service: str,
    resource_types: Iterable[str],
    *,
    regional: bool = True,
    permissions: Iterable[str] = (),
) -> Callable[[ListerFunc], ListerFunc]:
    """Register ``func`` as the lister for ``cloud``/``service``."""

    def decorate(func: ListerFunc) -> ListerFunc:
        entry = Lister(cloud, service, tuple(resource_types), regional, func, tuple(permissions))
        if entry.id in _LISTERS and _LISTERS[entry.id].func is not func:
            raise ValueError(f"lister {entry.id} registered twice")
        _LISTERS[entry.id] = entry
        return func

    return decorate


def listers_for(cloud: str, services: Iterable[str] | None = None) -> list[Lister]:
    """All listers of one cloud (importing its module), optionally only some services."""
    if cloud not in _CLOUD_MODULES:
        raise ValueError(f"unknown cloud {cloud!r}")
    importlib.import_module(_CLOUD_MODULES[cloud])
    wanted = set(services) if services else None
    found = [entry for entry in _LISTERS.values() if entry.cloud == cloud]
    if wanted is not None:
        unknown = wanted - {entry.service for entry in found}
        if unknown:
            raise ValueError(f"unknown {cloud} services: {', '.join(sorted(unknown))}")
        found = [entry for entry in found if entry.service in wanted]
    return sorted(found, key=lambda entry: entry.service)


def all_listers() -> list[Lister]:
    return [entry for cloud in _CLOUD_MODULES for entry in listers_for(cloud)]
