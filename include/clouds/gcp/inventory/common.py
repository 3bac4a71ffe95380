"""Plumbing shared by the Google Cloud listers: the connection probe."""

from __future__ import annotations

from airflow.providers.google.cloud.hooks.gcs import GCSHook
from google.api_core.retry import Retry

from include.targets import Target

#: The probe fails fast: an unreachable endpoint is reported within about this many seconds instead of
#: the client's default two-minute retry window. Airflow task retries cover transient blips.
PROBE_RETRY_SECONDS = 5.0
#: (connect, read) timeouts of the probe request.
PROBE_TIMEOUT = (5.0, 30.0)


def probe(target: Target) -> None:
    """Raise if ``target``'s connection cannot reach Cloud Storage or is refused (list one bucket)."""
    client = GCSHook(gcp_conn_id=target.conn_id).get_conn()
    retry = Retry(initial=0.5, maximum=2.0, multiplier=2.0, timeout=PROBE_RETRY_SECONDS)
    pages = client.list_buckets(max_results=1, project=target.account, timeout=PROBE_TIMEOUT, retry=retry).pages
    next(iter(pages), None)
