"""great-expectations checks of backup manifests: each kind of damage is caught and named."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from include.backup.manifest import Manifest, ManifestEntry, blob_key, new_point_id, structure_problems
from include.backup.validation import FRESHNESS, ManifestValidation, validate_manifest

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RPO = timedelta(hours=2)


def _entry(key: str, content: bytes, **changes: object) -> ManifestEntry:
    md5 = hashlib.md5(content).hexdigest()
    entry = ManifestEntry(key=key, size=len(content), md5=md5, blob=blob_key("bk/", md5, len(content)),
                          crc32c="0a1b2c3d")
    return replace(entry, **changes)  # type: ignore[arg-type]


def _manifest(*entries: ManifestEntry, age: timedelta = timedelta(minutes=5)) -> Manifest:
    started = NOW - age
    return Manifest(policy="p", point_id=new_point_id(started, "run"), run_id="run", started_at=started.isoformat(),
                    finished_at=NOW.isoformat(), source={}, destination={"prefix": "bk/"}, entries=entries)


GOOD = (_entry("a", b"alpha"), _entry("b", b"bravo"), _entry("dir/c", b""))


def _failed(result: ManifestValidation) -> set[str]:
    return {check.name for check in result.checks if not check.success}


def test_a_sound_manifest_passes_every_check() -> None:
    result = validate_manifest(_manifest(*GOOD), rpo=RPO, now=NOW, listed_keys=["a", "b", "dir/c"])
    assert result.success and result.structural_success and result.fresh
    assert {c.name for c in result.checks} == {
        "keys are unique", "every entry has an MD5", "MD5s are 32 hex digits", "CRC32Cs are 8 hex digits",
        "sizes are not negative", "every entry has a blob", "each blob is named by its content",
        "complete against the source listing", "one entry per listed object", FRESHNESS}
    assert result.entries == 3 and result.age_seconds == 300 and result.gx_version
    assert ManifestValidation.from_dict(result.to_dict()) == result
    assert structure_problems(_manifest(*GOOD), ["a", "b", "dir/c"], "bk/") == []


@pytest.mark.parametrize(
    ("entries", "failed", "example"),
    [
        ((*GOOD[:2], _entry("dir/c", b"", md5=None)), {"every entry has an MD5", "each blob is named by its content"},
         None),
        ((*GOOD[:2], _entry("dir/c", b"", md5="NOT-AN-MD5")),
         {"MD5s are 32 hex digits", "each blob is named by its content"}, "NOT-AN-MD5"),
        ((*GOOD, _entry("a", b"alpha, again")), {"keys are unique", "one entry per listed object"}, "a"),
        ((*GOOD[:2], _entry("dir/c", b"", crc32c="xyz")), {"CRC32Cs are 8 hex digits"}, "xyz"),
        ((*GOOD[:2], _entry("dir/c", b"", blob="bk/blobs/00/elsewhere")), {"each blob is named by its content"}, None),
        ((*GOOD[:2], _entry("dir/c", b"", size=-1)), {"sizes are not negative", "each blob is named by its content"},
         -1),
        (GOOD[:2], {"complete against the source listing", "one entry per listed object"}, None),
    ],
    ids=["missing-md5", "malformed-md5", "duplicate-key", "malformed-crc32c", "wrong-blob", "negative-size",
         "incomplete"],
)
def test_each_kind_of_damage_is_caught(entries: tuple[ManifestEntry, ...], failed: set[str], example: object) -> None:
    result = validate_manifest(_manifest(*entries), rpo=RPO, now=NOW, listed_keys=["a", "b", "dir/c"])
    assert not result.success and not result.structural_success and result.fresh
    assert _failed(result) == failed
    if example is not None:
        assert any(example in check.examples for check in result.checks if not check.success), result.failed()
    # The plain-Python check the backup run applies before writing a manifest (no GX import there) refuses it too.
    problems = structure_problems(_manifest(*entries), ["a", "b", "dir/c"], "bk/")
    assert problems, "the pre-write structure check missed what great-expectations caught"
    if example is not None:
        assert str(example) in " ".join(problems)


def test_completeness_names_missing_and_unlisted_keys() -> None:
    result = validate_manifest(_manifest(*GOOD), rpo=RPO, now=NOW, listed_keys=["a", "b", "zeta"])
    check = next(c for c in result.checks if c.name == "complete against the source listing")
    assert not check.success and check.examples == [{"missing": ["zeta"], "not_listed": ["dir/c"]}]
    assert check.observed == {"missing": 1, "not_listed": 1}
    assert "complete against the source listing" in " ".join(result.failed())


def test_a_stale_point_fails_freshness_only() -> None:
    stale = validate_manifest(_manifest(*GOOD, age=timedelta(hours=2, seconds=1)), rpo=RPO, now=NOW,
                              listed_keys=["a", "b", "dir/c"])
    assert not stale.success and not stale.fresh and stale.structural_success  # reported, not blocking a write
    assert _failed(stale) == {FRESHNESS} and stale.age_seconds == 7201
    assert validate_manifest(_manifest(*GOOD, age=RPO), rpo=RPO, now=NOW).fresh  # exactly at the RPO: fresh


def test_an_empty_point_of_an_empty_source_is_valid() -> None:
    result = validate_manifest(_manifest(), rpo=RPO, now=NOW, listed_keys=[])
    assert result.success and result.entries == 0
