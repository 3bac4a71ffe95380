"""great-expectations checks of one backup manifest: complete, checksummed, unique, fresh.

Two batches, validated with GX 1.x (ephemeral context, pandas frames):

- **entries** (one row per manifest entry): keys are unique; every entry has an MD5 and it is 32 hex
  digits; a CRC32C, where present, is 8 hex digits; sizes are >= 0; each entry's blob is the blob its
  checksum and size name (``blobs/<md5[:2]>/<md5>-<size>``); and, given the source listing of the run,
  the keys are exactly the keys listed (none missing, none extra) and as many rows as listed objects.
- **point** (one row): the point's age (now minus the time its listing began) is within the policy's RPO.

The runbook validates each manifest before writing it (a structural failure means no manifest is written);
freshness is reported, not blocking (an old point is still better than none). :func:`validate_manifest`
is public: the restore drill validates the points it restores the same way.

great_expectations and pandas are imported inside :func:`validate_manifest` only (about 5 s).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from include.backup.manifest import Manifest, ManifestError, blob_key, point_time

MAX_EXAMPLES = 10
#: The check that is reported but does not block writing a manifest.
FRESHNESS = "fresh within the RPO"


@dataclass(frozen=True)
class Check:
    """One expectation and its result."""

    name: str
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int = 0
    examples: list[Any] = field(default_factory=list)
    observed: Any = None
    exception: str | None = None


@dataclass(frozen=True)
class ManifestValidation:
    """What great-expectations found in one manifest (JSON-able: it goes into the run report)."""

    point_id: str
    success: bool
    checks: list[Check]
    age_seconds: float
    rpo_seconds: float
    entries: int
    seconds: float
    gx_version: str

    @property
    def structural_success(self) -> bool:
        """Every check except freshness held: the manifest may be written."""
        return all(check.success for check in self.checks if check.name != FRESHNESS)

    @property
    def fresh(self) -> bool:
        return all(check.success for check in self.checks if check.name == FRESHNESS)

    def failed(self) -> list[str]:
        """``name (expectation: n unexpected, e.g. ...)`` of every failed check."""
        lines = []
        for check in self.checks:
            if not check.success:
                detail = check.exception or (
                    f"observed {check.observed}" if check.observed is not None and not check.unexpected_count
                    else f"{check.unexpected_count} unexpected"
                )
                if check.examples:
                    detail += f", e.g. {check.examples[:3]}"
                lines.append(f"{check.name} ({check.expectation}: {detail})")
        return lines

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["structural_success"] = self.structural_success
        data["fresh"] = self.fresh
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestValidation:
        return cls(
            point_id=str(data["point_id"]), success=bool(data["success"]),
            checks=[Check(**c) for c in data.get("checks", [])], age_seconds=float(data["age_seconds"]),
            rpo_seconds=float(data["rpo_seconds"]), entries=int(data["entries"]), seconds=float(data["seconds"]),
            gx_version=str(data.get("gx_version", "")),
        )


def point_started(manifest: Manifest) -> datetime:
    """When the point's source listing began (its "as of" time)."""
    try:
        return datetime.fromisoformat(manifest.started_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return point_time(manifest.point_id)


def _expected_blob(prefix: str, md5: Any, size: Any) -> str | None:
    try:
        return blob_key(prefix, str(md5), int(size))
    except (ManifestError, TypeError, ValueError):
        return None


def _entry_rows(manifest: Manifest, prefix: str) -> dict[str, list[Any]]:
    rows: dict[str, list[Any]] = {c: [] for c in ("key", "size", "md5", "crc32c", "blob", "expected_blob")}
    for entry in manifest.entries:
        rows["key"].append(entry.key)
        rows["size"].append(entry.size)
        rows["md5"].append(entry.md5)
        rows["crc32c"].append(entry.crc32c)
        rows["blob"].append(entry.blob)
        rows["expected_blob"].append(_expected_blob(prefix, entry.md5, entry.size) if entry.md5 else None)
    return rows


def _entry_expectations(gxe: Any, listed: list[str] | None) -> list[tuple[str, Any]]:
    checks: list[tuple[str, Any]] = [
        ("keys are unique", gxe.ExpectColumnValuesToBeUnique(column="key")),
        ("every entry has an MD5", gxe.ExpectColumnValuesToNotBeNull(column="md5")),
        ("MD5s are 32 hex digits", gxe.ExpectColumnValuesToMatchRegex(column="md5", regex=r"^[0-9a-f]{32}$")),
        ("CRC32Cs are 8 hex digits", gxe.ExpectColumnValuesToMatchRegex(column="crc32c", regex=r"^[0-9a-f]{8}$")),
        ("sizes are not negative", gxe.ExpectColumnValuesToBeBetween(column="size", min_value=0)),
        ("every entry has a blob", gxe.ExpectColumnValuesToNotBeNull(column="blob")),
        ("each blob is named by its content",
         gxe.ExpectColumnPairValuesToBeEqual(column_A="blob", column_B="expected_blob")),
    ]
    if listed is not None:
        checks += [
            ("complete against the source listing",
             gxe.ExpectColumnDistinctValuesToEqualSet(column="key", value_set=listed)),
            ("one entry per listed object", gxe.ExpectTableRowCountToEqual(value=len(listed))),
        ]
    return checks


def _check(name: str, result: Mapping[str, Any], manifest_keys: list[str], listed: list[str] | None) -> Check:
    config = result.get("expectation_config") or {}
    details = result.get("result") or {}
    kwargs = config.get("kwargs") or {}
    exception = result.get("exception_info") or {}
    examples: list[Any] = list(details.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]
    observed = details.get("observed_value")
    if name == "complete against the source listing" and listed is not None:
        have, want = set(manifest_keys), set(listed)
        examples = [{"missing": sorted(want - have)[:MAX_EXAMPLES], "not_listed": sorted(have - want)[:MAX_EXAMPLES]}]
        observed = {"missing": len(want - have), "not_listed": len(have - want)}
    elif isinstance(observed, (list, set, dict)):
        observed = None  # a whole column's values do not belong in a report
    return Check(
        name=name, expectation=str(config.get("type", "")),
        column=kwargs.get("column") if isinstance(kwargs.get("column"), str) else None,
        success=bool(result.get("success")), unexpected_count=int(details.get("unexpected_count") or 0),
        examples=examples, observed=observed,
        exception=str(exception.get("exception_message")) if exception.get("raised_exception") else None,
    )


def validate_manifest(
    manifest: Manifest,
    *,
    rpo: timedelta,
    now: datetime,
    listed_keys: Iterable[str] | None = None,
    prefix: str | None = None,
) -> ManifestValidation:
    """Validate ``manifest`` with great-expectations; ``listed_keys``: the source listing it must match.

    ``prefix``: the backup store prefix its blobs live under (default: the manifest's destination prefix).
    """
    started = time.monotonic()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    store_prefix = prefix if prefix is not None else str(manifest.destination.get("prefix", ""))
    listed = sorted(listed_keys) if listed_keys is not None else None
    age = (now - point_started(manifest)).total_seconds()
    context: Any = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False),
    ))
    source = context.data_sources.add_pandas("backup_manifest")
    batches = {
        "entries": (pd.DataFrame(_entry_rows(manifest, store_prefix), dtype=object), _entry_expectations(gxe, listed)),
        "point": (
            pd.DataFrame({"point_id": [manifest.point_id], "age_seconds": [age]}, dtype=object),
            [(FRESHNESS, gxe.ExpectColumnValuesToBeBetween(column="age_seconds", max_value=rpo.total_seconds()))],
        ),
    }
    keys = [entry.key for entry in manifest.entries]
    checks: list[Check] = []
    for name, (frame, expectations) in batches.items():
        names = {id(expectation): label for label, expectation in expectations}
        suite = context.suites.add(gx.ExpectationSuite(name=f"backup_manifest_{name}",
                                                      expectations=[e for _, e in expectations]))
        definition = context.validation_definitions.add(gx.ValidationDefinition(
            name=f"backup_manifest_{name}", suite=suite,
            data=source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name),
        ))
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES},
        ).to_json_dict()
        # GX reports results in its own order: match them back to the labels by expectation config.
        by_config = {_config_key(e.configuration.to_json_dict()): names[id(e)] for _, e in expectations}
        for item in result.get("results", []):
            label = by_config.get(_config_key(item.get("expectation_config") or {}), str(
                (item.get("expectation_config") or {}).get("type")))
            checks.append(_check(label, item, keys, listed))
    return ManifestValidation(
        point_id=manifest.point_id, success=all(c.success for c in checks), checks=checks,
        age_seconds=round(age, 3), rpo_seconds=rpo.total_seconds(), entries=len(manifest.entries),
        seconds=round(time.monotonic() - started, 3), gx_version=str(getattr(gx, "__version__", "")),
    )


def _config_key(config: Mapping[str, Any]) -> str:
    import json

    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
    return json.dumps([config.get("type"), kwargs], sort_keys=True, default=str)
