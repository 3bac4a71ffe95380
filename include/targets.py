"""Logical targets: which account / project / subscription, which regions, which connection.

Targets are data (``config/targets.yaml``, or the file named by ``RUNBOOKS_TARGETS_FILE``), validated
when loaded: a malformed file is a clear error naming the bad entry, never a silently shorter list.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from include.params import TARGET_NAME_PATTERN
from include.paths import CONFIG_DIR

DEFAULT_TARGETS_FILE = CONFIG_DIR / "targets.yaml"

Cloud = Literal["aws", "gcp", "azure"]
CLOUDS: tuple[Cloud, ...] = ("aws", "gcp", "azure")

# Which key names the account-like scope for each cloud in the YAML file.
_SCOPE_KEY: dict[str, str] = {"aws": "account", "gcp": "project", "azure": "subscription"}


class TargetsError(ValueError):
    """The targets file is missing, malformed, or names an unknown target."""


class Residency(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    pii_allowed_regions: tuple[str, ...] = ()


class Target(BaseModel):
    """One account (AWS), project (GCP) or subscription (Azure) reached through one connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=TARGET_NAME_PATTERN)
    cloud: Cloud
    conn_id: str = Field(min_length=1)
    #: Account id (AWS), project id (GCP) or subscription id (Azure).
    account: str = Field(min_length=1)
    regions: tuple[str, ...] = Field(min_length=1)
    environment: str = "prod"
    storage_account: str | None = None
    #: Services to inventory (empty: every registered lister of the cloud). Locally the GCP target
    #: lists only ``storage`` because no emulator serves Compute Engine.
    services: tuple[str, ...] = ()
    concurrency: int = Field(default=0, ge=0, le=64)
    residency: Residency = Residency()
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _scope_alias(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        cloud = data.get("cloud")
        key = _SCOPE_KEY.get(str(cloud))
        if key and key != "account":
            if "account" in data:
                raise ValueError(f"a {cloud} target names its scope with '{key}', not 'account'")
            if key in data:
                data["account"] = data.pop(key)
        for other in set(_SCOPE_KEY.values()) - {key, "account"}:
            if other in data:
                raise ValueError(f"'{other}' is not a field of a {cloud} target (use '{key}')")
        return data

    @model_validator(mode="after")
    def _azure_needs_storage_account(self) -> Target:
        if self.cloud == "azure" and not self.storage_account:
            raise ValueError("an azure target needs storage_account")
        return self

    @property
    def scope_kind(self) -> str:
        return _SCOPE_KEY[self.cloud]


class TargetsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    defaults: dict[str, dict[str, int]] = Field(default_factory=dict)
    targets: tuple[Target, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> TargetsConfig:
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate target names: {', '.join(dupes)}")
        return self

    def concurrency(self, target: Target) -> int:
        """Max concurrent API calls for ``target``: its own value, else the per-cloud default, else 4."""
        if target.concurrency:
            return target.concurrency
        return int(self.defaults.get("concurrency", {}).get(target.cloud, 4))

    def get(self, name: str) -> Target:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets)
        raise TargetsError(f"unknown target {name!r}; known targets: {known}")

    def select(self, names: list[str] | tuple[str, ...] | None = None, cloud: str | None = None) -> list[Target]:
        """Targets by name (all when ``names`` is empty), optionally only one cloud. Unknown names raise."""
        chosen = [self.get(n) for n in names] if names else list(self.targets)
        if cloud:
            chosen = [t for t in chosen if t.cloud == cloud]
        return chosen


def targets_file() -> Path:
    return Path(os.environ.get("RUNBOOKS_TARGETS_FILE", DEFAULT_TARGETS_FILE))


def parse_targets(text: str, source: str = "<string>") -> TargetsConfig:
    """Parse and validate a targets document."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetsError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TargetsError(f"{source}: expected a mapping with a 'targets' list")
    try:
        return TargetsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
        )
        raise TargetsError(f"{source}: invalid targets: {problems}") from exc


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> TargetsConfig:
    return parse_targets(Path(path).read_text(), source=path)


def load_targets(path: Path | str | None = None) -> TargetsConfig:
    """Load the targets file (cached per path and modification time)."""
    file = Path(path) if path else targets_file()
    if not file.exists():
        raise TargetsError(f"targets file not found: {file}")
    return _load_cached(str(file), file.stat().st_mtime)
