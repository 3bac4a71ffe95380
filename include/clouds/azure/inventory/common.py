"""Plumbing shared by the Azure listers: the connection probe."""

from __future__ import annotations

from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

from include.targets import Target

#: The probe makes one attempt (no SDK retries: Azure Storage's default back-off waits 15 s, 18 s, 24 s...),
#: so an unreachable account is reported in seconds. Airflow task retries cover transient blips.
PROBE_CONNECT_TIMEOUT = 10
PROBE_READ_TIMEOUT = 30


def probe(target: Target) -> None:
    """Raise if ``target``'s storage account cannot be reached or refuses the credentials."""
    client = WasbHook(wasb_conn_id=target.conn_id).get_conn()
    pages = client.list_containers(
        results_per_page=1,
        retry_total=0,
        connection_timeout=PROBE_CONNECT_TIMEOUT,
        read_timeout=PROBE_READ_TIMEOUT,
    ).by_page()
    next(iter(pages), None)
