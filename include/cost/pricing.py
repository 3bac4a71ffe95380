"""Price tables kept as data: ``config/pricing/<cloud>.yaml`` (or ``RUNBOOKS_PRICING_DIR``).

Each file records where its figures come from (``sources``) and when they were recorded (``recorded``); a
table without either is refused. Prices are per region with a ``default_region`` for regions the table
does not list (the estimate then says which region's price it used).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from include.paths import CONFIG_DIR

DEFAULT_PRICING_DIR = CONFIG_DIR / "pricing"
#: What a region's table may price (per GB-month, per hour).
KEYS = ("volume_gb_month", "snapshot_gb_month", "bucket_gb_month", "instance_hour", "database_hour",
        "table_gb_month")


class PricingError(ValueError):
    """A price table is missing, malformed, or lacks its source / date."""


@dataclass(frozen=True)
class Price:
    """One price and where it came from (for the report: every estimate says its basis)."""

    value: float
    unit: str
    region: str  # the region whose price was used (the default one when the table lacks the region)


@dataclass(frozen=True)
class PriceTable:
    cloud: str
    currency: str
    recorded: str
    sources: tuple[dict[str, str], ...]
    hours_per_month: float
    default_region: str
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _region(self, region: str) -> str:
        for name in (region, region.upper(), region.lower()):
            if name in self.regions:
                return name
        return self.default_region

    def price(self, key: str, region: str, variant: str | None = None) -> Price | None:
        """The price of ``key`` (optionally one ``variant``: a volume type, an instance type) in ``region``."""
        used = self._region(region)
        entry = self.regions.get(used, {}).get(key)
        if entry is None:
            return None
        if isinstance(entry, dict):
            if variant is None or variant not in entry:
                return None
            entry = entry[variant]
        unit = "hour" if key.endswith("_hour") else "GB-month"
        return Price(float(entry), unit, used)

    def source(self) -> str:
        return f"{self.cloud} list prices recorded {self.recorded} ({'; '.join(s['url'] for s in self.sources)})"


def pricing_dir() -> Path:
    return Path(os.environ.get("RUNBOOKS_PRICING_DIR", DEFAULT_PRICING_DIR))


def parse_table(text: str, source: str) -> PriceTable:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PricingError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PricingError(f"{source}: expected a mapping")
    problems = [f"{key} is required" for key in ("cloud", "currency", "recorded", "sources", "regions",
                                                  "default_region") if not raw.get(key)]
    try:
        date.fromisoformat(str(raw.get("recorded")))
    except ValueError:
        problems.append(f"recorded must be a date (YYYY-MM-DD), not {raw.get('recorded')!r}")
    sources = raw.get("sources") or []
    if not isinstance(sources, list) or any(not isinstance(s, dict) or not s.get("url") for s in sources):
        problems.append("sources must list {what, url} entries")
    regions = raw.get("regions") or {}
    if not isinstance(regions, dict):
        problems.append("regions must map a region to its prices")
        regions = {}
    for region, prices in regions.items():
        for key, value in (prices or {}).items():
            if key not in KEYS:
                problems.append(f"regions.{region}.{key}: unknown price (known: {', '.join(KEYS)})")
            values = value.values() if isinstance(value, dict) else [value]
            if any(not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 for v in values):
                problems.append(f"regions.{region}.{key}: prices are numbers >= 0")
    if raw.get("default_region") and raw["default_region"] not in regions:
        problems.append(f"default_region {raw['default_region']!r} has no prices")
    if problems:
        raise PricingError(f"{source}: " + "; ".join(problems))
    return PriceTable(cloud=str(raw["cloud"]), currency=str(raw["currency"]), recorded=str(raw["recorded"]),
                      sources=tuple(dict(s) for s in sources), hours_per_month=float(raw.get("hours_per_month", 730)),
                      default_region=str(raw["default_region"]), regions=dict(regions))


def load_tables(folder: Path | None = None) -> dict[str, PriceTable]:
    """Every ``<cloud>.yaml`` of the pricing folder, by cloud."""
    base = folder or pricing_dir()
    tables = {}
    for path in sorted(base.glob("*.yaml")):
        table = parse_table(path.read_text(), str(path))
        if table.cloud != path.stem:
            raise PricingError(f"{path}: cloud {table.cloud!r} does not match the file name")
        tables[table.cloud] = table
    if not tables:
        raise PricingError(f"no price tables in {base}")
    return tables
