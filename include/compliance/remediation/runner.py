"""The remediation runbook's own part: its request, and resolving it to change-engine items.

The request names what to fix in one of two forms:

- ``finding_ids``: findings of the latest compliance scan; each carries its rule's fixer;
- ``rule`` + ``resources``: a rule id (its metadata names the fixer) and resource ids (or unique names)
  from the latest inventory.

Everything is checked before anything is read or changed: unknown finding ids, unknown resources, a rule
without a fixer, a resource type the fixer does not handle, missing fixer options: one
:class:`RemediationError` lists every problem. Planning, approval, apply under rate control, the ledger,
verification, the audit trail and the result are the change engine's (:mod:`include.changes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from include.changes.engine import Item, StepCache
from include.changes.model import RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording
from include.changes.runbook import ChangeRunbook, request_problems
from include.compliance.model import Finding
from include.compliance.remediation.registry import RemediationError, get_fixer
from include.records import ResourceRecord
from include.targets import TargetsConfig, TargetsError, load_targets

DEFAULT_RETENTION_DAYS = 7

WORDING = Wording(
    title="Remediate compliance findings",
    results_dir="remediation",
    noun="compliance fix",
    nouns="compliance fixes",
    done_status="fixed",
    nothing_status="compliant",
    in_state="compliant",
)


# ---- the request ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """What to remediate and with which values (validated; built from the DAG params)."""

    finding_ids: tuple[str, ...] = ()
    rule: str | None = None
    resources: tuple[str, ...] = ()
    tag_values: dict[str, str] = field(default_factory=dict)
    retention_days: int = DEFAULT_RETENTION_DAYS
    kms_key_id: str | None = None
    reason: str = ""
    dry_run: bool = True
    max_concurrency: str = "1"
    max_errors: str = "100%"

    def __post_init__(self) -> None:
        # Lists arrive from JSON (run conf, XCom): keep tuples so the request stays immutable.
        object.__setattr__(self, "finding_ids", tuple(self.finding_ids))
        object.__setattr__(self, "resources", tuple(self.resources))
        problems: list[str] = []
        by_findings = bool(self.finding_ids)
        by_rule = bool(self.rule) or bool(self.resources)
        if by_findings and by_rule:
            problems.append("give either finding_ids, or rule + resources, not both")
        elif not by_findings and not by_rule:
            problems.append("nothing selected: give finding_ids, or rule + resources")
        elif by_rule and not self.rule:
            problems.append("resources given without a rule")
        elif by_rule and not self.resources:
            problems.append(f"rule {self.rule} given without resources")
        if any(not isinstance(f, str) or not f.strip() for f in self.finding_ids):
            problems.append("finding_ids must be non-empty strings")
        if any(not isinstance(r, str) or not r.strip() for r in self.resources):
            problems.append("resources must be non-empty strings")
        if not isinstance(self.retention_days, int) or isinstance(self.retention_days, bool) or not (
            1 <= self.retention_days <= 35
        ):
            problems.append(f"retention_days must be an integer 1..35, not {self.retention_days!r}")
        if not isinstance(self.tag_values, Mapping) or any(
            not str(k).strip() or not isinstance(v, str) for k, v in self.tag_values.items()
        ):
            problems.append("tag_values must map tag keys to string values")
        problems += request_problems(dry_run=self.dry_run, reason=self.reason,
                                    max_concurrency=self.max_concurrency, max_errors=self.max_errors)
        if problems:
            raise RemediationError("; ".join(problems))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        """Build from DAG params / run conf (null, empty strings and empty lists mean "not given")."""

        def strings(value: Any, name: str) -> tuple[str, ...]:
            if value in (None, "", []):
                return ()
            if isinstance(value, str):
                return (value,)
            if not isinstance(value, (list, tuple)):
                raise RemediationError(f"{name} must be a list of strings")
            return tuple(dict.fromkeys(str(v).strip() for v in value))

        def text(value: Any) -> str | None:
            return (str(value).strip() or None) if value not in (None, "") else None

        tag_values = params.get("tag_values") or {}
        if not isinstance(tag_values, Mapping):
            raise RemediationError("tag_values must map tag keys to string values")
        retention = params.get("retention_days")
        return cls(
            finding_ids=strings(params.get("finding_ids"), "finding_ids"),
            rule=text(params.get("rule")),
            resources=strings(params.get("resources"), "resources"),
            tag_values={str(k).strip(): v for k, v in tag_values.items()},
            retention_days=DEFAULT_RETENTION_DAYS if retention in (None, "") else retention,
            kms_key_id=text(params.get("kms_key_id")),
            reason=str(params.get("reason") or ""),
            dry_run=params.get("dry_run") is not False,  # only an explicit false applies
            max_concurrency=str(params.get("max_concurrency") or "1"),
            max_errors=str(params.get("max_errors") or "100%"),
        )

    @property
    def options(self) -> dict[str, Any]:
        """What the fixers read: ``tag_values``, ``retention_days``, ``kms_key_id``."""
        return {"tag_values": dict(self.tag_values), "retention_days": self.retention_days,
                "kms_key_id": self.kms_key_id}

    @property
    def rate(self) -> RateControl:
        return RateControl(self.max_concurrency, self.max_errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# ---- resolve -----------------------------------------------------------------------------------------
def _latest_findings() -> list[Finding]:
    from include.compliance.store import load_latest_findings

    return list(load_latest_findings())


def _latest_inventory() -> list[ResourceRecord]:
    from include.inventory.store import load_latest

    try:
        return load_latest()
    except FileNotFoundError as exc:
        raise RemediationError("no inventory has been collected yet: run the inventory runbook first") from exc


def _rule_fixer(rule_id: str) -> tuple[str | None, tuple[str, ...]]:
    """(fixer id, resource types) of a rule from the compliance rule registry."""
    from include.compliance.registry import get_rule

    try:
        meta = get_rule(rule_id).meta
    except KeyError as exc:
        raise RemediationError(f"unknown rule {rule_id!r}") from exc
    return meta.fixer, tuple(meta.resource_types)


def _record_from_finding(finding: Finding) -> ResourceRecord:
    """The resource a finding is about, as an inventory record (service = the resource type's middle part)."""
    return ResourceRecord(
        cloud=finding.cloud,
        target=finding.target,
        account=finding.account,
        region=finding.region,
        service=finding.resource_type.split(".")[1],
        resource_type=finding.resource_type,
        resource_id=finding.resource_id,
        name=finding.resource_name,
    )


def resolve(
    request: Request,
    *,
    findings: Callable[[], Sequence[Finding | Mapping[str, Any]]] | None = None,
    inventory: Callable[[], Sequence[ResourceRecord]] | None = None,
    targets: TargetsConfig | None = None,
) -> list[Item]:
    """Turn the request into (fixer, resource) items; raise one error listing every problem.

    Two findings that need the same fixer on the same resource become one item (labels: finding ids,
    rule ids).
    """
    problems: list[str] = []
    wanted: dict[tuple[str, str], Item] = {}
    if request.finding_ids:
        _items_from_findings(request, findings or _latest_findings, wanted, problems)
    else:
        _items_from_rule(request, inventory or _latest_inventory, wanted, problems)
    items = list(wanted.values())
    problems.extend(_item_problems(items, request, targets))
    if problems:
        raise RemediationError("cannot remediate:\n- " + "\n- ".join(dict.fromkeys(problems)))
    return sorted(items, key=lambda i: (i.step, i.record.target, i.resource_id))


def _want(
    wanted: dict[tuple[str, str], Item], fixer_id: str, record: ResourceRecord, finding_id: str | None, rule_id: str
) -> None:
    """Add (fixer, resource) to ``wanted``, or add the finding and rule to the labels of the item already there."""
    key = (fixer_id, record.key)
    item = wanted.get(key) or Item(step=fixer_id, record=record, labels={"finding_ids": [], "rule_ids": []})
    labels = {k: list(v) for k, v in item.labels.items()}
    if finding_id and finding_id not in labels["finding_ids"]:
        labels["finding_ids"].append(finding_id)
    if rule_id not in labels["rule_ids"]:
        labels["rule_ids"].append(rule_id)
    wanted[key] = replace(item, labels=labels)


def _items_from_findings(
    request: Request,
    findings: Callable[[], Sequence[Finding | Mapping[str, Any]]],
    wanted: dict[tuple[str, str], Item],
    problems: list[str],
) -> None:
    """The ``finding_ids`` form: each finding of the latest scan, with its rule's fixer."""
    loaded = [f if isinstance(f, Finding) else Finding.from_dict(dict(f)) for f in findings()]
    by_id = {f.finding_id: f for f in loaded}
    unknown = [fid for fid in request.finding_ids if fid not in by_id]
    if unknown:
        where = "the latest compliance scan" if loaded else "any scan (no compliance scan has run yet)"
        problems.append(f"unknown finding ids (not in {where}): {', '.join(unknown)}")
    for fid in request.finding_ids:
        finding = by_id.get(fid)
        if finding is None:
            continue
        if not finding.fixer:
            problems.append(f"finding {fid}: rule {finding.rule_id} has no fixer (fix it by hand: "
                            f"{finding.remediation})")
            continue
        _want(wanted, finding.fixer, _record_from_finding(finding), fid, finding.rule_id)


def _items_from_rule(
    request: Request,
    inventory: Callable[[], Sequence[ResourceRecord]],
    wanted: dict[tuple[str, str], Item],
    problems: list[str],
) -> None:
    """The ``rule`` + ``resources`` form: the rule's fixer on each named resource of the latest inventory."""
    assert request.rule is not None
    fixer_id, rule_types = _rule_fixer(request.rule)
    if not fixer_id:
        raise RemediationError(f"rule {request.rule} has no fixer: it cannot be remediated by this runbook")
    records = list(inventory())
    for wanted_id in request.resources:
        found = _match_resource(wanted_id, records, request.rule, rule_types)
        if isinstance(found, str):
            problems.append(found)
        else:
            _want(wanted, fixer_id, found, None, request.rule)


def _match_resource(
    wanted_id: str, records: Sequence[ResourceRecord], rule_id: str, rule_types: tuple[str, ...]
) -> ResourceRecord | str:
    """The one record ``wanted_id`` names (resource id or key, else a unique name), or the problem."""
    matches = [r for r in records if wanted_id in (r.resource_id, r.key)]
    if not matches:
        matches = [r for r in records if r.name == wanted_id and r.resource_type in rule_types]
    if not matches:
        return f"unknown resource {wanted_id!r} (not in the latest inventory)"
    if len(matches) > 1:
        return (f"resource {wanted_id!r} is ambiguous: "
                f"{', '.join(m.key for m in matches)}; give the full resource id")
    record = matches[0]
    if record.resource_type not in rule_types:
        return (f"resource {wanted_id!r} is a {record.resource_type}; rule {rule_id} applies "
                f"to {', '.join(rule_types)}")
    return record


def _item_problems(items: Sequence[Item], request: Request, targets: TargetsConfig | None) -> list[str]:
    """What stops the items from being planned: no fixer for the resource type, unknown target, missing input."""
    problems: list[str] = []
    config: TargetsConfig | None = targets
    for item in items:
        try:
            get_fixer(item.step, item.record.resource_type)
        except RemediationError as exc:
            problems.append(f"{item.resource_id}: {exc}")
        try:
            config = config or load_targets()
            config.get(item.record.target)
        except TargetsError as exc:
            problems.append(f"{item.resource_id}: {exc}")
    if any(i.step == "tags.required" for i in items) and not request.tag_values and not request.dry_run:
        # A dry run still plans everything else and reports these resources as needing input.
        problems.append('tags.required needs tag_values, e.g. {"owner": "platform-team", "cost-center": "cc-1"}')
    return problems


def resolver(options: Mapping[str, Any], targets: TargetsConfig | None = None) -> StepCache:
    """The engine's step resolver for remediation: the registered fixer of each item, with the run's options."""
    return StepCache(lambda item: get_fixer(item.step, item.record.resource_type).create(options, targets))


#: The remediation runbook as the change engine sees it: its wording, its fixers, its rate control.
REMEDIATION = ChangeRunbook(
    wording=WORDING,
    resolver=lambda request: resolver(Request.from_dict(request).options),
    rate=lambda request: Request.from_dict(request).rate,
)


def resolve_request(context: Mapping[str, Any]) -> dict[str, Any]:
    """The ``resolve_targets`` task: refuse unknown parameters, validate the request, resolve it to items.

    A bad request fails with ``AirflowFailException`` (no retry: it does not improve by retrying).
    """
    from airflow.sdk.exceptions import AirflowFailException

    from include.changes.runbook import ChangeSet
    from include.params import check_conf

    check_conf(context)
    try:
        request = Request.from_params(context.get("params") or {})
        items = resolve(request)
    except RequestError as exc:
        raise AirflowFailException(str(exc)) from None
    for item in items:
        print(f"{item.step}: [{item.record.target}] {item.resource_id} (findings: "
              f"{', '.join(item.labels.get('finding_ids') or []) or '-'})")
    return ChangeSet(request=request.to_dict(), items=tuple(items), dry_run=request.dry_run,
                     reason=request.reason).to_dict()
