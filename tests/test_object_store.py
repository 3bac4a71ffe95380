"""The object-store capability on all three emulators, through the providers' hooks."""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from include.capabilities import CapabilityError, capability
from include.capabilities._spool import KnownChunks
from include.capabilities.object_store import (
    CHUNK_SIZE,
    ObjectChangedError,
    ObjectInfo,
    ObjectStore,
    hash_stream,
    pinned_info,
)
from include.clouds.aws.clients import client_for
from include.targets import Target, load_targets, parse_targets

CLOUDS = ["aws", "gcp", "azure"]
KIB = 1024
MIB = 1024 * 1024


def _target(cloud: str) -> Target:
    return load_targets().select(cloud=cloud)[0]


def _store(cloud: str) -> ObjectStore:
    store = capability("object_store", _target(cloud))
    assert isinstance(store, ObjectStore)
    return store


def _make_container(cloud: str, name: str, *, versioned: bool = False) -> None:
    target = _target(cloud)
    if cloud == "aws":
        client = client_for(target, "s3")
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    elif cloud == "gcp":
        from airflow.providers.google.cloud.hooks.gcs import GCSHook

        GCSHook(gcp_conn_id=target.conn_id).get_conn().create_bucket(name, project=target.account)
    else:
        from airflow.providers.microsoft.azure.hooks.wasb import WasbHook

        WasbHook(wasb_conn_id=target.conn_id).blob_service_client.create_container(name)


