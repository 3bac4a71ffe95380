"""Backup policies as data: ``config/backup/policies.yaml`` (or ``RUNBOOKS_BACKUP_POLICIES``), validated at load.

Two kinds:

- **object-store policies** (``policies``): copy a bucket / container prefix of one target into a backup store
  in another cloud (or another region), on a schedule, keeping point-in-time versions by a GFS retention,
  with an RPO objective and optional immutability;
- **snapshot policies** (``snapshot_policies``): snapshot the resources of a target that carry a tag (EBS
  volumes, RDS instances, DynamoDB tables), copy them to a second region, keep them by a GFS retention.

A malformed file is one :class:`BackupPolicyError` naming the policy and the field; a policy naming an
unknown target, or a destination in the same cloud and region as its source, is refused the same way.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.backup.schedule import check_schedule
from include.params import POLICY_NAME_PATTERN as POLICY_NAME_PATTERN  # defined there: light, for DAG forms
from include.paths import CONFIG_DIR
from include.targets import TargetsConfig, TargetsError, load_targets

DEFAULT_POLICIES_FILE = CONFIG_DIR / "backup" / "policies.yaml"
#: Names used for folders beside the policies' own under data/backup/: no policy may take them.
RESERVED_NAMES = frozenset({"drills", "snapshots"})
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: Resource types a snapshot policy may select.
SNAPSHOT_TYPES = ("aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table")


class BackupPolicyError(ValueError):
    """The policies file is missing or malformed, or names an unknown policy."""


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """``"90m"``, ``"2h"``, ``"1d"``, ``"1w"`` (or seconds as a number) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value).strip())
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30m, 2h, 1d, 1w)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Location(BaseModel):
    """A bucket / container prefix of one target (and a region, where the store is regional)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    container: str = Field(min_length=3, max_length=63)
    prefix: str = ""
    #: The region of the bucket, where it matters for "another region" (S3); default: the target's first.
    region: str | None = None

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError("prefix must be relative, without '..'")
        return value if not value or value.endswith("/") else value + "/"

    def describe(self) -> str:
        return f"{self.target}:{self.container}/{self.prefix}"


class Retention(BaseModel):
    """Grandfather-father-son: keep the newest point of each of the last N hours / days / weeks / months."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hourly: int = Field(default=0, ge=0, le=1000)
    daily: int = Field(default=7, ge=0, le=1000)
    weekly: int = Field(default=4, ge=0, le=1000)
    monthly: int = Field(default=12, ge=0, le=1000)

    @model_validator(mode="after")
    def _keeps_something(self) -> Retention:
        if not (self.hourly or self.daily or self.weekly or self.monthly):
            raise ValueError("a retention that keeps nothing would delete every backup")
        return self


class Immutability(BaseModel):
    """Write-once retention of stored backups where the destination supports it (S3 Object Lock)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["governance", "compliance"] = "governance"
    days: int = Field(ge=1, le=36500)


class BackupPolicy(BaseModel):
    """Copy ``source`` into the backup store at ``destination`` on ``schedule``, keep points by ``retention``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=POLICY_NAME_PATTERN)
    description: str = ""
    source: Location
    destination: Location
    schedule: str = "@daily"
    retention: Retention = Retention()
    #: The recovery point objective: the newest restorable point must never be older than this.
    rpo: timedelta = timedelta(hours=24)
    immutability: Immutability | None = None
    #: Parallel object copies of one run (bounded pool).
    concurrency: int = Field(default=8, ge=1, le=64)

    @field_validator("rpo", mode="before")
    @classmethod
    def _rpo(cls, value: object) -> timedelta:
        return parse_duration(value)  # type: ignore[arg-type]

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return check_schedule(value)


