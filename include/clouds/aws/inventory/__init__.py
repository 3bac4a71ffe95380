"""AWS inventory: one module per service, each registering its lister with :mod:`include.inventory.registry`.

Every lister talks to AWS only through the Airflow amazon provider hooks (clients from
:func:`include.clouds.aws.clients.client_for`), built from the target's connection id and the region asked
for, and normalises what it finds into :class:`~include.records.ResourceRecord` objects whose attributes
follow ``docs/inventory-records.md``. Resource ids come from :mod:`include.clouds.aws.ids`.

Errors propagate: the collector records them per (service, region). The only errors handled here are
the documented "this is not configured" answers of per-resource detail calls (a bucket without a
policy, a user without a console password...), which are facts, not failures.

Importing this package imports every service module in it (adding a service = adding one module). The
modules import boto3 / the provider at module top: the registry imports this package lazily, and no DAG
file imports it at parse time.
"""

from __future__ import annotations

from include.clouds.aws.inventory.common import probe
from include.inventory.registry import import_service_modules

__all__ = ["probe"]

import_service_modules(__name__, __path__)
