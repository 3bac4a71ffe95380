"""Records of the compliance domain: rule metadata, verdicts, findings.

These shapes are shared by the scanner (``include/compliance/engine.py``), the reports
(``include/compliance/reports/``) and the fixers (``include/compliance/remediation/``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
#: Outcome of one rule on one resource.
Status = Literal["fail", "pass", "waived"]
#: Where a failing (or waived) finding stands against the previous scan: ``new`` (not failing before),
#: ``open`` (failing in both; ``first_seen`` kept), ``resolved`` (failing before, passing or gone now).
#: Passing findings that were not failing before have no lifecycle (``None``).
Lifecycle = Literal["new", "open", "resolved"]


def finding_id(rule_id: str, target: str, resource_id: str) -> str:
    """Stable id of (rule, resource): the same resource breaking the same rule always gets the same id.

    Short and free of ``/``, spaces and ``:`` beyond the one separator, so it can be passed in run
    conf, URLs and SARIF fingerprints.
    """
    digest = hashlib.sha256(f"{target}|{resource_id}".encode()).hexdigest()[:16]
    return f"{rule_id}:{digest}"


@dataclass(frozen=True)
class Verdict:
    """What a rule function returns for one resource (``None`` from the function = not applicable)."""

    passed: bool
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Waiver:
    rule: str  # rule id, or "*"
    resource: str  # fnmatch pattern over resource_id (or name)
    reason: str
    owner: str
    expires: str  # ISO date YYYY-MM-DD; the waiver applies through the end of that day (UTC)


@dataclass(frozen=True)
class Finding:
    """One rule evaluated on one resource, as every report renders it."""

    finding_id: str
    rule_id: str
    title: str
    severity: Severity
    status: Status
    cloud: str
    target: str
    account: str
    region: str
    resource_type: str
    resource_id: str
    resource_name: str
    detail: str
    remediation: str
    frameworks: dict[str, list[str]]
    evidence: dict[str, Any] = field(default_factory=dict)
    waiver: dict[str, str] | None = None
    lifecycle: Lifecycle | None = "new"
    first_seen: str | None = None
    fixer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
