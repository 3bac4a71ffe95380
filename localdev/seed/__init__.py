"""Seed the local estate from ``config/estate.yaml``: idempotent, described as data.

Each cloud's section is applied by ``localdev/seed/<cloud>`` (``aws/`` is a package with one module per
service) through the same Airflow hooks the runbooks use. Every seeded resource carries the
tag/label/metadata ``seed-id`` so that a second run finds it instead of creating a twin: seeding twice
reports everything as ``existing`` and creates nothing.

    python -m localdev.seed            # seed what config/estate.yaml describes
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from include.paths import CONFIG_DIR
from include.targets import TargetsConfig, load_targets

DEFAULT_ESTATE_FILE = CONFIG_DIR / "estate.yaml"
SEED_TAG = "seed-id"


class SeedError(ValueError):
    """The estate description is malformed or names an unknown target."""


@dataclass
class SeedReport:
    """What a seed run did: ``created`` on the first run, ``existing`` on every later one."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def add(self, created: bool, kind: str, ident: str) -> None:
        """Record one resource (``kind`` is its resource type, ``ident`` its name or seed id)."""
        (self.created if created else self.existing).append(f"{kind}:{ident}")

    def merge(self, parts: list[SeedReport]) -> None:
        """Fold per-job reports into this one in a fixed order (the result does not depend on timing)."""
        for part in parts:
            self.created.extend(part.created)
            self.existing.extend(part.existing)

    def summary(self) -> str:
        """``"<n> created, <m> already present"``."""
        return f"{len(self.created)} created, {len(self.existing)} already present"


def object_body(container: str, key: str, size: int) -> bytes:
    """Deterministic content of a seeded object / blob: the same bytes on every run, in every cloud,
    so a backup or restore can be checked byte for byte."""
    line = f"{container}/{key} seeded by runbooks estate\n".encode()
    return (line * (size // len(line) + 1))[:size]


def seeded_objects(entry: Mapping[str, Any], field: str = "objects") -> dict[str, int]:
    """Key -> size in bytes of what an entry's ``<field>: {prefix, count, size_kib, large_mib}`` asks for."""
    spec = entry.get(field) or {}
    prefix = str(spec.get("prefix", ""))
    objects = {
        f"{prefix}object-{i:03d}.txt": int(spec.get("size_kib", 1)) * 1024
        for i in range(int(spec.get("count", 0)))
    }
    if spec.get("large_mib"):
        objects[f"{prefix}large-{int(spec['large_mib'])}mib.bin"] = int(spec["large_mib"]) * 1024 * 1024
    return objects


def load_spec(path: Path | str | None = None) -> dict[str, Any]:
    """The estate description (``RUNBOOKS_ESTATE_FILE``, default ``config/estate.yaml``), checked."""
    file = Path(path or os.environ.get("RUNBOOKS_ESTATE_FILE") or DEFAULT_ESTATE_FILE)
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
        module = importlib.import_module(f"{__name__}.{cloud}")
        module.seed(target, section, report)
    return report


def main() -> int:
    """``python -m localdev.seed``: seed the estate, print the summary."""
    report = seed_estate()
    print(f"seeded local estate: {report.summary()}", file=sys.stderr)
    return 0
