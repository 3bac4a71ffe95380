"""The S3 lister asks no question whose answer another answer already implies (moto server, provider hooks).

Object Lock implies versioning (S3 enables versioning with the lock and refuses to suspend it), so an
unversioned bucket's lock configuration is not requested; a locked bucket is still reported as locked.
Requests are counted with a botocore ``before-call`` handler on the clients the lister itself creates.
"""

from __future__ import annotations

from collections import Counter
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
def calls(aws_target: Target, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Operation name -> requests made by the S3 lister's clients during the test."""
    counted: Counter[str] = Counter()
    real = clients.client_for

    def counting(target: Any, service: str, region: str | None = None) -> Any:
        client = real(target, service, region)
        client.meta.events.register("before-call.s3", lambda model, **_: counted.update([model.name]))
        return client

    monkeypatch.setattr(s3, "client_for", counting)
    return counted


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
