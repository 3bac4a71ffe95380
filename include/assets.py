"""Airflow Assets the runbooks produce and consume (one place, so producers and consumers agree)."""

from __future__ import annotations

from airflow.sdk import Asset

#: A fresh multi-cloud inventory has been published (see include/inventory/store.py for the layout).
#: Downstream runbooks (compliance, drift, cost) schedule on it.
ESTATE_INVENTORY = Asset(name="estate_inventory", uri="file:///runbooks/inventory/latest")
