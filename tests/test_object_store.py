"""The object-store capability on all three emulators, through the providers' hooks."""

from __future__ import annotations

import hashlib
import os

import pytest

from include.capabilities import CapabilityError, capability
from include.capabilities.object_store import ObjectStore, hash_stream
from include.targets import load_targets, parse_targets

CLOUDS = ["aws", "gcp", "azure"]


def _make_container(cloud: str, name: str) -> None:
    target = load_targets().select(cloud=cloud)[0]
    if cloud == "aws":
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        S3Hook(aws_conn_id=target.conn_id).get_conn().create_bucket(Bucket=name)
    elif cloud == "gcp":
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        GCSHook(gcp_conn_id=target.conn_id).get_conn().create_bucket(name, project=target.account)
    else:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        WasbHook(wasb_conn_id=target.conn_id).blob_service_client.create_container(name)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_round_trip_with_checksums(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    target = load_targets().select(cloud=cloud)[0]
    store = capability("object_store", target)
    assert isinstance(store, ObjectStore)
    _make_container(cloud, "rb-objects")
    small = b"hello runbooks\n" * 100
    large = os.urandom(9 * 1024 * 1024 + 17)  # above one chunk: S3 goes multipart
    info_small = store.write("rb-objects", "a/small.txt", [small], metadata={"origin": "test"})
    info_large = store.write("rb-objects", "a/large.bin", (large[i : i + 1_000_000] for i in range(0, len(large), 1_000_000)))
    assert info_small.size == len(small) and info_small.md5 == hashlib.md5(small).hexdigest()
    assert info_large.size == len(large) and info_large.md5 == hashlib.md5(large).hexdigest()
    assert info_small.metadata.get("origin") == "test"
    listed = list(store.list_objects("rb-objects", prefix="a/"))
    assert [o.key for o in listed] == ["a/large.bin", "a/small.txt"]
    assert hash_stream(store.read("rb-objects", "a/large.bin", chunk_size=4 * 1024 * 1024)) == (
        hashlib.md5(large).hexdigest(), len(large),
    )
    store.delete("rb-objects", "a/small.txt")
    store.delete("rb-objects", "a/small.txt")  # already gone: no error
    with pytest.raises(KeyError):
        store.stat("rb-objects", "a/small.txt")


def test_unknown_capability_is_a_clear_error() -> None:
    target = parse_targets(
        "targets:\n  - {name: x, cloud: aws, conn_id: c, account: '1', regions: [r]}"
    ).targets[0]
    with pytest.raises(CapabilityError, match="no capability 'dns'"):
        capability("dns", target)
