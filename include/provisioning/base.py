"""The step every provisioned kind is: read -> plan (create / update with a field diff / delete) -> apply -> verify.

A kind's module subclasses :class:`ResourceStep` and implements five small methods over plain dicts:

- ``fetch(res, props)``: the live resource as :class:`Live` (its comparable fields, tags, outputs), or None;
- ``wanted(res, props)``: the fields the spec asks for (defaults filled, references resolved);
- ``create(res, props, want)`` / ``update(res, props, live, want, changed)`` / ``destroy(res, props, live)``;
- optionally ``protection(res, props, live)``: why the resource must not be deleted (teardown).

The base class turns them into the change engine's protocol (:class:`~include.changes.step.LifecycleStep`):

- **ownership first**: a live resource is only ever changed or deleted when its tags say this environment
  manages it (:mod:`include.provisioning.ownership`); otherwise planning raises :class:`Conflict`
  (provisioning) or leaves it alone (teardown);
- **plan** reads once and returns a create, an update whose ``before`` / ``after`` hold exactly the fields
  that differ, a delete, or nothing;
- **apply** re-reads and writes only what still differs (a rerun converges); a planned create of a kind
  whose API refuses a duplicate name (``optimistic_create``) is sent straight away, and falls back to the
  read path when the name turns out to be taken. Apply trusts the cloud's synchronous answer and does not
  read back: **verify** re-reads every resource afterwards (bounded wait) and compares it with the spec;
- references (``${sg.web.id}``) resolve through the :class:`Session`'s cache of live outputs; at plan
  time an output that does not exist yet is shown as ``(known after apply: sg.web.id)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from include.changes.engine import Item
from include.changes.model import Applied, Change, ChangeError, identity
from include.changes.step import LifecycleStep
from include.changes.waiting import WaitTimeout, poll_until
from include.provisioning.kinds import Kind, get_kind, kind_of_step
from include.provisioning.ownership import ownership
from include.provisioning.spec import Reference, Spec, SpecResource, substitute
from include.records import ResourceRecord
from include.targets import Target, TargetsConfig, load_targets

Mode = Literal["provision", "teardown"]
UNKNOWN_PREFIX = "(known after apply: "
State = dict[str, Any]


class Conflict(ChangeError):
    """A live resource with the spec's name is not managed by this environment: it is never adopted."""


class Protected(ChangeError):
    """A resource a teardown would delete is protected (deletion protection, a retention lock...)."""


class AlreadyExists(ChangeError):
    """An optimistic create found the name taken: the step falls back to reading the resource."""


def unknown(ref: Reference) -> str:
    return f"{UNKNOWN_PREFIX}{ref.address}.{ref.output})"


def has_unknown(value: Any) -> bool:
    if isinstance(value, str):
        return UNKNOWN_PREFIX in value
    if isinstance(value, Mapping):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_unknown(v) for v in value)
    return False


@dataclass
class Live:
    """A live resource as a step reads it."""

    fields: dict[str, Any]  # comparable fields, "tags" included
    outputs: dict[str, Any]  # what references may use (id, arn, endpoint...)
    tags: dict[str, str]  # the raw tags / labels / metadata (ownership is read from them)
    ready: bool = True  # False while the cloud is still creating / modifying it
    protected: str | None = None  # teardown: why it must not be deleted
    detail: dict[str, Any] = field(default_factory=dict)  # what write calls need (ids, fingerprints...)


def record_for(spec: Spec, res: SpecResource, targets: TargetsConfig) -> ResourceRecord:
    """The change engine's record of a spec resource: resource id ``<environment>/<address>``."""
    kind = get_kind(res.kind)
    target = targets.get(res.target)
    return ResourceRecord(
        cloud=kind.cloud, target=res.target, account=target.account, region=res.region, service=kind.service,
        resource_type=kind.resource_type, resource_id=f"{spec.environment}/{res.address}", name=res.cloud_name,
        tags={**res.tags, **spec.ownership_tags()},
        attributes={"address": res.address, "kind": res.kind, "environment": spec.environment},
    )


