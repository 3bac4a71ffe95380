"""Evaluate the rule registry over an inventory: one finding per (rule, applicable resource).

The scan is a pure function of its inputs (records, targets, scan time, waivers, policy, facts): it
calls no cloud, so the same inventory scanned twice gives the same findings in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from include.compliance.model import Finding, Waiver, finding_id
from include.compliance.policy import Policy
from include.compliance.registry import (
    Facts,
    Rule,
    RuleContext,
    RuleError,
    all_rules,
    get_rule,
)
from include.compliance.waivers import apply_waivers
from include.records import ResourceRecord
from include.targets import Target, TargetsConfig


def select_rules(rules: Iterable[str | Rule] | None = None, policy: Policy | None = None) -> list[Rule]:
    """The rules to run: the named ones (unknown names raise), else every enabled, non-disabled rule."""
    if rules is not None:
        chosen = [r if isinstance(r, Rule) else get_rule(r) for r in rules]
        return sorted({r.id: r for r in chosen}.values(), key=lambda r: r.id)
    policy = policy or Policy()
    return [r for r in all_rules() if policy.enabled(r.meta)]


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def scan(
    records: Iterable[ResourceRecord],
    targets_config: TargetsConfig | Iterable[Target] | None,
    *,
    now: datetime,
    rules: Iterable[str | Rule] | None = None,
    waivers: Iterable[Waiver] = (),
    extra_facts: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> list[Finding]:
    """Run ``rules`` (default: the enabled ones) over ``records`` and return the findings.

    ``now`` is the scan time every age is measured against. A rule function that raises stops the scan
    with a :class:`RuleError` naming the rule and the resource.
    """
    now = _utc(now)
    policy = policy or Policy()
    records = list(records)
    targets = (
        {t.name: t for t in targets_config.targets}
        if isinstance(targets_config, TargetsConfig)
        else {t.name: t for t in (targets_config or [])}
    )
    selected = select_rules(rules, policy)
    by_type: dict[str, list[Rule]] = {}
    for entry in selected:
        for resource_type in entry.meta.resource_types:
            by_type.setdefault(resource_type, []).append(entry)
    facts = Facts(records, extra_facts)
    params = {entry.id: policy.params_for(entry.meta) for entry in selected}
    contexts: dict[tuple[str, str], RuleContext] = {}

    findings: list[Finding] = []
    for record in records:
        for entry in by_type.get(record.resource_type, ()):
            key = (entry.id, record.target)
            ctx = contexts.get(key)
            if ctx is None:
                ctx = contexts[key] = RuleContext(
                    now=now, target=targets.get(record.target), params=params[entry.id], facts=facts
                )
            try:
                result = entry.func(record, ctx)
            except Exception as exc:
                raise RuleError(
                    f"rule {entry.id} failed on {record.resource_id} (target {record.target}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if result is None:
                continue
            meta = entry.meta
            findings.append(
                Finding(
                    finding_id=finding_id(meta.id, record.target, record.resource_id),
                    rule_id=meta.id,
                    title=meta.title,
                    severity=meta.severity,
                    status="pass" if result.passed else "fail",
                    cloud=record.cloud,
                    target=record.target,
                    account=record.account,
                    region=record.region,
                    resource_type=record.resource_type,
                    resource_id=record.resource_id,
                    resource_name=record.name,
                    detail=result.detail,
                    remediation=meta.remediation,
                    frameworks=meta.frameworks_dict(),
                    evidence=dict(result.evidence),
                    lifecycle="new" if not result.passed else None,
                    fixer=meta.fixer,
                )
            )
    findings = apply_waivers(findings, list(waivers), now)
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Deterministic order: cloud, target, rule, resource."""
    return sorted(findings, key=lambda f: (f.cloud, f.target, f.rule_id, f.resource_id))


def failing(findings: Iterable[Finding], severities: Iterable[str]) -> list[Finding]:
    """New or still-open failures (not waived, not resolved) of the given severities."""
    wanted = set(severities)
    return [
        f for f in findings
        if f.status == "fail" and f.severity in wanted and f.lifecycle in ("new", "open")
    ]
