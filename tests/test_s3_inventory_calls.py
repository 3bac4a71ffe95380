"""The S3 lister asks no question whose answer another answer already implies (moto server, provider hooks).

Object Lock implies versioning (S3 enables versioning with the lock and refuses to suspend it), so an
unversioned bucket's lock configuration is not requested; a locked bucket is still reported as locked.
Requests are counted with a botocore ``before-call`` handler on the clients the lister itself creates.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from include.clouds.aws import clients
from include.clouds.aws.inventory import s3
from include.inventory.registry import GLOBAL, ListContext
from include.targets import Target, load_targets
from localdev import emulators as emulators_mod


@pytest.fixture
def aws_target(clean_clouds: emulators_mod.Emulators) -> Target:
    return load_targets().get("aws-prod")


@pytest.fixture
def calls(aws_target: Target, monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Operation name -> requests made by the S3 lister's clients during the test."""
    counted: Counter[str] = Counter()
    real = clients.client_for
    handled: list[Any] = []  # the (shared) clients the counter is registered on, once each

    def count(model: Any, **_: Any) -> None:
        counted.update([model.name])

    def counting(target: Any, service: str, region: str | None = None) -> Any:
        client = real(target, service, region)
        client.meta.events.register("before-call.s3", count, unique_id="test-s3-inventory-calls")
        handled.append(client)
        return client

    monkeypatch.setattr(s3, "client_for", counting)
    yield counted
    for client in handled:
        client.meta.events.unregister("before-call.s3", unique_id="test-s3-inventory-calls")


def test_lock_configuration_is_asked_only_of_versioned_buckets(aws_target: Target, calls: Counter[str]) -> None:
    admin = clients.client_for(aws_target, "s3", "us-east-1")
    admin.create_bucket(Bucket="rb-calls-plain")
    admin.create_bucket(Bucket="rb-calls-versioned")
    admin.put_bucket_versioning(Bucket="rb-calls-versioned", VersioningConfiguration={"Status": "Enabled"})
    admin.create_bucket(Bucket="rb-calls-locked", ObjectLockEnabledForBucket=True)

    records = {r.name: r.attributes for r in s3.list_s3(ListContext(target=aws_target, region=GLOBAL))}

    assert {name: (a["versioning"], a["object_lock"]) for name, a in records.items()} == {
        "rb-calls-plain": (False, False),
        "rb-calls-versioned": (True, False),
        "rb-calls-locked": (True, True),
    }
    assert calls["GetObjectLockConfiguration"] == 2, calls  # the two versioned buckets, not the plain one
    assert calls["GetBucketVersioning"] == 3
    # One ListBuckets for all; per bucket: one question per remaining fact (moto's ListBuckets carries no
    # BucketRegion, so each bucket's location is asked for).
    assert calls["ListBuckets"] == 1 and calls["GetBucketLocation"] == 3


def test_listing_timestamps_are_parsed_without_dateutil(aws_target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """client_for's clients parse a listing's timestamps with clients.parse_timestamp: the same instants as
    botocore's own parser, without its dateutil call per object (most of the CPU of a long listing)."""
    from datetime import UTC, datetime

    import dateutil.parser
    from botocore.utils import parse_timestamp as botocore_parse

    for value in ("2026-11-30T16:24:03.000Z", "2026-11-30T16:24:03.250+02:00", "2026-11-30T16:24:03Z",
                  "Mon, 30 Nov 2026 16:24:03 GMT", 1796050000, "1796050000", "2026-11-30T16:24:03"):
        assert clients.parse_timestamp(value) == botocore_parse(value), value
    with pytest.raises(ValueError):
        clients.parse_timestamp("not a time")

    s3_client = clients.client_for(aws_target, "s3")
    s3_client.create_bucket(Bucket="rb-timestamps")
    for n in range(3):
        s3_client.put_object(Bucket="rb-timestamps", Key=f"k{n}", Body=b"x")
    real, parsed = dateutil.parser.parse, []
    monkeypatch.setattr(dateutil.parser, "parse", lambda *a, **k: parsed.append(a) or real(*a, **k))
    listed = s3_client.list_objects_v2(Bucket="rb-timestamps")["Contents"]
    assert len(listed) == 3 and parsed == [], "no dateutil call for the listing's LastModified"
    for entry in listed:
        assert entry["LastModified"].tzinfo is not None
        assert abs((datetime.now(UTC) - entry["LastModified"]).total_seconds()) < 600
    head = s3_client.head_object(Bucket="rb-timestamps", Key="k0")  # an RFC 822 header: botocore's parser
    assert head["LastModified"] == listed[0]["LastModified"].replace(microsecond=0) and parsed


def test_clients_are_shared_per_connection_service_and_region(aws_target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """client_for builds one client per (connection, service, region) and process, through one session per
    connection; ``shared=False`` gives a caller its own client (and pool); a changed connection gets new ones; the
    connection's region is read from the connection, not from a throw-away client built to ask it."""
    import json

    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    first = clients.client_for(aws_target, "s3", "us-east-1")
    assert clients.client_for(aws_target.conn_id, "s3", "us-east-1") is first
    assert clients.client_for(aws_target, "s3", "eu-west-1") is not first
    assert clients.client_for(aws_target, "ec2", "us-east-1") is not first
    own = clients.client_for(aws_target, "s3", "us-east-1", shared=False)
    assert own is not first and own.meta.region_name == "us-east-1"
    assert clients.client_for(aws_target, "s3", "us-east-1") is first  # an own client is never handed out

    # region None: the connection's region, with no client built by the hook (hook.conn_region_name builds one)
    built: list[str] = []
    real_client_type = AwsGenericHook.get_client_type
    monkeypatch.setattr(AwsGenericHook, "get_client_type",
                        lambda self, *a, **k: built.append(self.client_type) or real_client_type(self, *a, **k))
    default = clients.client_for(aws_target, "sts")
    conn = json.loads(os.environ[f"AIRFLOW_CONN_{aws_target.conn_id.upper()}"])
    assert default.meta.region_name == conn["extra"]["region_name"] and built == []
    assert clients.client_for(aws_target, "sts", conn["extra"]["region_name"]) is default

    # the connection changes (another botocore config): new session, new clients, and the old ones are let go
    moved = {**conn, "extra": {**conn["extra"], "config_kwargs": {"retries": {"max_attempts": 2}}}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{aws_target.conn_id.upper()}", json.dumps(moved))
    from botocore.loaders import JSONFileLoader

    loaded: list[str] = []
    real_load = JSONFileLoader.load_file
    monkeypatch.setattr(JSONFileLoader, "load_file", lambda self, path: loaded.append(path) or real_load(self, path))
    again = clients.client_for(aws_target, "s3", "us-east-1")
    assert again is not first and again.list_buckets()["Buckets"] == []
    assert not [path for path in loaded if "/s3/" in path], loaded  # the new session reads S3's model from the cache
    assert all(key[0] != aws_target.conn_id or key[1] == _fingerprint(aws_target) for key in clients._SESSIONS)
    assert all(key[0] != aws_target.conn_id or key[1] == _fingerprint(aws_target) for key in clients._CLIENTS)


def _fingerprint(target: Target) -> str:
    return clients._connection_fingerprint(clients.hook_for(target.conn_id, "s3", None))
