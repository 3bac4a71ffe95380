"""The one way this project builds AWS clients: from the Amazon provider's hooks, one session per connection.

``client_for(conn_id, service, region)`` returns a boto3 client with the same endpoint, botocore config
(``config_kwargs``), TLS verification and credentials (including an assumed role) as the provider hook's
``hook.conn``. ``hook.conn`` builds a fresh session per client, and each fresh session parses the service
model again (~0.2-0.8 s CPU for EC2): sharing one hook-made session per connection cuts a whole-estate
seed or inventory from ~4 s to ~1 s of client-side CPU. Sessions are not thread-safe, clients are:
clients are created under the lock and shared freely.

Clients are shared too: one per (connection, service, region) and process. A client of a warm session still
costs 3-18 ms of CPU to build (EC2's and RDS's most), and a step that reads, writes and verifies asked for
one each time. Whoever registers an event handler on a shared client gives it a ``unique_id`` (it stays
registered for every user of that client); a caller that drives many threads through its own connection pool
(an object store's copier) asks for a client of its own (``shared=False``). A changed connection (another
endpoint, rotated keys) gets a new session and new clients; those of the old one are dropped. All sessions read
the service models through one botocore loader, so a new session does not parse them again.

The provider is imported inside the functions, so importing this module stays free of boto3.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any, Protocol

from include.clouds.errors import name_denied_permission, remember_version

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

class HasConnId(Protocol):
    """Anything naming an Airflow connection (a :class:`~include.targets.Target`)."""

    @property
    def conn_id(self) -> str: ...


_SESSIONS: dict[tuple[str, str], Any] = {}  # (connection id, its fingerprint) -> boto3 session
_CLIENTS: dict[tuple[str, str, str, str | None], Any] = {}  # (connection id, fingerprint, service, region) -> client
_SESSIONS_LOCK = threading.Lock()
_LOADERS: dict[str | None, Any] = {}  # botocore data path -> its one Loader (used under _SESSIONS_LOCK)


def parse_timestamp(value: Any) -> Any:
    """botocore's timestamp parser, minus dateutil for the ISO 8601 form that listings carry.

    botocore parses every timestamp of a response (an S3 listing's ``LastModified``, one per object) with
    ``dateutil``: ~50 us each here, most of the client-side CPU of listing 10,000 unchanged objects.
    ``datetime.fromisoformat`` reads the same strings to the same instant (UTC-aware) in ~0.1 us; anything
    else (epoch numbers, RFC 822 headers, a string without a zone) goes to botocore's own parser.
    """
    from datetime import datetime

    from botocore.utils import parse_timestamp as botocore_parse

    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return botocore_parse(value)
        if parsed.tzinfo is not None:
            return parsed
    return botocore_parse(value)


def partition(region: str) -> str:
    """The ARN partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def hook_for(conn_id: str, service: str, region: str | None) -> AwsGenericHook[Any]:
    """The provider hook the runbooks use for ``service`` (S3Hook, EC2Hook, RdsHook, else AwsBaseHook)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    if service == "s3":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=conn_id, region_name=region)
    if service == "ec2":
        from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook

        return EC2Hook(api_type="client_type", aws_conn_id=conn_id, region_name=region)
    if service == "rds":
        from airflow.providers.amazon.aws.hooks.rds import RdsHook

        return RdsHook(aws_conn_id=conn_id, region_name=region)
    return AwsBaseHook(aws_conn_id=conn_id, client_type=service, region_name=region)


def _loader(botocore_session: Any) -> Any:
    """The process's botocore data loader for the session's data path (``AWS_DATA_PATH``), created once."""
    from botocore.loaders import create_loader

    search_paths = botocore_session.get_config_variable("data_path")
    loader = _LOADERS.get(search_paths)
    if loader is None:
        loader = _LOADERS[search_paths] = create_loader(search_paths)
    return loader


def _connection_fingerprint(hook: AwsGenericHook[Any]) -> str:
    """Digest of the Airflow connection behind ``hook`` (a changed connection gets a new session)."""
    wrapper = hook.conn_config
    fields = (
        wrapper.conn_type,
        wrapper.login,
        wrapper.password,
        wrapper.schema,
        json.dumps(wrapper.extra_config, sort_keys=True, default=str),
    )
    return hashlib.sha256(repr(fields).encode()).hexdigest()


def client_for(target: HasConnId | str, service: str, region: str | None = None, *, shared: bool = True) -> Any:
    """A boto3 client for ``service`` in ``region`` (None: the connection's region) through the provider hook.

    ``target`` is a target (its ``conn_id`` is used) or a connection id. ``shared``: the process's one client for
    this connection, service and region (see the module's docstring); False: a new client of the shared session.
    """
    conn_id = target if isinstance(target, str) else target.conn_id
    hook = hook_for(conn_id, service, region)
    key = (conn_id, _connection_fingerprint(hook))
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            for stale in [old for old in _SESSIONS if old[0] == conn_id]:  # the connection changed
                del _SESSIONS[stale]
            for stale_client in [old for old in _CLIENTS if old[0] == conn_id]:
                del _CLIENTS[stale_client]
            session = _SESSIONS[key] = hook.get_session(region_name=region or hook.region_name)
            # Every session reads the service models through one loader: a new session (another connection, or
            # rotated keys) parsed them again (EC2's alone: ~0.2-0.8 s of CPU and ~10^6 objects for the garbage
            # collector). botocore already shares a session's loaded models between its clients, read-only.
            session._session.register_component("data_loader", _loader(session._session))
            # An access-denied error names the IAM permission the call needs (S3 says only "Access Denied").
            session.events.register("after-call", name_denied_permission, unique_id="runbooks-denied-permission")
            session.events.register("before-parameter-build.s3", remember_version, unique_id="runbooks-s3-version")
            # botocore's public parser defaults, on this session's factory (boto3 keeps the botocore session in
            # ``_session``): every client of the session parses timestamps with parse_timestamp above.
            session._session.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=parse_timestamp)
        # The connection's region, else the session's default (AWS_DEFAULT_REGION, the AWS config file): what
        # ``hook.conn_region_name`` answers, without the throw-away session and client it builds to answer it.
        region_name = region or hook.region_name or session.region_name
        client_key = (conn_id, key[1], hook.service_name, region_name)
        client = _CLIENTS.get(client_key) if shared else None
        if client is None:
            client = session.client(
                service_name=hook.service_name,
                region_name=region_name,
                endpoint_url=hook.conn_config.get_service_endpoint_url(service_name=hook.service_name),
                config=hook.config,
                verify=hook.verify,
            )
            if shared:
                _CLIENTS[client_key] = client
        return client