class SnapshotPolicy(BaseModel):
    """Snapshot the resources of ``target`` tagged ``tag_key`` (= ``tag_value``), copy them, keep them by retention."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=POLICY_NAME_PATTERN)
    description: str = ""
    target: str
    tag_key: str = Field(min_length=1)
    tag_value: str | None = None  # None: any value of tag_key
    resource_types: tuple[str, ...] = SNAPSHOT_TYPES
    schedule: str = "@daily"
    #: A second region for disaster recovery (EBS and RDS snapshots are copied there).
    copy_to_region: str | None = None
    retention: Retention = Retention()

    @field_validator("resource_types")
    @classmethod
    def _types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(SNAPSHOT_TYPES))
        if unknown or not value:
            raise ValueError(f"resource_types must be some of {', '.join(SNAPSHOT_TYPES)}; not {unknown or value}")
        return value

    @field_validator("schedule")
    @classmethod
    def _snapshot_schedule(cls, value: str) -> str:
        return check_schedule(value)


class BackupConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    policies: tuple[BackupPolicy, ...] = ()
    snapshot_policies: tuple[SnapshotPolicy, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> BackupConfig:
        names = [p.name for p in self.policies] + [p.name for p in self.snapshot_policies]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate policy names: {', '.join(dupes)}")
        reserved = sorted(set(names) & RESERVED_NAMES)
        if reserved:
            raise ValueError(f"reserved policy names (folders of data/backup/): {', '.join(reserved)}")
        return self

    def get(self, name: str) -> BackupPolicy:
        for policy in self.policies:
            if policy.name == name:
                return policy
        known = ", ".join(p.name for p in self.policies) or "none"
        raise BackupPolicyError(f"unknown backup policy {name!r}; known: {known}")

    def snapshot_policy(self, name: str) -> SnapshotPolicy:
        for policy in self.snapshot_policies:
            if policy.name == name:
                return policy
        known = ", ".join(p.name for p in self.snapshot_policies) or "none"
        raise BackupPolicyError(f"unknown snapshot policy {name!r}; known: {known}")


def _check_targets(config: BackupConfig, targets: TargetsConfig, source: str) -> None:
    """Every policy names known targets; a backup lands in another cloud or another region."""
    problems: list[str] = []
    for policy in config.policies:
        try:
            src, dst = targets.get(policy.source.target), targets.get(policy.destination.target)
        except TargetsError as exc:
            problems.append(f"policy {policy.name}: {exc}")
            continue
        src_region = policy.source.region or src.regions[0]
        dst_region = policy.destination.region or dst.regions[0]
        if src.cloud == dst.cloud and src_region == dst_region:
            problems.append(f"policy {policy.name}: destination {policy.destination.describe()} is in the same cloud "
                            f"and region as the source ({src.cloud} {src_region}): use another cloud or region")
        if policy.immutability and dst.cloud != "aws":
            problems.append(f"policy {policy.name}: immutability is supported on an S3 destination (Object Lock) "
                            f"only, not {dst.cloud}")
        if (src.name, policy.source.container) == (dst.name, policy.destination.container) and (
            policy.destination.prefix.startswith(policy.source.prefix)
        ):
            problems.append(f"policy {policy.name}: the backup store lies inside the source")
    for snap in config.snapshot_policies:
        try:
            target = targets.get(snap.target)
        except TargetsError as exc:
            problems.append(f"snapshot policy {snap.name}: {exc}")
            continue
        if target.cloud != "aws":
            problems.append(f"snapshot policy {snap.name}: snapshots are built for aws targets, not {target.cloud}")
        if snap.copy_to_region and snap.copy_to_region in target.regions[:1]:
            problems.append(f"snapshot policy {snap.name}: copy_to_region must differ from the target's home region")
    if problems:
        raise BackupPolicyError(f"{source}: " + "; ".join(problems))


def parse_policies(text: str, source: str = "<string>", targets: TargetsConfig | None = None) -> BackupConfig:
    """Parse and validate a policies document (against the targets file)."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise BackupPolicyError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise BackupPolicyError(f"{source}: expected a mapping with 'policies' and/or 'snapshot_policies'")
    try:
        config = BackupConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ".".join(str(p) for p in loc) or "<root>"
            if len(loc) >= 2 and loc[0] in ("policies", "snapshot_policies") and isinstance(loc[1], int):
                entries = raw.get(str(loc[0])) or []
                name = entries[loc[1]].get("name") if loc[1] < len(entries) and isinstance(entries[loc[1]], dict) else None
                field = ".".join(str(p) for p in loc[2:]) or "<entry>"
                where = f"{'snapshot policy' if loc[0] == 'snapshot_policies' else 'policy'} {name or f'#{loc[1] + 1}'}: {field}"
            problems.append(f"{where}: {err['msg']}")
        raise BackupPolicyError(f"{source}: invalid backup policies: " + "; ".join(problems)) from exc
    _check_targets(config, targets or load_targets(), source)
    return config


def policies_file() -> Path:
    return Path(os.environ.get("RUNBOOKS_BACKUP_POLICIES", DEFAULT_POLICIES_FILE))


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> BackupConfig:
    return parse_policies(Path(path).read_text(), source=path)


def load_policies(path: Path | str | None = None) -> BackupConfig:
    """Load the policies file (cached per path and modification time)."""
    file = Path(path) if path else policies_file()
    if not file.exists():
        raise BackupPolicyError(f"backup policies file not found: {file}")
    return _load_cached(str(file), file.stat().st_mtime)