def _random_chunks(size: int, piece: int = MIB, seed: bytes = b"") -> Iterator[bytes]:
    """``size`` bytes in ``piece``-sized chunks, each piece different, generated on the fly (never held whole)."""
    counter = 0
    produced = 0
    while produced < size:
        block = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest() * (piece // 32 + 1)
        block = block[: min(piece, size - produced)]
        produced += len(block)
        counter += 1
        yield block


def _crc32c_hex(data: bytes) -> str:
    import google_crc32c

    return f"{google_crc32c.value(data):08x}"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_round_trip_with_checksums(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    store = _store(cloud)
    _make_container(cloud, "rb-objects")
    small = b"hello runbooks\n" * 100
    large = os.urandom(CHUNK_SIZE + MIB + 17)  # above one chunk: S3 multipart, GCS resumable, Azure blocks
    info_small = store.write("rb-objects", "a/small.txt", [small], metadata={"origin": "test"})
    info_large = store.write("rb-objects", "a/large.bin", (large[i : i + 1_000_000] for i in range(0, len(large), 1_000_000)))
    assert info_small.size == len(small) and info_small.md5 == hashlib.md5(small).hexdigest()
    assert info_large.size == len(large) and info_large.md5 == hashlib.md5(large).hexdigest()
    assert info_small.metadata.get("origin") == "test"
    listed = list(store.list_objects("rb-objects", prefix="a/"))
    assert [o.key for o in listed] == ["a/large.bin", "a/small.txt"]
    assert [o.size for o in listed] == [len(large), len(small)]
    assert hash_stream(store.read("rb-objects", "a/large.bin", chunk_size=4 * MIB)) == (
        hashlib.md5(large).hexdigest(), len(large),
    )
    store.delete("rb-objects", "a/small.txt")
    store.delete("rb-objects", "a/small.txt")  # already gone: no error
    with pytest.raises(KeyError):
        store.stat("rb-objects", "a/small.txt")
    with pytest.raises(KeyError):
        next(store.read("rb-objects", "a/small.txt"))


@pytest.mark.parametrize("cloud", CLOUDS)
def test_write_returns_what_the_cloud_recorded(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    """The write result is the stored version's own record: equal to a later stat, checksums included."""
    store = _store(cloud)
    _make_container(cloud, "rb-recorded")
    for key, content in (("small", b"x" * 1000), ("empty", b""), ("large", os.urandom(2 * CHUNK_SIZE + 3))):
        written = store.write("rb-recorded", key, [content])
        assert written == store.stat("rb-recorded", key)
        assert (written.container, written.key, written.size) == ("rb-recorded", key, len(content))
        assert written.md5 == hashlib.md5(content).hexdigest()
        assert written.etag
        if cloud == "gcp":  # GCS keeps a CRC32C and a generation for every object
            assert written.crc32c == _crc32c_hex(content)
            assert written.version is not None and int(written.version) > 0
        else:
            assert written.crc32c is None
            assert written.version is None  # unversioned bucket / Azurite has no blob versioning
        # the write result pins a read of exactly that version
        assert b"".join(store.read("rb-recorded", key, written)) == content


@pytest.mark.parametrize("cloud", CLOUDS)
def test_read_honours_chunk_size(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    store = _store(cloud)
    _make_container(cloud, "rb-chunks")
    content = os.urandom(5 * 256 * KIB // 2)  # 2.5 chunks of 256 KiB
    store.write("rb-chunks", "obj", [content])
    chunks = list(store.read("rb-chunks", "obj", chunk_size=256 * KIB))
    assert [len(c) for c in chunks] == [256 * KIB, 256 * KIB, 128 * KIB]
    assert b"".join(chunks) == content
    assert list(store.read("rb-chunks", "obj", chunk_size=len(content) + 1)) == [content]
    with pytest.raises(ValueError, match="chunk_size"):
        next(store.read("rb-chunks", "obj", chunk_size=0))


#: What each emulator does when the object is overwritten between two chunks of a pinned read.
#: aws and aws-versioned: one GET per read, answered from the pinned version (If-Match / VersionId) before
#: the overwrite -> exactly the old bytes (a stale pin raises: test_stale_pin_raises_before_any_byte). gcp: gcp-storage-emulator ignores generation= and serves the new
#: bytes; the per-range metadata check sees the new generation -> raises. azure: Azurite enforces the
#: ETag condition (412) -> raises.
OVERWRITE_OUTCOME = {"aws": "old bytes", "aws-versioned": "old bytes", "gcp": "raises", "azure": "raises"}


@pytest.mark.parametrize("case", sorted(OVERWRITE_OUTCOME))
def test_overwrite_during_read_never_mixes_versions(clean_clouds, case: str) -> None:  # type: ignore[no-untyped-def]
    cloud = case.split("-")[0]
    store = _store(cloud)
    _make_container(cloud, "rb-race", versioned=case == "aws-versioned")
    chunk = 256 * KIB
    old = os.urandom(4 * chunk + 5)
    new = os.urandom(len(old))  # same size: only the pin (not a length check) can tell them apart
    pinned = store.write("rb-race", "obj", [old])
    reader = store.read("rb-race", "obj", chunk_size=chunk)
    received = [next(reader)]
    assert received[0] == old[:chunk]
    store.write("rb-race", "obj", [new])
    outcome = "old bytes"
    try:
        received.extend(reader)
    except ObjectChangedError as exc:
        outcome = "raises"
        assert exc.location.endswith("rb-race/obj") and exc.pinned in (pinned.version, pinned.etag)
    assert outcome == OVERWRITE_OUTCOME[case]
    if outcome == "old bytes":
        assert b"".join(received) == old
    else:
        assert b"".join(received) == old[: len(received) * chunk]  # nothing of the new version got out
    # a fresh read pins the new version
    assert b"".join(store.read("rb-race", "obj", chunk_size=chunk)) == new


@pytest.mark.parametrize("cloud", CLOUDS)
def test_stale_pin_raises_before_any_byte(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    store = _store(cloud)
    _make_container(cloud, "rb-stale")
    old = store.write("rb-stale", "obj", [b"a" * 3000])
    store.write("rb-stale", "obj", [b"b" * 3000])
    with pytest.raises(ObjectChangedError):
        next(store.read("rb-stale", "obj", old, chunk_size=1000))
    store.delete("rb-stale", "obj")
    with pytest.raises(ObjectChangedError):
        next(store.read("rb-stale", "obj", old, chunk_size=1000))


def test_s3_versioned_reads_by_version_id(clean_clouds) -> None:  # type: ignore[no-untyped-def]
    store = _store("aws")
    _make_container("aws", "rb-versions", versioned=True)
    v1 = store.write("rb-versions", "obj", [b"one" * 1000])
    v2 = store.write("rb-versions", "obj", [b"two" * 1000])
    assert v1.version and v2.version and v1.version != v2.version
    assert store.stat("rb-versions", "obj", version=v1.version) == v1
    assert b"".join(store.read("rb-versions", "obj", v1.version)) == b"one" * 1000
    assert b"".join(store.read("rb-versions", "obj")) == b"two" * 1000
    with pytest.raises(KeyError):
        store.stat("rb-versions", "obj", version="no-such-version")


def test_gcs_generation_is_the_version(clean_clouds) -> None:  # type: ignore[no-untyped-def]
    """The emulator keeps only the live generation: an older one is gone, as in an unversioned bucket."""
    store = _store("gcp")
    _make_container("gcp", "rb-generations")
    g1 = store.write("rb-generations", "obj", [b"one"])
    g2 = store.write("rb-generations", "obj", [b"two"])
    assert g1.version and g2.version and int(g2.version) > int(g1.version)
    assert store.stat("rb-generations", "obj", version=g2.version) == g2
    assert b"".join(store.read("rb-generations", "obj", g2.version)) == b"two"
    with pytest.raises(KeyError):
        store.stat("rb-generations", "obj", version=g1.version)
    with pytest.raises(KeyError):
        next(store.read("rb-generations", "obj", g1.version))


def test_s3_multipart_etag_is_not_an_md5(clean_clouds) -> None:  # type: ignore[no-untyped-def]
    """A multipart object written by someone else: no MD5 is claimed; hashing the stream gives the real one."""
    store = _store("aws")
    _make_container("aws", "rb-foreign")
    client = client_for(_target("aws"), "s3")
    parts = [os.urandom(5 * MIB), os.urandom(1000)]
    upload_id = client.create_multipart_upload(Bucket="rb-foreign", Key="mp")["UploadId"]
    etags = [
        client.upload_part(Bucket="rb-foreign", Key="mp", UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
        for n, body in enumerate(parts, start=1)
    ]
    client.complete_multipart_upload(
        Bucket="rb-foreign", Key="mp", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]},
    )
    info = store.stat("rb-foreign", "mp")
    assert info.etag and info.etag.endswith("-2") and info.md5 is None
    content = b"".join(parts)
    assert hash_stream(store.read("rb-foreign", "mp", info)) == (hashlib.md5(content).hexdigest(), len(content))
    # our own multipart write stores the real MD5 (per-part Content-MD5 checked by S3)
    ours = os.urandom(CHUNK_SIZE + 1000)
    written = store.write("rb-foreign", "ours", [ours])
    assert written.etag and written.etag.endswith("-2") and written.md5 == hashlib.md5(ours).hexdigest()
    assert written.metadata["content-md5-hex"] == written.md5


@pytest.mark.parametrize("cloud", CLOUDS)
def test_failed_source_leaves_the_object_intact(clean_clouds, cloud: str) -> None:  # type: ignore[no-untyped-def]
    """A stream that fails part-way (a source that changed) replaces nothing."""
    store = _store(cloud)
    _make_container(cloud, "rb-intact")
    before = store.write("rb-intact", "obj", [b"keep me"])

    def failing() -> Iterator[bytes]:
        yield os.urandom(CHUNK_SIZE)
        yield os.urandom(CHUNK_SIZE)  # Azure has staged blocks by now
        raise ObjectChangedError("s3://src/obj", "v1", "test")

    with pytest.raises(ObjectChangedError):
        store.write("rb-intact", "obj", failing())
    assert store.stat("rb-intact", "obj") == before
    assert b"".join(store.read("rb-intact", "obj")) == b"keep me"
    # The same with size and MD5 announced (what the backup copier passes): GCS streams it in one PUT, unspooled.
    with pytest.raises(ObjectChangedError):
        store.write("rb-intact", "obj", KnownChunks(failing(), "0" * 32, 3 * CHUNK_SIZE))
    assert store.stat("rb-intact", "obj") == before
    assert b"".join(store.read("rb-intact", "obj")) == b"keep me"
    data = os.urandom(CHUNK_SIZE + 5)
    digest = hashlib.md5(data).hexdigest()
    written = store.write("rb-intact", "known", KnownChunks([data[:CHUNK_SIZE], data[CHUNK_SIZE:]], digest, len(data)))
    assert (written.size, written.md5) == (len(data), digest)
    assert b"".join(store.read("rb-intact", "known")) == data


def test_s3_listing_reads_pages_itself(clean_clouds, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The S3 listing takes each page's raw <Contents> away from botocore's parser, reads them itself and asks for
    the next page meanwhile: across pages, with keys that need URL and XML escaping, it lists exactly what a plain
    botocore listing of the same bucket lists; an error reaches the caller; a caller that stops early stops the
    fetching thread."""
    import threading

    from include.clouds.aws import object_store as aws

    monkeypatch.setattr(aws, "LIST_PAGE_KEYS", 3)  # 10 keys: 4 pages
    store = _store("aws")
    _make_container("aws", "rb-listing")
    keys = ["plain.txt", "dir/sub/a b+c.bin", "amp&lt<gt>\"quote'.txt", "unicode/é€漢.txt", "percent%41%2F.txt",
            "tab\tkey", "dots/../up", "~!@#$^*()=[]{};:,?", "z" * 300, "dir/sub/b"]
    client: Any = store.client  # type: ignore[attr-defined]
    for n, key in enumerate(keys):
        client.put_object(Bucket="rb-listing", Key=key, Body=os.urandom(n))

    def plain(prefix: str) -> list[tuple[str, int, str | None, str | None]]:  # botocore's own parser: self.client
        from include.records import utc_iso

        found = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="rb-listing", Prefix=prefix):
            for item in page.get("Contents", []):
                found.append((item["Key"], int(item["Size"]), item["ETag"].strip('"'), utc_iso(item["LastModified"])))
        return found

    for prefix in ("", "dir/", "nothing/"):
        listed = [(o.key, o.size, o.etag, o.last_modified) for o in store.list_objects("rb-listing", prefix)]
        assert listed == plain(prefix)
        assert [key for key, *_ in listed] == sorted(k for k in keys if k.startswith(prefix))
    assert {o.key: o.size for o in store.list_objects("rb-listing")} == {k: n for n, k in enumerate(keys)}

    with pytest.raises(Exception, match="NoSuchBucket"):
        list(store.list_objects("rb-no-such-bucket"))
    listing = store.list_objects("rb-listing")
    assert next(listing).key == sorted(keys)[0]
    listing.close()  # type: ignore[attr-defined]
    assert not [t for t in threading.enumerate() if t.name == "s3-list-prefetch"]


def test_pin_must_name_the_object_read() -> None:
    info = ObjectInfo(container="c", key="k", size=0, etag="e")
    with pytest.raises(ValueError, match="pin is for c/k"):
        pinned_info(None, "c", "other", info)  # type: ignore[arg-type]


def _proc_status(field: str) -> int:
    """A byte count from /proc/self/status (``VmRSS``: resident now, ``VmHWM``: resident peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


@contextmanager
def _resident_peak_growth() -> Iterator[dict[str, int]]:
    """How far the process's resident memory rose above its level at entry, at its highest point.

    The kernel tracks the peak (VmHWM) exactly, so no short-lived buffer is missed by sampling; writing
    5 to /proc/self/clear_refs restarts it from the current RSS. Free heap memory is returned first
    (glibc ``malloc_trim``) so that the block cannot hide its use in memory freed earlier.
    """
    gc.collect()
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _proc_status("VmRSS")
    result: dict[str, int] = {}
    yield result
    result["growth"] = _proc_status("VmHWM") - before


#: Size copied in the memory test, and the ceiling on resident memory growth during one copy. A copy
#: holds the chunk in flight plus the SDK's own copy of it while it is received or sent (measured:
#: 8-16 MiB, i.e. 1-2 chunks, on every route). 3 chunks is 3/8 of the object: one more chunk held
#: anywhere, or anything growing with the object, fails.
COPY_SIZE = 64 * MIB + 1
COPY_GROWTH_LIMIT = 3 * CHUNK_SIZE
COPY_ROUTES = ("aws->gcp", "gcp->azure", "azure->aws")  # every implementation reads once and writes once
_PROBE_MARK = "COPY-PROBE "


def _copy_probe(routes: list[str]) -> None:
    """Copy ``rb-copy-src/big.bin`` along each route; print each copy's resident growth and result as JSON.

    Run in a fresh interpreter by ``test_copy_memory_stays_bounded`` (as an Airflow task process would
    run a copy): in the long-lived pytest process, glibc keeps earlier tests' freed memory in a
    fragmented heap, which moves RSS by a chunk or two either way regardless of the code measured.
    """
    stores = {cloud: _store(cloud) for cloud in CLOUDS}
    sources = {cloud: store.stat("rb-copy-src", "big.bin") for cloud, store in stores.items()}
    results: dict[str, dict[str, object]] = {}
    for route in routes:
        src, dst = route.split("->")
        with _resident_peak_growth() as measured:
            copied = stores[dst].write(
                "rb-copy-dst", f"from-{src}.bin", stores[src].read("rb-copy-src", "big.bin", sources[src]),
            )
        results[route] = {"growth": measured["growth"], "size": copied.size, "md5": copied.md5}
    print(_PROBE_MARK + json.dumps(results), flush=True)


def test_copy_memory_stays_bounded(clean_clouds) -> None:  # type: ignore[no-untyped-def]
    """Copying a 64 MiB object between clouds keeps a few chunks resident, not the object.

    Resident memory, not tracemalloc: azure-storage-blob's ranged download calls ``list()`` on a
    response stream whose ``__len__`` is its byte count, so CPython reserves 8 bytes of list per byte
    downloaded (64 MiB for an 8 MiB range). tracemalloc counts that reservation, but its pages are never
    touched and never resident.
    """
    expected = hashlib.md5()
    for chunk in _random_chunks(COPY_SIZE, seed=b"copy"):
        expected.update(chunk)
    for cloud in CLOUDS:
        _make_container(cloud, "rb-copy-src")
        _make_container(cloud, "rb-copy-dst")
        source = _store(cloud).write("rb-copy-src", "big.bin", _random_chunks(COPY_SIZE, seed=b"copy"))
        assert (source.size, source.md5) == (COPY_SIZE, expected.hexdigest())
    probe = subprocess.run(
        [sys.executable, __file__, *COPY_ROUTES], check=False, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    line = next(line for line in probe.stdout.splitlines() if line.startswith(_PROBE_MARK))
    results = json.loads(line.removeprefix(_PROBE_MARK))
    assert sorted(results) == sorted(COPY_ROUTES)
    report = ", ".join(f"{route} +{r['growth'] / MIB:.1f} MiB" for route, r in results.items())
    print(f"\nresident peak growth copying {COPY_SIZE / MIB:.0f} MiB: {report}")
    for route, result in results.items():
        assert (result["size"], result["md5"]) == (COPY_SIZE, expected.hexdigest()), route
        assert result["growth"] < COPY_GROWTH_LIMIT, f"{route}: resident memory rose {result['growth'] / MIB:.1f} MiB"


def test_unknown_capability_is_a_clear_error() -> None:
    target = parse_targets(
        "targets:\n  - {name: x, cloud: aws, conn_id: c, account: '1', regions: [r]}"
    ).targets[0]
    with pytest.raises(CapabilityError, match="no capability 'teleport'"):
        capability("teleport", target)


def test_protocol_module_imports_no_cloud_sdk() -> None:
    code = (
        "import sys, include.capabilities.object_store, include.capabilities._spool\n"
        "bad = [m for m in ('boto3', 'botocore', 'google.cloud.storage', 'azure.storage.blob') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


if __name__ == "__main__":
    _copy_probe(sys.argv[1:])
