"""Azure inventory: one module per service (Blob Storage containers, virtual machines).

Every lister talks to Azure only through the Airflow microsoft-azure provider's hooks, built from the
target's connection id, and normalises what it finds into :class:`~include.records.ResourceRecord` objects
whose attributes follow ``docs/inventory-records.md``. Resource ids come from :mod:`include.clouds.azure.ids`.

- Containers (``storage``): ``WasbHook(wasb_conn_id=target.conn_id)``; the storage account is
  ``target.storage_account`` and resource ids use its public endpoint
  (``https://<account>.blob.core.windows.net/<container>``) even when the connection points at an
  emulator, so ids are stable across environments.
- Virtual machines (``compute``): ``AzureComputeHook(azure_conn_id=target.conn_id)``. That hook reads a
  service principal from the same connection: ``login`` (client id), ``password`` (secret) and the extras
  ``tenantId`` and ``subscriptionId`` (the ``wasb`` hook reads ``tenant_id``; a connection used for both
  carries both spellings).

Errors propagate: the collector records them per (service, region).

Importing this package imports every service module in it (adding a service = adding one module); the
registry imports it lazily and no DAG file imports it at parse time.
"""

from __future__ import annotations

from include.clouds.azure.inventory.common import probe
from include.inventory.registry import import_service_modules

__all__ = ["probe"]

import_service_modules(__name__, __path__)
