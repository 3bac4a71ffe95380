"""The compliance rule registry: metadata as data, logic as a small pure function over one record.

A rule is one decorated function in a module of ``include/compliance/rules/``: one module per cloud
service (``rules/aws/s3.py``, ``rules/gcp/storage.py``, ``rules/azure/storage.py`` ...) and
``rules/common.py`` for the cross-cloud ones. Every module of that package is imported by
:func:`load_rules` (found with ``pkgutil``; modules whose name starts with ``_`` are helpers), so
adding a rule, or a new service file, touches one place::

    @rule(
        id="aws_s3_bucket_versioning",
        title="S3 buckets have versioning enabled",
        severity="medium",
        resource_types=("aws.s3.bucket",),
        rationale="...",
        remediation="...",
        frameworks={"AWS-SecurityHub": ["S3.14"]},
        fixer="aws.s3.versioning",
    )
    def s3_versioning(record: ResourceRecord, ctx: RuleContext) -> Verdict | None:
        return verdict(record.attributes.get("versioning"), "versioning is enabled", "versioning is off")

The function reads only the documented record fields (``docs/inventory-records.md``), the rule context
(target, scan time, thresholds, facts computed once per scan) and returns a :class:`Verdict`, or
``None`` when the rule does not apply to that resource. It never calls a cloud, and no rule module
imports a cloud SDK.

Metadata is validated when the rule is registered: a bad id, an unknown severity, resource type or
fixer, an empty remediation, a duplicate id, or a framework control that is not in that framework's
catalogue (``config/compliance/frameworks/``, see :mod:`include.compliance.frameworks`) raises
:class:`RuleDefinitionError` naming the rule. A broken rule stops the scan loudly; it is never skipped.

A rule cites a framework control when it checks the setting that control checks, on the same kind of
resource; a threshold may differ from the control's default (both are parameters), but a weaker or a
different check is not cited (e.g. "root has MFA" is not FSBP IAM.6, "root has hardware MFA").
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from include.compliance.frameworks import CatalogueError, check_citation
from include.compliance.model import SEVERITIES, Severity, Verdict
from include.paths import PROJECT_ROOT
from include.records import ResourceRecord
from include.targets import CLOUDS, Target

CONTRACT_DOC = PROJECT_ROOT / "docs" / "inventory-records.md"

#: Fixers the remediation runbook implements (``include/compliance/remediation/``).
FIXERS: tuple[str, ...] = (
    "aws.s3.block_public_access",
    "aws.s3.default_encryption",
    "aws.s3.versioning",
    "gcp.gcs.uniform_access_and_pap",
    "azure.blob.private_access",
    "aws.rds.backup_retention",
    "tags.required",
)
RULE_ID = re.compile(r"^(aws|gcp|azure)_[a-z0-9]+(_[a-z0-9]+)+$")
#: The package whose every module registers rules when imported (no cloud SDK in any of them).
RULES_PACKAGE = "include.compliance.rules"


class RuleDefinitionError(ValueError):
    """A rule's metadata is invalid (raised at registration, naming the rule)."""


class RuleError(RuntimeError):
    """A rule function raised while evaluating a resource (names the rule and the resource)."""


@lru_cache(maxsize=1)
def contract_resource_types() -> frozenset[str]:
    """Resource types documented in ``docs/inventory-records.md`` (the only ones a rule may read)."""
    try:
        text = CONTRACT_DOC.read_text()
    except OSError as exc:
        raise RuleDefinitionError(f"cannot read the record contract {CONTRACT_DOC}: {exc}") from exc
    found = frozenset(re.findall(r"^\| `([a-z]+\.[a-z0-9_]+\.[a-z0-9_]+)` \|", text, re.MULTILINE))
    if not found:
        raise RuleDefinitionError(f"{CONTRACT_DOC} documents no resource types")
    return found


ParamValue = int | float | str | bool | tuple[str, ...]


@dataclass(frozen=True)
class RuleMeta:
    """What a rule is, as data: reports, waivers, remediation and the policy read only this."""

    id: str
    title: str
    severity: Severity
    cloud: str
    resource_types: tuple[str, ...]
    rationale: str
    remediation: str
    frameworks: Mapping[str, tuple[str, ...]]
    fixer: str | None = None
    enabled: bool = True
    #: Thresholds with their defaults (overridable per rule in config/compliance/policy.yaml).
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    def frameworks_dict(self) -> dict[str, list[str]]:
        """Frameworks as plain JSON-able data (the shape :class:`Finding` carries)."""
        return {name: list(ids) for name, ids in self.frameworks.items()}

    def to_dict(self) -> dict[str, Any]:
        """The metadata as plain JSON-able data (rule listings, SARIF rule descriptors)."""
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "cloud": self.cloud,
            "resource_types": list(self.resource_types),
            "rationale": self.rationale,
            "remediation": self.remediation,
            "frameworks": self.frameworks_dict(),
            "fixer": self.fixer,
            "enabled": self.enabled,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
        }


