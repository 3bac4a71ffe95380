"""The cost_hygiene runbook: its request, the waste report, and the cleanup change set.

``find_waste`` reads the latest published inventory (what ``inventory_estate`` wrote), finds waste with
:mod:`include.cost.hygiene`, prices it with the tables in ``config/pricing/``, writes the report
(``data/cost/<run id>/report.json``, ``report.md``, ``findings.csv``) and resolves the cleanup the request
asks for (``cleanup``: categories; ``resources``: optionally only these) into change-engine items.
Cleanup is the change engine's: plan (reads only, also in a dry run), approval (always: a human approves
the exact list), apply under rate control and the ledger, verify, audit, result.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.changes.engine import Item, Resolver
from include.changes.model import RequestError
from include.changes.rate import RateControl
from include.changes.report import Wording
from include.changes.runbook import ChangeRunbook, ChangeSet, request_problems
from include.cost.hygiene import CATEGORIES, Finding, Options, find_waste, totals
from include.cost.pricing import PriceTable, PricingError, load_tables
from include.fileio import atomic_write_text
from include.paths import DataPath, data_root, safe_segment
from include.records import ResourceRecord

WORDING = Wording(title="Clean up cost waste", results_dir="cost", noun="cleanup", nouns="cleanups",
                  done_status="cleaned_up", nothing_status="nothing_to_clean", in_state="already clean")


class CostError(RequestError):
    """A cost_hygiene request cannot be honoured (bad parameter, no inventory, a bad price table)."""


@dataclass(frozen=True)
class Request:
    """What to check and what to clean up (validated; built from the DAG params)."""

    stopped_days: int = 30
    snapshot_retention_days: int = 90
    cost_tags: tuple[str, ...] = ("owner", "cost-center")
    cleanup: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    tag_values: dict[str, str] = field(default_factory=dict)
    snapshot_before_delete: bool = True
    dry_run: bool = True
    reason: str = ""
    max_concurrency: str = "1"
    max_errors: str = "0"

    def __post_init__(self) -> None:
        for name in ("cost_tags", "cleanup", "resources"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = []
        unknown = [c for c in self.cleanup if c not in CATEGORIES]
        if unknown:
            problems.append(f"unknown cleanup categories {', '.join(unknown)}; known: {', '.join(CATEGORIES)}")
        if self.resources and not self.cleanup:
            problems.append("resources narrows a cleanup: give cleanup categories too")
        if "missing_cost_tags" in self.cleanup and not self.tag_values and not self.dry_run:
            problems.append('cleanup missing_cost_tags needs tag_values, e.g. {"owner": "team-a", "cost-center": "cc-1"}')
        problems += request_problems(dry_run=self.dry_run, reason=self.reason, max_concurrency=self.max_concurrency,
                                     max_errors=self.max_errors, reason_needed=bool(self.cleanup))
        try:
            Options(self.stopped_days, self.snapshot_retention_days, self.cost_tags)
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise CostError("; ".join(problems))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        def strings(value: Any) -> tuple[str, ...]:
            if value in (None, "", []):
                return ()
            return tuple(dict.fromkeys(str(v).strip() for v in (value if isinstance(value, list) else [value])))

        tag_values = params.get("tag_values") or {}
        if not isinstance(tag_values, Mapping):
            raise CostError("tag_values must map tag keys to string values")
        def days(name: str, default: int) -> int:
            value = params.get(name)
            if value is None:
                return default
            if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
                raise CostError(f"{name} must be a whole number of days >= 0, not {value!r}")
            return int(value)

        return cls(
            stopped_days=days("stopped_days", 30),
            snapshot_retention_days=days("snapshot_retention_days", 90),
            cost_tags=strings(params.get("cost_tags")) or ("owner", "cost-center"),
            cleanup=strings(params.get("cleanup")), resources=strings(params.get("resources")),
            tag_values={str(k): str(v) for k, v in tag_values.items()},
            snapshot_before_delete=params.get("snapshot_before_delete") is not False,
            dry_run=params.get("dry_run") is not False, reason=str(params.get("reason") or ""),
            max_concurrency=str(params.get("max_concurrency") or "1"), max_errors=str(params.get("max_errors") or "0"),
        )

    @property
    def options(self) -> Options:
        return Options(self.stopped_days, self.snapshot_retention_days, self.cost_tags)

    def step_options(self) -> dict[str, Any]:
        return {"tag_values": dict(self.tag_values), "snapshot_before_delete": self.snapshot_before_delete}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Request:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# ---- the report ---------------------------------------------------------------------------------------------
def report_document(findings: Sequence[Finding], tables: Mapping[str, PriceTable], *, inventory: Mapping[str, Any],
                    request: Request, now: datetime) -> dict[str, Any]:
    currencies = sorted({t.currency for t in tables.values()})
    return {
        "checked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "inventory": {k: inventory.get(k) for k in ("run_id", "collected_at", "path", "complete")},
        "options": {"stopped_days": request.stopped_days, "snapshot_retention_days": request.snapshot_retention_days,
                    "cost_tags": list(request.cost_tags)},
        "currency": currencies[0] if len(currencies) == 1 else currencies,
        "prices": {cloud: {"recorded": t.recorded, "sources": list(t.sources)} for cloud, t in tables.items()},
        "totals": totals(findings),
        "findings": [f.to_dict() for f in sorted(findings, key=lambda f: (-(f.monthly_cost or 0), f.category,
                                                                           f.resource_id))],
    }


def render(document: Mapping[str, Any]) -> str:
    money = document["currency"] if isinstance(document["currency"], str) else "/".join(document["currency"])
    all_ = document["totals"]["all"]
    lines = ["# Cost hygiene", "",
             f"Checked {document['checked_at']} from inventory `{document['inventory']['run_id']}` "
             f"(collected {document['inventory']['collected_at']}). Estimates in {money} per month from list "
             "prices: " + "; ".join(f"{c} recorded {p['recorded']}" for c, p in document["prices"].items()) + ".",
             "", f"**{all_['resources']} resource(s), about {all_['monthly_cost']:.2f} {money}/month** "
                 f"({all_['unpriced']} without a price).", ""]
    for title, key in (("By category", "by_category"), ("By target", "by_target"), ("By owner", "by_owner")):
        lines += [f"## {title}", "", "| | resources | per month | unpriced |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {v['resources']} | {v['monthly_cost']:.2f} | {v['unpriced']} |"
                  for name, v in document["totals"][key].items()]
        lines.append("")
    lines += ["## Findings", "", "| category | resource | target | owner | per month | why | cleanup |",
              "|---|---|---|---|---:|---|---|"]
    for f in document["findings"]:
        cost = "-" if f["monthly_cost"] is None else f"{f['monthly_cost']:.2f}"
        lines.append(f"| {f['category']} | `{f['name']}` | {f['target']} | {f['owner']} | {cost} | {f['detail']}; "
                     f"{f['basis']} | {f['cleanup'] or '-'} |")
    return "\n".join(lines) + "\n"


def findings_csv(findings: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    columns = ["category", "cloud", "target", "region", "resource_type", "resource_id", "name", "owner",
               "monthly_cost", "basis", "detail", "cleanup"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in findings:
        writer.writerow(row)
    return out.getvalue()


def write_report(document: Mapping[str, Any], run_id: str, base: DataPath | None = None) -> dict[str, str]:
    folder = (base or data_root()) / "cost" / safe_segment(run_id)
    atomic_write_text(folder / "report.json", json.dumps(document, indent=2, sort_keys=True, default=str))
    atomic_write_text(folder / "report.md", render(document))
    atomic_write_text(folder / "findings.csv", findings_csv(document["findings"]))
    return {"json": str(folder / "report.json"), "markdown": str(folder / "report.md"),
            "csv": str(folder / "findings.csv")}


# ---- cleanup items --------------------------------------------------------------------------------------------
def cleanup_items(findings: Sequence[Finding], records: Sequence[ResourceRecord], request: Request) -> list[Item]:
    """One item per (cleanup step, resource) the request asks for; a named resource that is not waste is an error."""
    by_id = {r.resource_id: r for r in records}
    wanted = [f for f in findings if f.category in request.cleanup and f.cleanup]
    if request.resources:
        names = set(request.resources)
        unknown = [n for n in request.resources
                   if not any(n in (f.resource_id, f.name) for f in wanted)]
        if unknown:
            raise CostError(f"not found among the findings of {', '.join(request.cleanup)}: {', '.join(unknown)}")
        wanted = [f for f in wanted if f.resource_id in names or f.name in names]
    items: dict[tuple[str, str], Item] = {}
    for finding in wanted:
        assert finding.cleanup is not None
        key = (finding.cleanup, finding.resource_id)
        labels = items[key].labels if key in items else {"categories": [], "monthly_cost": finding.monthly_cost}
        labels["categories"] = [*labels["categories"], finding.category]
        items[key] = Item(step=finding.cleanup, record=by_id[finding.resource_id], labels=labels)
    return sorted(items.values(), key=lambda i: (i.step, i.record.target, i.resource_id))


def find_waste_task(context: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """The ``find_waste`` task: report the waste, resolve the cleanup; a bad request fails once (no retry)."""
    from airflow.sdk.exceptions import AirflowFailException

    from include.inventory.store import latest, load_latest
    from include.params import check_conf

    check_conf(context)
    at = now or datetime.now(UTC)
    try:
        request = Request.from_params(context.get("params") or {})
        tables = load_tables()
        try:
            pointer, records = latest(), load_latest()
        except FileNotFoundError:
            raise CostError("no inventory has been published yet: run inventory_estate first") from None
        findings = find_waste(records, tables, now=at, options=request.options)
        items = cleanup_items(findings, records, request)
    except (RequestError, PricingError, ValueError) as exc:
        raise AirflowFailException(str(exc)) from None
    document = report_document(findings, tables, inventory=pointer, request=request, now=at)
    paths = write_report(document, str(context["run_id"]))
    overall = document["totals"]["all"]
    print(f"{overall['resources']} wasteful resource(s), about {overall['monthly_cost']:.2f} "
          f"{document['currency']}/month; report: {paths['markdown']}")
    for name, entry in document["totals"]["by_owner"].items():
        print(f"  owner {name}: {entry['resources']} resource(s), {entry['monthly_cost']:.2f}/month")
    change_set = ChangeSet(request=request.to_dict(), items=tuple(items), dry_run=request.dry_run,
                           reason=request.reason, extra={"report": paths})
    return {"paths": paths, "totals": document["totals"], "currency": document["currency"],
            "top": document["findings"][:10], "change_set": change_set.to_dict()}


def notify_task(found: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, str]:
    """A summary notification when there is waste (log and file always; Slack / e-mail when configured)."""
    from include.notify import Notification, send

    overall = found["totals"]["all"]
    if not overall["resources"]:
        print("no waste found: nothing to notify")
        return {}
    return send(Notification(
        title=f"Cost hygiene: {overall['resources']} wasteful resource(s), about {overall['monthly_cost']:.2f} "
              f"{found['currency']}/month",
        text="By owner: " + ", ".join(f"{owner} {v['monthly_cost']:.2f}" for owner, v in
                                      found["totals"]["by_owner"].items()),
        severity="info", runbook="cost_hygiene", run_id=str(context.get("run_id") or ""),
        link=found["paths"]["markdown"],
        items=[{"category": f["category"], "resource": f["name"], "owner": f["owner"], "per_month": f["monthly_cost"]}
               for f in found["top"]],
        fields={"totals": found["totals"]},
    ))


def _resolver(request: Mapping[str, Any]) -> Resolver:
    from include.cost.cleanup import resolver  # imports the AWS provider: only inside the cleanup tasks

    return resolver(Request.from_dict(request).step_options())


#: The cleanup as the change engine sees it: approval always (each cleanup deletes or changes something).
COST = ChangeRunbook(
    wording=WORDING,
    resolver=_resolver,
    rate=lambda request: RateControl(str(request.get("max_concurrency") or "1"), str(request.get("max_errors") or "0")),
)
