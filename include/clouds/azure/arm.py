"""Azure Resource Manager REST calls through the Azure provider's connection and azure-core's ARM pipeline.

``azure-mgmt-dns`` and ``azure-mgmt-rdbms`` are not installed with the Azure provider, so the database-failover
and DNS implementations call the documented ARM REST API directly: the credential comes from the Airflow
connection exactly as the provider's hooks build it (a service principal from login / password / tenantId,
else the provider's ``get_sync_default_azure_credential`` for managed / workload identity), and requests go
through ``azure.mgmt.core.ARMPipelineClient`` (ARM bearer-token challenge policy, retries, request ids), the
pipeline every azure-mgmt SDK uses. Only the HTTP transport can be replaced (``transport_factory``), which
is what the contract tests do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from include.changes.waiting import poll_until

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
#: The HTTP transport of every ARM client (None: azure-core's default). Tests replace it.
transport_factory: Callable[[], Any] = lambda: None  # noqa: E731


def credential_for(conn_id: str) -> Any:
    """The connection's credential, built as the provider's ``AzureComputeHook.get_conn`` builds it."""
    from airflow.providers.microsoft.azure.hooks.base_azure import AzureBaseHook

    conn = AzureBaseHook(conn_id=conn_id).get_connection(conn_id)
    extra = conn.extra_dejson
    tenant = extra.get("tenantId")
    if conn.login and conn.password and tenant:
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(client_id=conn.login, client_secret=conn.password, tenant_id=tenant)
    from airflow.providers.microsoft.azure.utils import get_sync_default_azure_credential

    return get_sync_default_azure_credential(
        managed_identity_client_id=extra.get("managed_identity_client_id"),
        workload_identity_tenant_id=extra.get("workload_identity_tenant_id"),
    )


class ArmClient:
    """JSON in, JSON out, for one connection; errors are azure-core's ``HttpResponseError`` (status kept)."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id
        self._client: Any = None
        self._lock = threading.RLock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from azure.core.pipeline.policies import HeadersPolicy, RequestIdPolicy, RetryPolicy, UserAgentPolicy
                from azure.mgmt.core import ARMPipelineClient
                from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy

                policies = [RequestIdPolicy(), HeadersPolicy(), UserAgentPolicy("cloud-runbooks"),
                            RetryPolicy(retry_total=3),
                            ARMChallengeAuthenticationPolicy(credential_for(self.conn_id), ARM_SCOPE),
                            ARMHttpLoggingPolicy()]
                transport = transport_factory()
                kwargs: dict[str, Any] = {"transport": transport} if transport is not None else {}
                self._client = ARMPipelineClient(base_url=ARM_ENDPOINT, policies=policies, **kwargs)
            return self._client

    def call(self, method: str, path: str, api_version: str, *, body: Any = None,
             headers: Mapping[str, str] | None = None, query: Mapping[str, str] | None = None,
             ok: tuple[int, ...] = (200, 201, 202, 204)) -> tuple[int, Any, dict[str, str]]:
        """``(status, JSON body or None, headers)``; any other status raises ``HttpResponseError``."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.core.rest import HttpRequest

        url = path if path.startswith("https://") else f"{ARM_ENDPOINT}{path}"
        params = {"api-version": api_version, **dict(query or {})} if "api-version=" not in url else dict(query or {})
        request = HttpRequest(method, url, params=params, json=body, headers=dict(headers or {}))
        response = self.client.send_request(request)
        if response.status_code not in ok:
            error_class = ResourceNotFoundError if response.status_code == 404 else HttpResponseError
            raise error_class(response=response)
        text = response.text()
        import json

        return response.status_code, (json.loads(text) if text else None), dict(response.headers)

    def wait(self, headers: Mapping[str, str], *, timeout: float, interval: float, what: str) -> str:
        """Follow an accepted (202) operation's ``Azure-AsyncOperation`` URL until it ends (bounded)."""
        url = headers.get("Azure-AsyncOperation") or headers.get("azure-asyncoperation")
        if not url:
            return "Succeeded"

        def state() -> str:
            _, body, _ = self.call("GET", url, "", ok=(200,))
            return str((body or {}).get("status"))

        final = str(poll_until(state, lambda s: s in ("Succeeded", "Failed", "Canceled"), timeout=timeout,
                               interval=interval, what=what))
        if final != "Succeeded":
            raise RuntimeError(f"{what}: the operation ended {final}")
        return final
