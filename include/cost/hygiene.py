"""Cost hygiene over the latest inventory: what costs money for nothing, and about how much per month.

Categories (each from the inventory record contract, docs/inventory-records.md):

==========================  ==================================================================  ===================
category                    found from                                                          estimate
==========================  ==================================================================  ===================
``unattached_volume``       ``aws.ec2.volume`` ``attached`` false                               size x volume price
``stopped_instance``        EC2 / Compute Engine ``state`` stopped / TERMINATED for more than   attached EBS volumes
                            ``stopped_days`` (``stopped_at``); Azure VMs stopped but not        (EC2); the VM size
                            deallocated (Azure reports no stop time: "since unknown")           (Azure: still billed)
``old_snapshot``            ``aws.ec2.snapshot`` older than its ``retention-days`` tag, else    size x snapshot price
                            ``snapshot_retention_days``                                         (an upper bound)
``bucket_without_lifecycle``  S3 / GCS buckets with ``lifecycle_rules`` 0                       stored bytes x price
``missing_cost_tags``       any priceable resource without every ``cost_tags`` key              what it costs
==========================  ==================================================================  ===================

A resource in two categories is counted once in the totals. Ages come from the record's timestamps and the
time of the check (``now``), never from the record itself (records carry no ages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.cost.pricing import PriceTable
from include.records import ResourceRecord

CATEGORIES = ("unattached_volume", "stopped_instance", "old_snapshot", "bucket_without_lifecycle",
              "missing_cost_tags")
#: The change-engine step that cleans each category up (see include/cost/cleanup.py).
CLEANUP_STEPS = {
    ("unattached_volume", "aws.ec2.volume"): "cost.aws.ec2.volume.delete",
    ("old_snapshot", "aws.ec2.snapshot"): "cost.aws.ec2.snapshot.delete",
    ("stopped_instance", "aws.ec2.instance"): "cost.aws.ec2.instance.terminate",
    ("bucket_without_lifecycle", "aws.s3.bucket"): "cost.aws.s3.lifecycle",
    ("bucket_without_lifecycle", "gcp.storage.bucket"): "cost.gcp.gcs.lifecycle",
}
#: Tag cleanup is the remediation fixer ``tags.required`` (it never overwrites a value).
TAGS_STEP = "tags.required"
TAGGABLE = ("aws.s3.bucket", "aws.ec2.instance", "aws.ec2.volume", "aws.rds.instance", "aws.dynamodb.table",
            "gcp.storage.bucket", "gcp.compute.instance", "azure.storage.container", "azure.compute.vm")
NO_OWNER = "(no owner)"


@dataclass(frozen=True)
class Options:
    """The thresholds of a check."""

    stopped_days: int = 30
    snapshot_retention_days: int = 90
    cost_tags: tuple[str, ...] = ("owner", "cost-center")

    def __post_init__(self) -> None:
        object.__setattr__(self, "cost_tags", tuple(self.cost_tags))
        if self.stopped_days < 0 or self.snapshot_retention_days < 0:
            raise ValueError("stopped_days and snapshot_retention_days are whole numbers of days >= 0")
        if not self.cost_tags or any(not str(t).strip() for t in self.cost_tags):
            raise ValueError("cost_tags needs at least one non-empty tag key")


@dataclass(frozen=True)
class Finding:
    """One resource in one category, with its estimated monthly cost (None: no price known)."""

    category: str
    cloud: str
    target: str
    region: str
    resource_type: str
    resource_id: str
    name: str
    owner: str
    monthly_cost: float | None
    basis: str  # how the estimate was made, or why there is none
    detail: str
    cleanup: str | None = None  # the step that cleans it up, when one exists
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _tag(record: ResourceRecord, key: str) -> str | None:
    canon = key.lower().replace("_", "-")
    for name, value in record.tags.items():
        if name.lower().replace("_", "-") == canon and str(value).strip():
            return str(value)
    return None


def _age_days(timestamp: Any, now: datetime) -> float | None:
    if not timestamp:
        return None
    when = datetime.fromisoformat(str(timestamp).replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds() / 86400


def _money(value: float) -> float:
    return round(value, 2)


class Estimator:
    """Monthly cost estimates of records from the price tables (each with its basis)."""

    def __init__(self, tables: Mapping[str, PriceTable], records: Sequence[ResourceRecord]) -> None:
        self.tables = tables
        self.volumes = {r.resource_id.rsplit("/", 1)[-1]: r for r in records if r.resource_type == "aws.ec2.volume"}

    def _priced(self, record: ResourceRecord, key: str, quantity: float, variant: str | None,
                what: str) -> tuple[float | None, str]:
        table = self.tables.get(record.cloud)
        if table is None:
            return None, f"no price table for {record.cloud}"
        price = table.price(key, record.region, variant)
        if price is None:
            return None, f"no {key} price for {variant or what} in {table.cloud} ({record.region})"
        hours = table.hours_per_month if price.unit == "hour" else 1.0
        cost = quantity * price.value * hours
        return _money(cost), (f"{what}: {quantity:g} x {price.value:g} {table.currency}/{price.unit}"
                              + (f" x {hours:g} h" if price.unit == "hour" else "") + f" ({price.region} price, "
                              f"recorded {table.recorded})")

    def volume(self, record: ResourceRecord) -> tuple[float | None, str]:
        size = float(record.attributes.get("size_gb") or 0)
        kind = str(record.attributes.get("volume_type") or "gp2")
        return self._priced(record, "volume_gb_month", size, kind, f"{size:g} GiB {kind}")

    def snapshot(self, record: ResourceRecord) -> tuple[float | None, str]:
        size = float(record.attributes.get("size_gb") or 0)
        return self._priced(record, "snapshot_gb_month", size, None, f"{size:g} GiB snapshot (full size: upper bound)")

    def bucket(self, record: ResourceRecord) -> tuple[float | None, str]:
        if "size_bytes" not in record.attributes:
            return None, "the inventory does not record this bucket's size"
        gigabytes = int(record.attributes["size_bytes"]) / 1024**3
        variant = str(record.attributes.get("storage_class") or "STANDARD") if record.cloud == "gcp" else None
        table = self.tables.get(record.cloud)
        entry = table.regions.get(table._region(record.region), {}).get("bucket_gb_month") if table else None
        return self._priced(record, "bucket_gb_month", gigabytes, variant if isinstance(entry, dict) else None,
                            f"{gigabytes:.3f} GiB stored")

    def stopped_instance(self, record: ResourceRecord) -> tuple[float | None, str]:
        if record.cloud == "aws":
            ids = list(record.attributes.get("volume_ids") or [])
            disks = [self.volumes[i] for i in ids if i in self.volumes]
            if not disks:
                return 0.0, "stopped: no compute charge; no attached EBS volume in the inventory"
            costs = [self.volume(disk) for disk in disks]
            if any(cost is None for cost, _ in costs):
                return None, "; ".join(basis for _, basis in costs)
            return _money(sum(cost or 0.0 for cost, _ in costs)), "stopped: its EBS volumes still bill: " + "; ".join(
                basis for _, basis in costs)
        if record.cloud == "azure":
            size = str(record.attributes.get("vm_size") or "")
            return self._priced(record, "instance_hour", 1, size, f"{size} stopped but not deallocated: still billed")
        return None, "stopped: its persistent disks still bill, but the inventory does not record their sizes"

    def running(self, record: ResourceRecord) -> tuple[float | None, str]:
        """What a resource costs per month as it is (for untagged resources)."""
        kind = record.resource_type
        if kind == "aws.ec2.volume":
            return self.volume(record)
        if kind == "aws.ec2.snapshot":
            return self.snapshot(record)
        if kind in ("aws.s3.bucket", "gcp.storage.bucket"):
            return self.bucket(record)
        if kind in ("aws.ec2.instance", "gcp.compute.instance", "azure.compute.vm"):
            if str(record.attributes.get("state") or "").lower() not in ("running", "pending", "staging",
                                                                           "provisioning"):
                return self.stopped_instance(record)
            size = str(record.attributes.get("instance_type") or record.attributes.get("machine_type")
                       or record.attributes.get("vm_size") or "")
            return self._priced(record, "instance_hour", 1, size, f"{size} running")
        if kind == "aws.rds.instance":
            size = str(record.attributes.get("instance_class") or "")
            return self._priced(record, "database_hour", 1, size, f"{size} (compute only)")
        if kind == "aws.dynamodb.table":
            gigabytes = int(record.attributes.get("size_bytes") or 0) / 1024**3
            return self._priced(record, "table_gb_month", gigabytes, None, f"{gigabytes:.3f} GiB stored")
        return None, f"no estimate for {kind}"


def _finding(record: ResourceRecord, category: str, cost: tuple[float | None, str], detail: str,
             facts: Mapping[str, Any] | None = None) -> Finding:
    step = CLEANUP_STEPS.get((category, record.resource_type))
    if category == "missing_cost_tags" and record.resource_type in TAGGABLE:
        step = TAGS_STEP
    return Finding(category=category, cloud=record.cloud, target=record.target, region=record.region,
                   resource_type=record.resource_type, resource_id=record.resource_id, name=record.name,
                   owner=_tag(record, "owner") or NO_OWNER, monthly_cost=cost[0], basis=cost[1], detail=detail,
                   cleanup=step, facts=dict(facts or {}))


def _stopped(record: ResourceRecord, options: Options, now: datetime) -> tuple[bool, dict[str, Any], str]:
    """(counts, facts, detail) for an instance: stopped longer than allowed (or, on Azure, since unknown)."""
    state = str(record.attributes.get("state") or "")
    if record.resource_type == "azure.compute.vm":
        # "stopped" keeps the VM allocated (billed); "deallocated" does not. Azure reports no stop time.
        return state == "stopped", {"state": state, "stopped_days": None}, \
            "stopped but not deallocated (Azure reports no stop time: since unknown)"
    if state not in ("stopped", "TERMINATED"):
        return False, {}, ""
    days = _age_days(record.attributes.get("stopped_at"), now)
    if days is None:
        return False, {}, ""  # stop time unknown: cannot say it is "more than N days"
    return days > options.stopped_days, {"state": state, "stopped_days": round(days, 1)}, \
        f"stopped for {days:.0f} days (more than {options.stopped_days})"


def find_waste(records: Iterable[ResourceRecord], tables: Mapping[str, PriceTable], *, now: datetime,
               options: Options | None = None) -> list[Finding]:
    """Every finding of every category over ``records`` (the latest inventory)."""
    opts = options or Options()
    listed = list(records)
    estimate = Estimator(tables, listed)
    found: list[Finding] = []
    for record in listed:
        kind = record.resource_type
        if kind == "aws.ec2.volume" and record.attributes.get("attached") is False:
            found.append(_finding(record, "unattached_volume", estimate.volume(record),
                                  f"not attached ({record.attributes.get('size_gb')} GiB "
                                  f"{record.attributes.get('volume_type')})"))
        if kind in ("aws.ec2.instance", "gcp.compute.instance", "azure.compute.vm"):
            counts, facts, detail = _stopped(record, opts, now)
            if counts:
                found.append(_finding(record, "stopped_instance", estimate.stopped_instance(record), detail, facts))
        if kind == "aws.ec2.snapshot":
            age = _age_days(record.attributes.get("created_at"), now)
            limit = int(_tag(record, "retention-days") or opts.snapshot_retention_days)
            if age is not None and age > limit:
                found.append(_finding(record, "old_snapshot", estimate.snapshot(record),
                                      f"{age:.0f} days old (retention {limit} days)",
                                      {"age_days": round(age, 1), "retention_days": limit}))
        if kind in ("aws.s3.bucket", "gcp.storage.bucket") and record.attributes.get("lifecycle_rules") == 0:
            found.append(_finding(record, "bucket_without_lifecycle", estimate.bucket(record),
                                  "no lifecycle rule: old versions and incomplete uploads are kept forever"))
        missing = [t for t in opts.cost_tags if _tag(record, t) is None]
        if missing and kind in TAGGABLE:
            found.append(_finding(record, "missing_cost_tags", estimate.running(record),
                                  f"missing cost-allocation tag(s): {', '.join(missing)}", {"missing": missing}))
    return found


def totals(findings: Sequence[Finding]) -> dict[str, Any]:
    """Totals per category, target and owner; a resource in several categories counts once outside ``by_category``."""
    def add(bucket: dict[str, dict[str, Any]], key: str, cost: float | None) -> None:
        entry = bucket.setdefault(key, {"resources": 0, "monthly_cost": 0.0, "unpriced": 0})
        entry["resources"] += 1
        if cost is None:
            entry["unpriced"] += 1
        else:
            entry["monthly_cost"] = _money(entry["monthly_cost"] + cost)

    by_category: dict[str, dict[str, Any]] = {}
    for finding in findings:
        add(by_category, finding.category, finding.monthly_cost)
    unique: dict[str, Finding] = {}
    for finding in findings:  # one cost per resource: the highest estimate among its findings
        seen = unique.get(finding.resource_id)
        if seen is None or (finding.monthly_cost or 0) > (seen.monthly_cost or 0):
            unique[finding.resource_id] = finding
    by_target: dict[str, dict[str, Any]] = {}
    by_owner: dict[str, dict[str, Any]] = {}
    overall: dict[str, dict[str, Any]] = {}
    for finding in unique.values():
        add(by_target, finding.target, finding.monthly_cost)
        add(by_owner, finding.owner, finding.monthly_cost)
        add(overall, "all", finding.monthly_cost)
    return {"all": overall.get("all", {"resources": 0, "monthly_cost": 0.0, "unpriced": 0}),
            "by_category": dict(sorted(by_category.items())), "by_target": dict(sorted(by_target.items())),
            "by_owner": dict(sorted(by_owner.items()))}
