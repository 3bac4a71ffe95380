"""A step: how to read, plan, apply and verify one kind of change on one kind of resource.

A step is written once per (capability, cloud) and used by every runbook that needs it. Subclasses
implement a few small methods over a plain ``dict`` of facts:

- ``read(record)``: the resource's current facts from the cloud;
- ``desired(state, record)``: the facts it should have (only the keys this step manages);
- ``write(record, state, desired)``: make the cloud call(s); return the request as sent;
- optionally ``satisfied`` (when "complies" is looser than "equals"), ``accepted`` (a change the cloud
  applies asynchronously is accepted before it complies), ``request_for`` / ``action_for`` / ``describe``.

The base class turns those into the read -> plan -> apply -> verify protocol:

- :meth:`Step.plan` reads and returns the exact :class:`~include.changes.model.Change`, or ``None`` when
  nothing needs to change (reads only: a dry run runs it for real);
- :meth:`Step.apply` re-reads first and writes only what is still missing, so applying the same change
  twice changes nothing the second time, then reads back to confirm the cloud accepted it;
- :meth:`Step.verify` re-reads until the resource complies, for at most ``verify_wait`` seconds.

Two kinds of steps, by what a state can be:

- :class:`UpdateStep` (``Step[State]``): the resource exists and the step changes some of its settings
  (every remediation fixer). ``read`` raises when the resource is gone.
- :class:`LifecycleStep` (``Step[State | None]``): ``read`` returns ``None`` when the resource does not
  exist and ``desired`` returns ``None`` when it should not (provisioning creates, teardown deletes).

Every step declares the cloud permissions it needs (``permissions``), so a least-privilege policy per
runbook can be generated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from include.changes.model import Applied, Change, ChangeError, Operation, identity
from include.changes.waiting import WaitTimeout, poll_until
from include.records import ResourceRecord
from include.targets import Target, TargetsConfig, load_targets

State = dict[str, Any]
S = TypeVar("S", State, State | None)


class Step(Generic[S]):
    """Base class of every step. An instance carries the run's options and reuses its cloud clients."""

    id: ClassVar[str]
    cloud: ClassVar[str]
    resource_types: ClassVar[tuple[str, ...]]
    permissions: ClassVar[tuple[str, ...]]
    destructive: ClassVar[bool] = False
    #: ``action`` for a step whose write is an action rather than a state (reboot, promote, notify).
    operation: ClassVar[Operation | None] = None
    #: The API call ``write`` makes (for the plan, the log and the audit trail).
    action: ClassVar[str] = ""
    #: Recompute the desired state from a fresh read at apply time instead of replaying the plan's
    #: ``after`` (tags: a value someone set between plan and apply must not be overwritten).
    recompute_on_apply: ClassVar[bool] = False
    #: Seconds ``verify`` keeps re-reading before it says "not done" (clouds that apply a change
    #: asynchronously, e.g. an RDS modification; 0 = one read), and the pause between reads.
    verify_wait: float = 0.0
    verify_interval: float = 15.0
    #: The clock and sleep of those waits (a test replaces both to run a long wait instantly).
    clock: Callable[[], float] = staticmethod(time.monotonic)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, options: Mapping[str, Any] | None = None, targets: TargetsConfig | None = None) -> None:
        self.options: dict[str, Any] = dict(options or {})
        self._targets = targets
        self._clients: dict[tuple[str, ...], Any] = {}

    # ---- what subclasses implement -------------------------------------------------------------
    def read(self, record: ResourceRecord) -> S:
        """Current facts of the resource, read from the cloud."""
        raise NotImplementedError

    def desired(self, state: S, record: ResourceRecord) -> S:
        """The facts the resource should have (only the keys this step manages)."""
        raise NotImplementedError

    def write(self, record: ResourceRecord, state: S, desired: S) -> dict[str, Any]:
        """Make the cloud call(s) that turn ``state`` into ``desired``; return the request as sent."""
        raise NotImplementedError

    def satisfied(self, state: S, desired: S) -> bool:
        """Whether ``state`` already is what is wanted (default: absent when ``desired`` is None, else
        every desired key has the desired value)."""
        if desired is None:
            return state is None
        if state is None:
            return False
        return all(state.get(key) == value for key, value in desired.items())

    def accepted(self, state: S, desired: S) -> bool:
        """Whether the read-back right after ``write`` shows the cloud took the change (default: satisfied).

        Clouds that apply a change asynchronously accept it first (pending) and comply later.
        """
        return self.satisfied(state, desired)

    def project(self, state: S, desired: S) -> S:
        """The part of ``state`` a change is about (its before / after). Default: ``desired``'s keys."""
        if state is None or desired is None:
            return state
        projected: S = {key: state.get(key) for key in desired}
        return projected

    def request_for(self, record: ResourceRecord, state: S, desired: S) -> dict[str, Any]:
        """The arguments ``write`` will send (shown in the plan). Default: the desired facts."""
        return dict(desired or {})

    def action_for(self, record: ResourceRecord) -> str:
        """The API call ``write`` makes for this record (default: the step's ``action``)."""
        return self.action

    def operation_for(self, state: S, desired: S) -> Operation:
        """create / update / delete from the states, unless the step declares an ``action``."""
        if self.operation is not None:
            return self.operation
        if state is None:
            return "create"
        if desired is None:
            return "delete"
        return "update"

    def describe(self, record: ResourceRecord, before: S, after: S) -> str:
        """One human line for the change."""
        if before is None:
            return f"{record.name}: create"
        if after is None:
            return f"{record.name}: delete"
        changes = ", ".join(f"{key} {before.get(key)!r} -> {value!r}" for key, value in after.items()
                            if before.get(key) != value)
        return f"{record.name}: {changes}"

    # ---- the read -> plan -> apply -> verify protocol ------------------------------------------
    def plan(self, record: ResourceRecord) -> Change | None:
        """Read the resource and return the change that would bring it to the desired state (None: it is)."""
        self.check_type(record)
        state = self.read(record)
        want = self.desired(state, record)
        if self.satisfied(state, want):
            return None
        before = self.project(state, want)
        return Change(
            step=self.id,
            operation=self.operation_for(state, want),
            resource=identity(record),
            action=self.action_for(record),
            request=self.request_for(record, state, want),
            before=before,
            after=want,
            summary=self.describe(record, before, want),
            destructive=self.destructive or want is None,
        )

    def apply(self, change: Change) -> Applied:
        """Make ``change`` (idempotent: re-reads first, and writes nothing when it is already in place)."""
        record = change.record
        self.check_type(record)
        state = self.read(record)
        # ``change`` was planned by this step, so its ``after`` is one of this step's states (S). The model
        # types it ``dict | None``; mypy checks this body once per kind of S, and cast(S, ...) is redundant
        # for one of them (warn_redundant_casts), hence the Any.
        planned: Any = change.after
        want: S = self.desired(state, record) if self.recompute_on_apply else planned
        before = self.project(state, want)
        if self.satisfied(state, want):
            return Applied(changed=False, before=before, after=before)
        sent = self.write(record, state, want)
        now = self.read(record)
        if not self.accepted(now, want):
            raise ChangeError(
                f"{self.id}: {record.resource_id} is not as wanted after {self.action_for(record)}: "
                f"read back {self.project(now, want)}, wanted {want}"
            )
        return Applied(changed=True, before=before, after=self.project(now, want), request=sent)

    def verify(self, record: ResourceRecord) -> bool:
        """Re-read until the resource is in the desired state, for at most ``verify_wait`` seconds."""
        self.check_type(record)

        def current() -> tuple[S, S]:
            state = self.read(record)
            return state, self.desired(state, record)

        try:
            poll_until(current, lambda pair: self.satisfied(*pair), timeout=self.verify_wait,
                       interval=self.verify_interval, what=f"{self.id} on {record.resource_id}", clock=self.clock,
                       sleep=self.sleep)
        except WaitTimeout:
            return False
        return True

    # ---- helpers ------------------------------------------------------------------------------
    def target(self, record: ResourceRecord) -> Target:
        """The target (connection, account) a record belongs to, from config/targets.yaml."""
        targets = self._targets or load_targets()
        return targets.get(record.target)

    def client(self, key: tuple[str, ...], factory: Callable[[], Any]) -> Any:
        """One cloud client per key (conn id, region...) for the life of this step instance."""
        if key not in self._clients:
            self._clients[key] = factory()
        return self._clients[key]

    def check_type(self, record: ResourceRecord) -> None:
        if record.resource_type not in self.resource_types:
            raise ChangeError(
                f"step {self.id} ({self.cloud}) handles {', '.join(self.resource_types)}, "
                f"not {record.resource_type} ({record.resource_id})"
            )


class UpdateStep(Step[State]):
    """A step that changes settings of a resource that exists (``read`` raises when it is gone)."""


class LifecycleStep(Step[State | None]):
    """A step that may create (``read`` is None) or delete (``desired`` is None) the resource."""