class Facts(Mapping[str, Any]):
    """Facts shared by all rules of one scan, each computed at most once, on first use.

    Derived facts (registered with :func:`fact`) are functions of the whole record list, e.g. "which
    buckets receive CloudTrail logs". ``extra`` holds facts a caller fetched itself (passed to ``scan``);
    they win over derived facts of the same name.
    """

    def __init__(self, records: list[ResourceRecord], extra: Mapping[str, Any] | None = None) -> None:
        self._records = records
        self._values: dict[str, Any] = dict(extra or {})

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            if name not in _FACTS:
                raise KeyError(f"unknown fact {name!r}; known: {', '.join(sorted(_FACTS))}")
            self._values[name] = _FACTS[name](self._records)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(_FACTS) | set(self._values)))

    def __len__(self) -> int:
        return len(set(_FACTS) | set(self._values))


@dataclass(frozen=True)
class RuleContext:
    """What a rule may know besides the record: the target, the scan time, thresholds, shared facts."""

    now: datetime
    target: Target | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)

    def age_days(self, timestamp: str | None) -> float | None:
        """Days between an ISO-8601 UTC timestamp and the scan time (None stays None)."""
        if not timestamp:
            return None
        then = datetime.fromisoformat(str(timestamp))  # Python 3.11 reads the Z suffix
        if then.tzinfo is None:
            then = then.replace(tzinfo=UTC)
        return (self.now - then).total_seconds() / 86400.0


RuleFunc = Callable[[ResourceRecord, RuleContext], Verdict | None]


@dataclass(frozen=True)
class Rule:
    meta: RuleMeta
    func: RuleFunc

    @property
    def id(self) -> str:
        """The rule id (``meta.id``)."""
        return self.meta.id

    def applies_to(self, record: ResourceRecord) -> bool:
        """Whether the record's resource type is one the rule evaluates."""
        return record.resource_type in self.meta.resource_types


_RULES: dict[str, Rule] = {}
_FACTS: dict[str, Callable[[list[ResourceRecord]], Any]] = {}


def validate_meta(meta: RuleMeta) -> None:
    """Raise :class:`RuleDefinitionError` naming the rule when its metadata is not valid."""
    _check_identity(meta)
    _check_texts(meta)
    _check_resource_types(meta)
    _check_frameworks(meta)
    _check_fixer_and_params(meta)


def _bad(meta: RuleMeta, problem: str) -> RuleDefinitionError:
    return RuleDefinitionError(f"rule {meta.id!r}: {problem}")


def _check_identity(meta: RuleMeta) -> None:
    if not isinstance(meta.id, str) or not RULE_ID.match(meta.id):
        raise _bad(meta, "id must be snake_case and start with its cloud (aws_ / gcp_ / azure_)")
    if meta.cloud not in CLOUDS:
        raise _bad(meta, f"unknown cloud {meta.cloud!r} (known: {', '.join(CLOUDS)})")
    if not meta.id.startswith(meta.cloud + "_"):
        raise _bad(meta, f"id must start with its cloud {meta.cloud!r}")
    if meta.severity not in SEVERITIES:
        raise _bad(meta, f"unknown severity {meta.severity!r} (known: {', '.join(SEVERITIES)})")


def _check_texts(meta: RuleMeta) -> None:
    for name in ("title", "rationale", "remediation"):
        value = getattr(meta, name)
        if not isinstance(value, str) or not value.strip():
            raise _bad(meta, f"{name} is empty")


def _check_resource_types(meta: RuleMeta) -> None:
    if not meta.resource_types:
        raise _bad(meta, "names no resource type")
    contract = contract_resource_types()
    for resource_type in meta.resource_types:
        if resource_type not in contract:
            raise _bad(meta, f"resource type {resource_type!r} is not in docs/inventory-records.md")
        if not resource_type.startswith(meta.cloud + "."):
            raise _bad(meta, f"resource type {resource_type!r} is not a {meta.cloud} type")


def _check_frameworks(meta: RuleMeta) -> None:
    if not meta.frameworks:
        raise _bad(meta, "maps to no framework control (use 'Internal' for the project's own baseline)")
    for framework, controls in meta.frameworks.items():
        try:
            problem = check_citation(framework, tuple(controls), meta.cloud)
        except CatalogueError as exc:
            raise _bad(meta, f"cannot check its framework controls: {exc}") from exc
        if problem:
            raise _bad(meta, problem)


