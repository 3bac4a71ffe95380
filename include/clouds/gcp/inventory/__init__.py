"""Google Cloud inventory: one module per service (Cloud Storage buckets, Compute Engine instances).

Every lister talks to Google Cloud only through the Airflow google provider's hooks, built from the
target's connection id, and normalises what it finds into :class:`~include.records.ResourceRecord`
objects whose attributes follow ``docs/inventory-records.md``. The project is ``target.account``; resource
ids come from :mod:`include.clouds.gcp.ids`.

Errors propagate: the collector records them per (service, region).

Importing this package imports every service module in it (adding a service = adding one module); the
registry imports it lazily and no DAG file imports it at parse time. ``ComputeEngineHook`` costs about 3 s
to import, so only the compute lister imports it, inside the function.
"""

from __future__ import annotations

from include.clouds.gcp.inventory.common import probe
from include.inventory.registry import import_service_modules

__all__ = ["probe"]

import_service_modules(__name__, __path__)
