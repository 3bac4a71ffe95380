"""Plan, apply and verify a change set: items in, items out (plain data, XCom-safe between tasks).

An :class:`Item` is one (step, resource) pair and what each phase did to it. A runbook builds the items
(from findings, a spec, a service catalog...), gives a ``resolve`` function that returns the
:class:`~include.changes.step.Step` for an item, and calls, one per task:

- :func:`plan_items`: read each resource and compute its change (reads only; a dry run runs it for real);
- :func:`apply_items`: apply the planned changes in dependency order under rate control, recording each in
  the ledger (when one is given) so a rerun for the same key resumes and never repeats a completed change;
- :func:`verify_items`: re-read each resource until it is in the desired state (bounded wait).

Each phase writes one audit record per item when an audit context is given.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from include.audit import AuditContext, Outcome, write_audit
from include.changes.ledger import Ledger
from include.changes.model import Applied, Change, NeedsInput
from include.changes.ordering import dependency_order
from include.changes.rate import RateControl
from include.changes.step import Step
from include.records import ResourceRecord
from include.redaction import error_text

log = logging.getLogger(__name__)

#: Apply outcomes. ``done_earlier``: the ledger shows an earlier run with the same key applied it.
APPLY_OUTCOMES = ("changed", "unchanged", "done_earlier", "failed", "not_attempted", "skipped")


@dataclass(frozen=True)
class Item:
    """One (step, resource) pair and what plan, apply and verify did to it."""

    step: str
    record: ResourceRecord
    #: Runbook context carried along (finding ids, rule ids, spec names...): shown, never interpreted.
    labels: dict[str, Any] = field(default_factory=dict)
    #: Ids (:attr:`id`) of items whose change must be applied before this one's.
    depends_on: tuple[str, ...] = ()
    planned: bool = False
    change: Change | None = None
    plan_error: str | None = None
    #: The plan failed only for want of a runbook parameter (:class:`NeedsInput`), not because of the cloud.
    needs_input: bool = False
    outcome: str | None = None  # one of APPLY_OUTCOMES
    applied: Applied | None = None
    apply_error: str | None = None
    note: str | None = None  # why not attempted / done earlier
    verified: bool | None = None
    verify_error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.step}|{self.record.target}|{self.record.resource_id}"

    @property
    def resource_id(self) -> str:
        return self.record.resource_id

    @property
    def failed(self) -> bool:
        """The plan failed for a reason other than missing input, or the apply failed."""
        return bool((self.plan_error and not self.needs_input) or self.outcome == "failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "record": self.record.to_dict(),
            "labels": dict(self.labels),
            "depends_on": list(self.depends_on),
            "planned": self.planned,
            "change": self.change.to_dict() if self.change else None,
            "plan_error": self.plan_error,
            "needs_input": self.needs_input,
            "outcome": self.outcome,
            "applied": self.applied.to_dict() if self.applied else None,
            "apply_error": self.apply_error,
            "note": self.note,
            "verified": self.verified,
            "verify_error": self.verify_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Item:
        return cls(
            step=data["step"],
            record=ResourceRecord.from_dict(data["record"]),
            labels=dict(data.get("labels") or {}),
            depends_on=tuple(data.get("depends_on") or ()),
            planned=bool(data.get("planned")),
            change=Change.from_dict(data["change"]) if data.get("change") else None,
            plan_error=data.get("plan_error"),
            needs_input=bool(data.get("needs_input")),
            outcome=data.get("outcome"),
            applied=Applied.from_dict(data["applied"]) if data.get("applied") else None,
            apply_error=data.get("apply_error"),
            note=data.get("note"),
            verified=data.get("verified"),
            verify_error=data.get("verify_error"),
        )


def to_dicts(items: Iterable[Item]) -> list[dict[str, Any]]:
    return [item.to_dict() for item in items]


def from_dicts(data: Iterable[Mapping[str, Any]]) -> list[Item]:
    return [Item.from_dict(d) for d in data]


Resolver = Callable[[Item], Step[Any]]


class StepCache:
    """One step instance per (step id, cloud) and thread, so clients are reused and never shared across threads."""

    def __init__(self, factory: Callable[[Item], Step[Any]]) -> None:
        self._factory = factory
        self._made: dict[tuple[int, str, str], Step[Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, item: Item) -> Step[Any]:
        key = (threading.get_ident(), item.step, item.record.cloud)
        with self._lock:
            step = self._made.get(key)
        if step is None:
            step = self._factory(item)
            with self._lock:
                self._made[key] = step
        return step


def _audit(audit: AuditContext | None, *, step: str, action: str, outcome: Outcome, resource: str | None = None,
           before: Any = None, after: Any = None, error: str | None = None) -> None:
    if audit is not None:
        write_audit(audit.record(step=step, action=action, outcome=outcome, resource=resource, before=before,
                                 after=after, error=error))


# ---- plan ----------------------------------------------------------------------------------------------
def _map(func: Callable[[Item], Item], items: Iterable[Item], max_workers: int) -> list[Item]:
    """``func`` over ``items`` in order, on up to ``max_workers`` threads (reads only: plan, verify)."""
    listed = list(items)
    if max_workers <= 1 or len(listed) <= 1:
        return [func(item) for item in listed]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(listed)), thread_name_prefix="read") as pool:
        return list(pool.map(func, listed))


def plan_items(items: Iterable[Item], resolve: Resolver, *, audit: AuditContext | None = None,
               max_workers: int = 1) -> list[Item]:
    """Read every resource and compute its change. Reads only; an error is kept on the item (and audited).

    ``max_workers`` > 1 reads that many resources at once (the items keep their order).
    """
    return _link_dependencies(_map(lambda item: _plan_one(item, resolve, audit), items, max_workers))


def _plan_one(item: Item, resolve: Resolver, audit: AuditContext | None) -> Item:
    try:
        change = resolve(item).plan(item.record)
    except Exception as exc:  # kept per resource, reported; the run fails on it (unless it only needs input)
        error = error_text(exc)
        needs_input = isinstance(exc, NeedsInput)
        log.error("plan %s %s: %s", item.step, item.resource_id, error)
        _audit(audit, step="plan", action=item.step, outcome="failed", resource=item.resource_id, error=error)
        return replace(item, planned=True, plan_error=error, needs_input=needs_input)
    if change is None:
        log.info("plan %s %s: already as wanted, nothing to change", item.step, item.resource_id)
        _audit(audit, step="plan", action=item.step, outcome="unchanged", resource=item.resource_id)
    else:
        log.info("plan %s %s: %s via %s", item.step, item.resource_id, change.summary, change.action)
        # Planning never writes: the change it found is "skipped" here.
        _audit(audit, step="plan", action=change.action, outcome="skipped", resource=item.resource_id,
               before=change.before, after=change.after)
    return replace(item, planned=True, change=change)


def _link_dependencies(items: list[Item]) -> list[Item]:
    """Turn item-level ``depends_on`` into change-level ``depends_on`` (items already in state impose nothing)."""
    by_id = {item.id: item for item in items}
    linked = []
    for item in items:
        if item.change is None or not item.depends_on:
            linked.append(item)
            continue
        keys = []
        for dep in item.depends_on:
            other = by_id.get(dep)
            if other is None:
                raise ValueError(f"item {item.id} depends on {dep}, which is not in the change set")
            if other.change is not None:
                keys.append(other.change.key)
            elif other.plan_error:  # a prerequisite that could not be planned blocks this change too
                keys.append(f"unplanned:{other.id}")
        linked.append(replace(item, change=replace(item.change, depends_on=tuple(keys))))
    return linked


def changes(items: Iterable[Item]) -> list[Item]:
    """The items with a planned change."""
    return [item for item in items if item.change is not None]


def plan_errors(items: Iterable[Item], *, include_needs_input: bool = True) -> list[Item]:
    """Items whose plan failed (optionally leaving out those that only lack a parameter)."""
    return [i for i in items if i.plan_error and (include_needs_input or not i.needs_input)]


#: A runbook's rule for which change sets need a human before apply (given the planned items).
ApprovalRule = Callable[[Sequence[Item]], bool]


def needs_approval(items: Iterable[Item], *, dry_run: bool, rule: ApprovalRule | None = None) -> bool:
    """Whether a human must approve before apply: not a dry run, something to change, and (when the runbook
    gives a ``rule``) the rule says so. Without a rule every change set with a change needs approval."""
    planned = list(items)
    if dry_run or not changes(planned):
        return False
    return True if rule is None else bool(rule(planned))


def destructive_changes(items: Sequence[Item]) -> bool:
    """An approval rule: only change sets with a destructive change (an overwrite, a delete) need a human."""
    return any(item.change is not None and item.change.destructive for item in items)


def permissions(items: Iterable[Item], resolve: Resolver) -> dict[str, list[str]]:
    """The cloud permissions the planned changes need, per cloud (from the steps' declarations)."""
    found: dict[str, set[str]] = {}
    for item in changes(items):
        found.setdefault(item.record.cloud, set()).update(resolve(item).permissions)
    return {cloud: sorted(perms) for cloud, perms in sorted(found.items())}


# ---- apply ---------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Mutable state of one apply: outcomes by change key, error count, why dispatching stopped."""

    results: dict[str, Item] = field(default_factory=dict)
    errors: int = 0
    stopped: str | None = None


def apply_items(
    items: Sequence[Item],
    resolve: Resolver,
    *,
    rate: RateControl | None = None,
    ledger: Ledger | None = None,
    ledger_key: str | None = None,
    holder: str = "",
    audit: AuditContext | None = None,
    lease_ttl: float = 120.0,
) -> list[Item]:
    """Apply every planned change in dependency order under ``rate``; return the items with their outcomes.

    Items whose plan failed are ``skipped``; items already in state are ``unchanged``. With a ledger, the
    whole apply holds the lease on ``ledger_key`` (two runs for one key never apply at once), changes the
    ledger shows as done under that key are ``done_earlier`` and not applied again, and every outcome is
    recorded. Once more changes failed than ``rate`` allows (or the lease is lost), nothing new is
    dispatched: what is in flight finishes and the rest is ``not_attempted`` with the reason.
    """
    rate = rate or RateControl()
    if ledger is not None and not ledger_key:
        raise ValueError("apply_items: a ledger needs a ledger_key")
    out: dict[str, Item] = {}
    pending: list[Item] = []
    for item in items:
        if item.plan_error:
            out[item.id] = replace(item, outcome="skipped", note="not applied: the plan failed")
            _audit(audit, step="apply", action=item.step, outcome="skipped", resource=item.resource_id,
                   error=f"not applied: the plan failed: {item.plan_error}")
        elif item.change is None:
            out[item.id] = replace(item, outcome="unchanged")
            _audit(audit, step="apply", action=item.step, outcome="unchanged", resource=item.resource_id)
        else:
            pending.append(item)
    if pending:
        if ledger is not None and ledger_key:
            with ledger.lease(ledger_key, holder, ttl=lease_ttl) as lease:
                done = ledger.done(ledger_key)
                run = _Dispatch(pending, resolve, rate, done, ledger, ledger_key, holder, audit,
                                lambda: lease.lost)()
        else:
            run = _Dispatch(pending, resolve, rate, {}, None, None, holder, audit, lambda: None)()
        for item in pending:
            assert item.change is not None
            out[item.id] = run.results[item.change.key]
    return [out[item.id] for item in items]


class _Dispatch:
    """One apply of the pending changes: dependency order, ledger, rate control and audit (see apply_items).

    The main thread decides what to dispatch and records every outcome; worker threads only apply.
    """

    def __init__(
        self,
        pending: list[Item],
        resolve: Resolver,
        rate: RateControl,
        done: Mapping[str, Any],
        ledger: Ledger | None,
        ledger_key: str | None,
        holder: str,
        audit: AuditContext | None,
        lost: Callable[[], str | None],
    ) -> None:
        self.resolve = resolve
        self.rate = rate
        self.done = done
        self.ledger = ledger
        self.ledger_key = ledger_key
        self.holder = holder
        self.audit = audit
        self.lost = lost
        self.by_key = {item.change.key: item for item in pending if item.change is not None}
        self.deps = {key: item.change.depends_on for key, item in self.by_key.items() if item.change is not None}
        self.order = dependency_order(
            list(self.by_key), {k: [d for d in v if d in self.by_key] for k, v in self.deps.items()}
        )
        self.run = _Run()
        self.allowed = rate.errors_allowed(len(self.order))
        self.queue: list[str] = []
        self.in_flight: dict[Future[Item], str] = {}

    def __call__(self) -> _Run:
        log.info("applying %d change(s): %s", len(self.order), self.rate.describe(len(self.order)))
        self._skip_done_earlier()
        self.queue = [key for key in self.order if key not in self.run.results]
        with ThreadPoolExecutor(max_workers=self.rate.concurrency(len(self.order)), thread_name_prefix="apply") as pool:
            while self.queue or self.in_flight:
                reason = self.run.stopped or self.lost()
                if reason and not self.run.stopped:
                    self.run.stopped = reason
                self._fill(pool)
                if not self.in_flight:
                    if self.run.stopped or not self.queue:
                        break
                    if not any(self._ready(k) for k in self.queue):  # cannot happen with a valid order; never spin
                        self.run.stopped = "dependencies could not be satisfied"
                        break
                    continue
                finished, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
                for future in finished:
                    self._collect(future)
        self._give_up_the_rest()
        return self.run

    def _skip_done_earlier(self) -> None:
        """The ledger says an earlier run with this key already did it."""
        for key in self.order:
            if key in self.done:
                entry = self.done[key]
                item = self.by_key[key]
                note = f"done earlier under the same key by {entry.holder} at {entry.recorded_at} ({entry.outcome})"
                self.run.results[key] = replace(item, outcome="done_earlier", note=note)
                _audit(self.audit, step="apply", action=item.change.action if item.change else item.step,
                       outcome="unchanged", resource=item.resource_id, error=None, after={"ledger": note})

    def _settle(self, key: str, item: Item) -> None:
        self.run.results[key] = item
        if (self.ledger is not None and self.ledger_key and item.change is not None
                and item.outcome in ("changed", "unchanged", "failed")):
            self.ledger.record(self.ledger_key, key, holder=self.holder, outcome=item.outcome,
                               detail={"resource": item.resource_id, "step": item.step, "error": item.apply_error})

    def _blocked(self, key: str) -> str | None:
        for dep in self.deps.get(key, ()):
            if dep.startswith("unplanned:"):
                return f"depends on {dep.split(':', 1)[1]}, whose plan failed"
            result = self.run.results.get(dep)
            if result is not None and result.outcome not in ("changed", "unchanged", "done_earlier"):
                return f"depends on {self.by_key[dep].resource_id} ({self.by_key[dep].step}), which {result.outcome}"
        return None

    def _ready(self, key: str) -> bool:
        return all(dep in self.run.results for dep in self.deps.get(key, ()) if not dep.startswith("unplanned:"))

    def _apply_one(self, item: Item) -> Item:
        """Runs in a worker thread."""
        assert item.change is not None
        step = self.resolve(item)
        applied = step.apply(item.change)
        return replace(item, outcome="changed" if applied.changed else "unchanged", applied=applied)

    def _fill(self, pool: ThreadPoolExecutor) -> None:
        """Dispatch ready changes, one at a time, up to the concurrency; a blocked one is not attempted."""
        progressed = True
        while progressed and not self.run.stopped and len(self.in_flight) < self.rate.concurrency(len(self.order)):
            progressed = False
            for key in list(self.queue):
                if not self._ready(key):
                    continue
                self.queue.remove(key)
                why = self._blocked(key)
                if why:
                    item = self.by_key[key]
                    self._settle(key, replace(item, outcome="not_attempted", note=why))
                    _audit(self.audit, step="apply", action=item.change.action if item.change else item.step,
                           outcome="skipped", resource=item.resource_id, error=f"not attempted: {why}")
                else:
                    self.in_flight[pool.submit(self._apply_one, self.by_key[key])] = key
                progressed = True
                break

    def _collect(self, future: Future[Item]) -> None:
        """Record a finished change; one failing is recorded, and rate control decides what follows."""
        key = self.in_flight.pop(future)
        item = self.by_key[key]
        assert item.change is not None
        change = item.change
        try:
            result = future.result()
        except Exception as exc:
            error = error_text(exc)
            log.error("apply %s %s failed: %s", item.step, item.resource_id, error)
            self._settle(key, replace(item, outcome="failed", apply_error=error))
            _audit(self.audit, step="apply", action=change.action, outcome="failed", resource=item.resource_id,
                   before=change.before, after=change.after, error=error)
            self.run.errors += 1
            if self.run.errors > self.allowed and not self.run.stopped:
                self.run.stopped = (f"{self.run.errors} change(s) failed, more than max_errors {self.rate.max_errors} "
                                    f"allows ({self.allowed}): nothing new was dispatched")
            return
        applied = result.applied
        log.info("apply %s %s: %s (%s)", item.step, item.resource_id, result.outcome, change.summary)
        self._settle(key, result)
        _audit(self.audit, step="apply", action=change.action, outcome="changed" if result.outcome == "changed"
               else "unchanged", resource=item.resource_id,
               before=applied.before if applied else None, after=applied.after if applied else None)

    def _give_up_the_rest(self) -> None:
        """What was never dispatched (stopped, or blocked) is not attempted, with the reason."""
        for key in self.order:
            if key not in self.run.results:
                item = self.by_key[key]
                why = self.run.stopped or "not dispatched"
                self.run.results[key] = replace(item, outcome="not_attempted", note=why)
                _audit(self.audit, step="apply", action=item.change.action if item.change else item.step,
                       outcome="skipped", resource=item.resource_id, error=f"not attempted: {why}")


# ---- verify --------------------------------------------------------------------------------------------
def verify_items(items: Iterable[Item], resolve: Resolver, *, audit: AuditContext | None = None,
                 max_workers: int = 1) -> list[Item]:
    """Re-read every resource that was planned (not those never attempted): in the desired state or not.

    ``max_workers`` > 1 verifies that many resources at once (the items keep their order).
    """
    return _map(lambda item: _verify_one(item, resolve, audit), items, max_workers)


def _verify_one(item: Item, resolve: Resolver, audit: AuditContext | None) -> Item:
    if item.outcome == "not_attempted":
        return item
    try:
        ok = resolve(item).verify(item.record)
        error = None if ok else "not in the desired state after the change"
    except Exception as exc:  # a resource we cannot re-read is not verified
        ok, error = False, error_text(exc)
    log.log(logging.INFO if ok else logging.ERROR, "verify %s %s: %s", item.step, item.resource_id,
            "as wanted" if ok else f"NOT as wanted: {error}")
    _audit(audit, step="verify", action=f"verify {item.step}", outcome="unchanged" if ok else "failed",
           resource=item.resource_id, error=error)
    return replace(item, verified=ok, verify_error=error)