def skipped_resources(spec: Spec, targets: TargetsConfig) -> dict[str, str]:
    """Resources this environment cannot serve here, with the reason (and everything that refers to them).

    A target whose ``services`` (config/targets.yaml) leave out a kind's service says that service is not
    reachable through it: locally, the emulators serve no Compute Engine and no Azure Resource Manager.
    """
    skipped: dict[str, str] = {}
    for res in spec.resources:
        target = targets.get(res.target)
        kind = get_kind(res.kind)
        if target.services and kind.service not in target.services:
            skipped[res.address] = (f"target {target.name} does not serve {kind.service} (config/targets.yaml "
                                    f"services: {', '.join(target.services)})")
    changed = True
    while changed:
        changed = False
        for res in spec.resources:
            if res.address in skipped:
                continue
            blocked = [d for d in res.depends_on if d in skipped]
            if blocked:
                skipped[res.address] = f"depends on {blocked[0]}, which is skipped"
                changed = True
    return skipped


class Session:
    """One run's view of a spec: the steps (one per kind and thread), the live outputs seen, observations."""

    def __init__(self, spec: Spec, mode: Mode, targets: TargetsConfig | None = None, *,
                 cache_absent: bool = False) -> None:
        self.spec = spec
        self.mode: Mode = mode
        self.targets = targets or load_targets()
        #: Planning reads each resource once: a resource found absent stays absent for the rest of the
        #: plan. Apply and verify never cache an absence (a dependency is created during the apply).
        self.cache_absent = cache_absent
        self._lock = threading.Lock()
        self._outputs: dict[str, dict[str, Any]] = {}
        self._absent: set[str] = set()
        self._memo: dict[tuple[str, ...], Any] = {}
        self._flights: dict[tuple[str, ...], threading.Lock] = {}
        self._snapshot: dict[str, State | None] = {}
        self._steps: dict[tuple[int, str], ResourceStep] = {}
        #: address -> what the last read saw: status (absent / managed / unmanaged / other), protection.
        self.observed: dict[str, dict[str, Any]] = {}

    # ---- steps ---------------------------------------------------------------------------------------
    def step(self, alias: str) -> ResourceStep:
        from include.provisioning.registry import step_class

        key = (threading.get_ident(), alias)
        with self._lock:
            found = self._steps.get(key)
        if found is None:
            found = step_class(alias)({"session": self}, self.targets)
            with self._lock:
                self._steps[key] = found
        return found

    def resolver(self) -> Callable[[Item], ResourceStep]:
        """The change engine's resolver: the step of the item's kind."""
        return lambda item: self.step(kind_of_step(item.step).alias)

    def record(self, address: str) -> ResourceRecord:
        return record_for(self.spec, self.spec.resource(address), self.targets)

    # ---- live outputs and references -----------------------------------------------------------------
    def remember(self, address: str, outputs: Mapping[str, Any]) -> None:
        with self._lock:
            self._outputs[address] = dict(outputs)

    def forget(self, address: str, *, absent: bool = False) -> None:
        with self._lock:
            self._outputs.pop(address, None)
            if absent and self.cache_absent:
                self._absent.add(address)

    def _flight(self, key: tuple[str, ...]) -> threading.Lock:
        with self._lock:
            return self._flights.setdefault(key, threading.Lock())

    def memo(self, key: tuple[str, ...], factory: Callable[[], Any]) -> Any:
        """``factory()`` once per key for the run (clients, zone ids, default VPCs); a None answer is not kept.

        Threads asking for the same key at once wait for the first one's answer (one call, not eight).
        """
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        with self._flight(("memo", *key)):
            with self._lock:
                if key in self._memo:
                    return self._memo[key]
            value = factory()
            if value is not None:
                with self._lock:
                    self._memo[key] = value
        return value

    def snapshot(self, address: str, read: Callable[[], State | None]) -> State | None:
        """While planning, each resource is read once: its own plan and every reference to it share the read."""
        if not self.cache_absent:
            return read()
        with self._flight(("read", address)):
            with self._lock:
                if address in self._snapshot:
                    return self._snapshot[address]
            state = read()
            with self._lock:
                self._snapshot[address] = state
        return state

    def forget_memo(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._memo.pop(key, None)

    def observe(self, address: str, **facts: Any) -> None:
        with self._lock:
            self.observed[address] = facts

    def outputs_of(self, address: str, output: str | None = None) -> dict[str, Any] | None:
        """The outputs of the managed live resource at ``address`` (read once, then cached); None if absent.

        A cached set that lacks ``output`` (a create answers with fewer outputs than a read) is read again.
        """
        with self._lock:
            cached = self._outputs.get(address)
            if cached is None and address in self._absent:
                return None
        if cached is not None and (output is None or cached.get(output) not in (None, "")):
            return cached
        res = self.spec.resource(address)
        step = self.step(res.kind)
        state = step.read(self.record(address))
        if state is None or state["ownership"] != "managed":
            if state is not None and self.cache_absent:
                with self._lock:
                    self._absent.add(address)  # somebody else's resource: never a value to refer to
            return None
        return dict(state["outputs"])

    def resolve(self, res: SpecResource) -> dict[str, Any]:
        """``res.properties`` with references replaced by live outputs (or the known-after-apply marker)."""
        def lookup(ref: Reference) -> Any:
            outputs = self.outputs_of(ref.address, ref.output)
            if outputs is None or outputs.get(ref.output) in (None, ""):
                return unknown(ref)
            return outputs[ref.output]

        resolved: dict[str, Any] = substitute(res.properties, lookup)
        return resolved


class ResourceStep(LifecycleStep):
    """Base of every provisioning step (see the module docstring)."""

    kind: ClassVar[str]
    #: Permissions per call: {"read": (...), "create": (...), "update": (...), "delete": (...)}.
    calls: ClassVar[dict[str, tuple[str, ...]]]
    #: The API call(s) of each operation, as the plan and the audit trail show them.
    actions: ClassVar[dict[str, str]]
    #: Fields that cannot change in place (a different value needs a new resource).
    immutable: ClassVar[tuple[str, ...]] = ()
    #: The create API refuses a duplicate name (raises AlreadyExists): a planned create skips the pre-read.
    optimistic_create: ClassVar[bool] = False
    recompute_on_apply = True
    verify_wait = 0.0
    verify_interval = 5.0

    # ---- what kinds implement ------------------------------------------------------------------------
    def fetch(self, res: SpecResource, props: dict[str, Any]) -> Live | None:
        raise NotImplementedError

    def wanted(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        """Create the resource; return its outputs. Raise :class:`AlreadyExists` when the name is taken."""
        raise NotImplementedError

    def update(self, res: SpecResource, props: dict[str, Any], live: Live, want: dict[str, Any],
               changed: list[str]) -> None:
        raise NotImplementedError

    def destroy(self, res: SpecResource, props: dict[str, Any], live: Live) -> None:
        raise NotImplementedError

    def read_before_create(self, record: ResourceRecord, res: SpecResource, props: dict[str, Any]) -> State | None:
        """The read that makes a planned create safe (a rerun, a look-alike created since the plan).

        Default: the full read. A kind whose read is costly may first ask one batched question per apply
        ("which of the spec's names are taken?") and do the full read only for a name that is.
        """
        return self.read(record)

    def protection(self, res: SpecResource, props: dict[str, Any], live: Live) -> str | None:
        """Why the resource must not be deleted (None: it may be). Called in teardowns only."""
        return None

    def tags_for(self, res: SpecResource) -> dict[str, str]:
        """The full tag set a managed resource carries (the spec's tags and the ownership tags)."""
        return {**res.tags, **self.session.spec.ownership_tags()}

    # ---- helpers --------------------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        session: Session = self.options["session"]
        return session

    @property
    def teardown(self) -> bool:
        return self.session.mode == "teardown"

    @property
    def kind_info(self) -> Kind:
        return get_kind(self.kind)

    def target_of(self, res: SpecResource) -> Target:
        return self.session.targets.get(res.target)

    def spec_resource(self, record: ResourceRecord) -> SpecResource:
        """The spec resource of a record (``<environment>/<address>``; a change keeps only the identity)."""
        environment, _, address = record.resource_id.partition("/")
        if environment != self.session.spec.environment or not address:
            raise ChangeError(f"{record.resource_id} is not a resource of environment {self.session.spec.environment}")
        return self.session.spec.resource(address)

    def full_want(self, res: SpecResource, props: dict[str, Any]) -> dict[str, Any]:
        return {**self.wanted(res, props), "tags": self.tags_for(res)}

    @staticmethod
    def differing(live: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
        """The wanted fields whose live value differs (an unknown wanted value always differs)."""
        return [key for key, value in want.items() if has_unknown(value) or live.get(key) != value]

    # ---- the engine protocol ------------------------------------------------------------------------
    def read(self, record: ResourceRecord) -> State | None:
        res = self.spec_resource(record)
        return self.session.snapshot(res.address, lambda: self._read(res))

    def _read(self, res: SpecResource) -> State | None:
        live = self.fetch(res, self.session.resolve(res))
        if live is None:
            self.session.observe(res.address, status="absent")
            self.session.forget(res.address, absent=True)
            return None
        owner = ownership(live.tags, self.session.spec.environment)
        self.session.observe(res.address, status=owner.status, owner=owner.describe(),
                             owner_environment=owner.environment, protected=live.protected,
                             outputs=live.outputs)
        if owner.status == "managed":
            self.session.remember(res.address, live.outputs)
        return {"fields": live.fields, "outputs": live.outputs, "ownership": owner.status,
                "owner": owner.describe(), "ready": live.ready, "protected": live.protected,
                "detail": live.detail, "tags": live.tags}

    def conflict(self, res: SpecResource, state: State) -> Conflict:
        return Conflict(f"{self.kind_info.title} {res.cloud_name} exists and is {state['owner']}: "
                        f"it is not adopted. Rename the resource in the spec, or delete / tag the existing one "
                        f"(managed-by: cloud-runbooks, runbooks-environment: {self.session.spec.environment}) "
                        "if it really belongs to this environment")

    def _check_immutable(self, res: SpecResource, fields: Mapping[str, Any], want: Mapping[str, Any]) -> None:
        stuck = [f for f in self.immutable if f in want and not has_unknown(want[f]) and fields.get(f) != want[f]]
        if stuck:
            detail = ", ".join(f"{f} {fields.get(f)!r} -> {want[f]!r}" for f in stuck)
            raise ChangeError(f"{res.address}: {detail} cannot change in place (it needs a new "
                              f"{self.kind_info.title}): rename the resource to create a new one, or tear the "
                              "old one down first")

    def plan(self, record: ResourceRecord) -> Change | None:
        self.check_type(record)
        res = self.spec_resource(record)
        state = self.read(record)
        if self.teardown:
            return self._plan_delete(record, res, state)
        if state is not None and state["ownership"] != "managed":
            raise self.conflict(res, state)
        want = self.full_want(res, self.session.resolve(res))
        if state is None:
            return self._change(record, "create", None, want, want)
        changed = self.differing(state["fields"], want)
        if not changed:
            return None  # (a resource the cloud is still creating counts as planned: verify waits for it)
        self._check_immutable(res, state["fields"], want)
        before = {k: state["fields"].get(k) for k in changed}
        after = {k: want[k] for k in changed}
        return self._change(record, "update", before, after, after)

    def _plan_delete(self, record: ResourceRecord, res: SpecResource, state: State | None) -> Change | None:
        if state is None or state["ownership"] != "managed":
            return None  # absent, or somebody else's: teardown never touches it
        why = "prevent_destroy is set in the spec" if res.prevent_destroy else state["protected"]
        if why:
            raise Protected(f"{self.kind_info.title} {res.cloud_name}: {why}")
        return self._change(record, "delete", dict(state["fields"]), None, {"delete": res.cloud_name})

    def _change(self, record: ResourceRecord, operation: Literal["create", "update", "delete"],
                before: dict[str, Any] | None, after: dict[str, Any] | None, request: dict[str, Any]) -> Change:
        res = self.spec_resource(record)
        return Change(step=self.id, operation=operation, resource=identity(record), action=self.actions[operation],
                      request=request, before=before, after=after,
                      summary=describe(res, operation, before, after), destructive=operation == "delete")

    def apply(self, change: Change) -> Applied:
        record = change.record
        self.check_type(record)
        res = self.spec_resource(record)
        if self.teardown:
            return self._apply_delete(record, res)
        props = self.session.resolve(res)
        want = self.full_want(res, props)
        missing = sorted({ref.text for ref in res.references()} & _unresolved(res, props))
        if missing:
            raise ChangeError(f"{res.address}: cannot resolve {', '.join(missing)}: the resource it refers to does "
                              "not exist (its own change failed or was not applied)")
        if change.operation == "create" and self.optimistic_create:
            try:
                return self._create(res, props, want)
            except AlreadyExists:
                pass  # created meanwhile (a rerun, or someone else): decide on what is there now
        state = self.read_before_create(record, res, props) if change.operation == "create" else self.read(record)
        if state is None:
            return self._create(res, props, want)
        if state["ownership"] != "managed":
            raise self.conflict(res, state)
        changed = self.differing(state["fields"], want)
        if not changed:
            return Applied(changed=False, before=None, after=None)
        self._check_immutable(res, state["fields"], want)
        live = Live(fields=state["fields"], outputs=state["outputs"], tags=state["tags"], detail=state["detail"])
        self.update(res, props, live, want, changed)
        before = {k: state["fields"].get(k) for k in changed}
        after = {k: want[k] for k in changed}
        return Applied(changed=True, before=before, after=after, request=after)

    def _create(self, res: SpecResource, props: dict[str, Any], want: dict[str, Any]) -> Applied:
        outputs = self.create(res, props, want)
        self.session.remember(res.address, outputs)
        return Applied(changed=True, before=None, after=want, request=want)

    def _apply_delete(self, record: ResourceRecord, res: SpecResource) -> Applied:
        state = self.read(record)
        if state is None or state["ownership"] != "managed":
            return Applied(changed=False, before=None, after=None)
        why = "prevent_destroy is set in the spec" if res.prevent_destroy else state["protected"]
        if why:
            raise Protected(f"{self.kind_info.title} {res.cloud_name}: {why}")
        live = Live(fields=state["fields"], outputs=state["outputs"], tags=state["tags"], detail=state["detail"])
        self.destroy(res, self.session.resolve(res), live)
        self.session.forget(res.address)
        return Applied(changed=True, before=dict(state["fields"]), after=None, request={"delete": res.cloud_name})

    def in_state(self, record: ResourceRecord) -> bool:
        """Whether the live resource is what the spec (or the teardown) wants, right now."""
        state = self.read(record)
        if self.teardown:
            return state is None or state["ownership"] != "managed"
        if state is not None and state["ownership"] != "managed":
            raise self.conflict(self.spec_resource(record), state)  # it will not become ours by waiting
        if state is None or not state["ready"]:
            return False
        res = self.spec_resource(record)
        return not self.differing(state["fields"], self.full_want(res, self.session.resolve(res)))

    def verify(self, record: ResourceRecord) -> bool:
        self.check_type(record)
        try:
            poll_until(lambda: self.in_state(record), bool, timeout=self.verify_wait,
                       interval=self.verify_interval, what=f"{self.id} on {record.resource_id}", clock=self.clock,
                       sleep=self.sleep)
        except WaitTimeout:
            return False
        return True


def _unresolved(res: SpecResource, props: Mapping[str, Any]) -> set[str]:
    """The reference texts whose output is still unknown in ``props``."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and UNKNOWN_PREFIX in value:
            for ref in res.references():
                if f"{UNKNOWN_PREFIX}{ref.address}.{ref.output})" in value:
                    found.add(ref.text)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(dict(props))
    return found


# ---- how a change reads -----------------------------------------------------------------------------------
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def field_diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """Field-level lines: ``versioning: False -> True``, ``tags.owner: 'a' -> 'b'``, ``tags.team: + 'x'``."""
    lines: list[str] = []
    keys = list(dict.fromkeys([*(after or {}), *(before or {})]))
    for key in keys:
        old = (before or {}).get(key)
        new = (after or {}).get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for sub in sorted(set(old) | set(new)):
                if sub not in old:
                    lines.append(f"{key}.{sub}: + {_short(new[sub])}")
                elif sub not in new:
                    lines.append(f"{key}.{sub}: - {_short(old[sub])}")
                elif old[sub] != new[sub]:
                    lines.append(f"{key}.{sub}: {_short(old[sub])} -> {_short(new[sub])}")
        elif old != new:
            lines.append(f"{key}: {_short(old)} -> {_short(new)}")
    return lines


def describe(res: SpecResource, operation: str, before: Mapping[str, Any] | None,
             after: Mapping[str, Any] | None) -> str:
    """One line for the plan: ``sg.web (rb-demo-web): update ingress ... ; tags.team: + 'x'``."""
    head = f"{res.address} ({res.cloud_name})"
    if operation == "create":
        return f"{head}: create"
    if operation == "delete":
        return f"{head}: delete"
    return f"{head}: update " + "; ".join(field_diff(before, after))
