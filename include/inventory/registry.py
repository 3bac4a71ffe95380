"""Registry of inventory listers: one small function per (cloud, service).

A lister takes a :class:`ListContext` (target + region) and yields :class:`ResourceRecord` objects.
It talks to the cloud only through the Airflow provider's hooks, built from ``ctx.target.conn_id``.
Listers declare the read permissions they need so a least-privilege policy can be generated.

Each cloud's listers live in the package ``include/clouds/<cloud>/inventory/``, one module per service.
Adding a service means adding one module there with one decorated function: the package imports every
module it holds (:func:`import_service_modules`), so nothing else has to name it.

Service names follow the record contract: a lister for ``gcp.storage.bucket`` is the ``storage`` lister
(:func:`include.records.service_of`); :func:`lister` refuses a resource type of another service.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from include.records import ResourceRecord, service_of
from include.targets import Target

#: Region value for listers of global services (IAM, Route 53, S3 bucket list, Cloud Storage, Blob Storage).
GLOBAL = "global"


@dataclass(frozen=True)
class ListContext:
    """What a lister needs: the target, the region it is asked for, and a record factory."""

    target: Target
    region: str

    def record(
        self,
        *,
        resource_type: str,
        resource_id: str,
        name: str,
        service: str | None = None,
        region: str | None = None,
        tags: dict[str, str] | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> ResourceRecord:
        """A record of this target; ``service`` is the resource type's middle part (given or not)."""
        derived = service_of(resource_type)
        if service is not None and service != derived:
            raise ValueError(f"service {service!r} does not match resource type {resource_type!r}")
        return ResourceRecord(
            cloud=self.target.cloud,
            target=self.target.name,
            account=self.target.account,
            region=region or self.region,
            service=derived,
            resource_type=resource_type,
            resource_id=resource_id,
            name=name,
            tags=tags or {},
            attributes=attributes or {},
        )


ListerFunc = Callable[[ListContext], Iterable[ResourceRecord]]


@dataclass(frozen=True)
class Lister:
    """One registered lister: which cloud and service, what it produces, what it may call."""

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

#: Packages that register listers when imported; imported lazily so DAG parsing stays SDK-free.
_CLOUD_MODULES = {
    "aws": "include.clouds.aws.inventory",
    "gcp": "include.clouds.gcp.inventory",
    "azure": "include.clouds.azure.inventory",
}


def import_service_modules(package: str, path: Iterable[str]) -> None:
    """Import every public module of a cloud's inventory package (each registers its listers).

    Called by ``include/clouds/<cloud>/inventory/__init__.py`` with its ``__name__`` and ``__path__``;
    modules whose name starts with ``_`` are left to be imported by whoever needs them.
    """
    for module in sorted(pkgutil.iter_modules(list(path)), key=lambda info: info.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


def _check_resource_types(cloud: str, service: str, resource_types: Sequence[str]) -> None:
    if not resource_types:
        raise ValueError(f"lister {cloud}.{service} declares no resource type")
    for resource_type in resource_types:
        if service_of(resource_type) != service or not resource_type.startswith(f"{cloud}."):
            raise ValueError(
                f"lister {cloud}.{service}: resource type {resource_type!r} is not {cloud}.{service}.<kind>"
            )


def lister(
    cloud: str,
    service: str,
    resource_types: Iterable[str],
    *,
    regional: bool = True,
    permissions: Iterable[str] = (),
) -> Callable[[ListerFunc], ListerFunc]:
    """Register ``func`` as the lister for ``cloud``/``service``.

    Every resource type must be ``<cloud>.<service>.<kind>`` of this very cloud and service.
    """
    types = tuple(resource_types)
    _check_resource_types(cloud, service, types)

    def decorate(func: ListerFunc) -> ListerFunc:
        entry = Lister(cloud, service, types, regional, func, tuple(permissions))
        if entry.id in _LISTERS and _LISTERS[entry.id].func is not func:
            raise ValueError(f"lister {entry.id} registered twice")
        _LISTERS[entry.id] = entry
        return func

    return decorate


def cloud_package(cloud: str) -> ModuleType:
    """The imported inventory package of ``cloud`` (its listers registered; it also defines ``probe``)."""
    if cloud not in _CLOUD_MODULES:
        raise ValueError(f"unknown cloud {cloud!r}; known clouds: {', '.join(_CLOUD_MODULES)}")
    return importlib.import_module(_CLOUD_MODULES[cloud])


def _registered(cloud: str) -> list[Lister]:
    """Every lister of ``cloud`` (importing its package first), by service name."""
    cloud_package(cloud)
    return sorted((entry for entry in _LISTERS.values() if entry.cloud == cloud), key=lambda entry: entry.service)


def known_services(cloud: str) -> tuple[str, ...]:
    """The service names ``cloud`` has listers for, sorted (``("compute", "storage")`` for gcp)."""
    return tuple(entry.service for entry in _registered(cloud))


def validate_services(services: Iterable[str], clouds: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Check requested service names against the listers of ``clouds``; return, per cloud, those it has.

    ``clouds`` are the clouds of the selected targets. A service is valid when at least one of them has a
    lister of that name (``s3`` concerns AWS targets only; ``storage`` concerns both GCP and Azure). The
    result maps every cloud to the requested services it has, in request order; a cloud may get ``()``:
    none of the request concerns it, so its targets list nothing (never "everything").

    Raises ``ValueError: unknown services: foo; known: aws: cloudtrail, ...; gcp: compute, storage`` when
    a requested service belongs to none of ``clouds``, before any cloud is called.
    """
    wanted = list(dict.fromkeys(services))
    known = {cloud: known_services(cloud) for cloud in dict.fromkeys(clouds)}
    unknown = [name for name in wanted if not any(name in names for names in known.values())]
    if unknown:
        allowed = "; ".join(f"{cloud}: {', '.join(names)}" for cloud, names in known.items()) or "no cloud selected"
        raise ValueError(f"unknown services: {', '.join(unknown)}; known: {allowed}")
    return {cloud: tuple(name for name in wanted if name in names) for cloud, names in known.items()}


def listers_for(cloud: str, services: Iterable[str] | None = None) -> list[Lister]:
    """The listers of one cloud (importing its package), by service name.

    ``services=None``: all of them. Otherwise exactly the named ones (an empty list gives none); a name
    the cloud has no lister for raises ``ValueError`` listing the known ones.
    """
    found = _registered(cloud)
    if services is None:
        return found
    wanted = validate_services(services, [cloud])[cloud]
    return [entry for entry in found if entry.service in wanted]
