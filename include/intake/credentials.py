"""The intake's secrets, only from Airflow connections (one per source), cached briefly.

=============  ================================  ====================================================
source         connection id                     password
=============  ================================  ====================================================
alertmanager   ``runbooks_intake_alertmanager``  the bearer token(s) Alertmanager sends
pagerduty      ``runbooks_intake_pagerduty``     the webhook subscription's signing secret(s)
generic        ``runbooks_intake_generic``       the shared HMAC secret(s)
=============  ================================  ====================================================

Several secrets (comma, space or newline separated) are all accepted: rotate by adding the new one,
switching the sender, then removing the old one. Connections come from wherever Airflow finds them
(``AIRFLOW_CONN_*``, a secrets backend, the metadata database); a lookup is cached for
:data:`CACHE_SECONDS`, so a rotation takes effect within that time. Secrets are never logged; a
problem with a connection is logged by connection id only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from include.intake.events import Source
from include.intake.signatures import Secrets, parse_secrets

CONN_IDS: dict[Source, str] = {
    "alertmanager": "runbooks_intake_alertmanager",
    "pagerduty": "runbooks_intake_pagerduty",
    "generic": "runbooks_intake_generic",
}
CACHE_SECONDS = 30.0
log = logging.getLogger("runbooks.intake")


def airflow_password(conn_id: str) -> str | None:
    """The password of an Airflow connection; None when the connection is not defined."""
    from airflow.models.connection import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException  # what airflow.exceptions re-exports

    try:
        password = Connection.get_connection_from_secrets(conn_id).password
    except AirflowNotFoundException:
        return None
    return None if password is None else str(password)


class SecretStore:
    """Per-source secrets from connections, each lookup cached for ``ttl`` seconds."""

    def __init__(self, lookup: Callable[[str], str | None] = airflow_password, ttl: float = CACHE_SECONDS) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[Source, tuple[float, Secrets]] = {}

    def get(self, source: Source) -> Secrets:
        """The usable secrets of ``source`` (empty, with the problem, when its connection is missing)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(source)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        conn_id = CONN_IDS[source]
        password = self._lookup(conn_id)
        if password is None:
            secrets = Secrets((), ("the connection is not defined",))
        else:
            secrets = parse_secrets(password)
        for problem in secrets.problems:
            log.warning("intake: connection %s: %s", conn_id, problem)
        with self._lock:
            self._cache[source] = (now, secrets)
        return secrets
