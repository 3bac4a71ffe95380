"""Seed the local estate from ``config/estate.yaml``: idempotent, described as data.

Each cloud's section is applied by ``include/estate/seed_<cloud>.py`` through the same Airflow hooks the
runbooks use. Every seeded resource carries the tag/label/metadata ``seed-id`` so that a second run
finds it instead of creating a twin: seeding twice reports everything as ``existing`` and creates nothing.

    python -m include.estate.seed            # seed what config/estate.yaml describes
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.targets import TargetsConfig, load_targets

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ESTATE_FILE = PROJECT_ROOT / "config" / "estate.yaml"
SEED_TAG = "seed-id"


class SeedError(ValueError):
    """The estate description is malformed or names an unknown target."""


@dataclass
class SeedReport:
    """What a seed run did: ``created`` on the first run, ``existing`` on every later one."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def add(self, created: bool, kind: str, ident: str) -> None:
        (self.created if created else self.existing).append(f"{kind}:{ident}")

    def summary(self) -> str:
        return f"{len(self.created)} created, {len(self.existing)} already present"


def load_spec(path: Path | str | None = None) -> dict[str, Any]:
    file = Path(path or os.environ.get("RUNBOOKS_ESTATE_FILE", DEFAULT_ESTATE_FILE))
    try:
        spec = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SeedError(f"cannot read estate description {file}: {exc}") from exc
    if not isinstance(spec, dict):
        raise SeedError(f"{file}: expected a mapping with aws / gcp / azure sections")
    unknown = set(spec) - {"aws", "gcp", "azure"}
    if unknown:
        raise SeedError(f"{file}: unknown sections {sorted(unknown)}")
    return spec


def seed_estate(
    path: Path | str | None = None,
    targets: TargetsConfig | None = None,
    clouds: tuple[str, ...] = ("aws", "gcp", "azure"),
) -> SeedReport:
    """Apply every cloud section of the estate description; return what was created / found."""
    spec = load_spec(path)
    targets = targets or load_targets()
    report = SeedReport()
    for cloud in clouds:
        section = spec.get(cloud)
        if not section:
            continue
        target = targets.get(section.get("target", ""))
        if target.cloud != cloud:
            raise SeedError(f"estate section {cloud!r} names target {target.name!r} of cloud {target.cloud!r}")
        module = importlib.import_module(f"include.estate.seed_{cloud}")
        module.seed(target, section, report)
    return report


def main() -> int:
    report = seed_estate()
    print(f"seeded local estate: {report.summary()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