def _check_fixer_and_params(meta: RuleMeta) -> None:
    if meta.fixer is not None and meta.fixer not in FIXERS:
        raise _bad(meta, f"unknown fixer {meta.fixer!r} (known: {', '.join(FIXERS)})")
    for key, value in meta.params.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", key):
            raise _bad(meta, f"parameter name {key!r} is not snake_case")
        if not isinstance(value, (int, float, str, bool, tuple)):
            raise _bad(meta, f"parameter {key!r} must be a number, string, bool or tuple of strings")


def register(meta: RuleMeta, func: RuleFunc) -> Rule:
    """Validate ``meta`` and add the rule; a second rule with the same id is an error."""
    validate_meta(meta)
    existing = _RULES.get(meta.id)
    if existing is not None:
        if existing.func is func and existing.meta == meta:
            return existing  # the same module imported twice (e.g. under two names)
        raise RuleDefinitionError(f"rule {meta.id!r}: registered twice")
    entry = Rule(meta, func)
    _RULES[meta.id] = entry
    return entry


def rule(
    *,
    id: str,
    title: str,
    severity: Severity,
    resource_types: Iterable[str],
    rationale: str,
    remediation: str,
    frameworks: Mapping[str, Iterable[str]],
    fixer: str | None = None,
    enabled: bool = True,
    params: Mapping[str, Any] | None = None,
    cloud: str | None = None,
) -> Callable[[RuleFunc], RuleFunc]:
    """Register the decorated function as a rule (``cloud`` defaults to the id's prefix)."""
    meta = RuleMeta(
        id=id,
        title=title,
        severity=severity,
        cloud=cloud or id.split("_", 1)[0],
        resource_types=tuple(resource_types),
        rationale=rationale,
        remediation=remediation,
        frameworks={name: tuple(ids) for name, ids in frameworks.items()},
        fixer=fixer,
        enabled=enabled,
        params={k: tuple(v) if isinstance(v, list) else v for k, v in (params or {}).items()},
    )

    def decorate(func: RuleFunc) -> RuleFunc:
        register(meta, func)
        return func

    return decorate


def fact(name: str) -> Callable[[Callable[[list[ResourceRecord]], Any]], Callable[[list[ResourceRecord]], Any]]:
    """Register a derived fact: a pure function of all records of a scan, computed once per scan."""

    def decorate(func: Callable[[list[ResourceRecord]], Any]) -> Callable[[list[ResourceRecord]], Any]:
        if name in _FACTS and _FACTS[name] is not func:
            raise RuleDefinitionError(f"fact {name!r} registered twice")
        _FACTS[name] = func
        return func

    return decorate


@lru_cache(maxsize=1)
def rule_modules() -> tuple[str, ...]:
    """Every module of :data:`RULES_PACKAGE`, sub-packages included, except ``_helpers``-style ones."""
    package = importlib.import_module(RULES_PACKAGE)
    found = [
        info.name
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{RULES_PACKAGE}.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return tuple(sorted(found))


def load_rules() -> None:
    """Import every rule module (idempotent): each registers its rules on first import."""
    for module in rule_modules():
        importlib.import_module(module)


def all_rules() -> list[Rule]:
    """Every registered rule, sorted by id."""
    load_rules()
    return [_RULES[key] for key in sorted(_RULES)]


def get_rule(rule_id: str) -> Rule:
    """The rule with id ``rule_id``; KeyError naming it when there is none."""
    load_rules()
    try:
        return _RULES[rule_id]
    except KeyError:
        raise KeyError(f"unknown rule {rule_id!r}") from None


def rule_ids() -> list[str]:
    """Every registered rule id, sorted."""
    load_rules()
    return sorted(_RULES)


# ---- helpers for rule functions ------------------------------------------------------------------------


def verdict(passed: bool, ok: str, failed: str, **evidence: Any) -> Verdict:
    """A verdict whose detail is ``ok`` or ``failed`` depending on ``passed``."""
    return Verdict(passed=bool(passed), detail=ok if passed else failed, evidence=evidence)


def tag_key(key: str) -> str:
    """Canonical tag key: case-insensitive, ``_`` == ``-`` (Azure metadata names cannot hold ``-``)."""
    return key.strip().lower().replace("_", "-")


def tag_value(record: ResourceRecord, key: str) -> str | None:
    """The record's tag/label/metadata ``key`` (canonical match), or None."""
    wanted = tag_key(key)
    for name, value in record.tags.items():
        if tag_key(name) == wanted:
            return value
    return None
