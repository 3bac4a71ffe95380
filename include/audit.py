"""Append-only audit trail shared by every mutating runbook.

One JSON object per line in ``<RUNBOOKS_DATA_DIR>/audit/<YYYY-MM-DD>.jsonl`` (UTC date of the event):
who or what triggered the run, who approved it, the parameters (secrets redacted), the idempotency key,
and per step and resource what was done and what changed.

Appends are atomic: on local disk the file is opened with ``O_APPEND`` and each record is written with ONE
``write`` call, so concurrent tasks never interleave half lines. On an object-store data root (see
docs/data-root.md) each record is its own object, ``audit/<YYYY-MM-DD>.jsonl.d/<time>-<random>.json``, put
once (:func:`include.fileio.append_line`). Records are never rewritten or deleted here.

Connection secrets never reach the file: every record is redacted when it is built, with the project's one
set of rules (:mod:`include.redaction`): values under secret-looking keys are replaced, and every string
(parameters, before/after, error text) is scrubbed of credential patterns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from include.fileio import append_line, log_names, read_lines
from include.paths import DataPath, data_root
from include.redaction import redact, scrub

Outcome = Literal["changed", "unchanged", "failed", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("changed", "unchanged", "failed", "skipped")

def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class AuditRecord:
    """One audited action: a step of a runbook run on one resource (or on the run as a whole)."""

    runbook: str  # the DAG id
    run_id: str
    actor: str  # triggering user, or "api" / "schedule" / "asset" / "dag_test"
    step: str  # plan | apply | verify | approve | ...
    action: str  # what was (or would be) done, e.g. "s3:PutBucketPublicAccessBlock"
    outcome: Outcome
    dry_run: bool
    resource: str | None = None  # resource id (ARN, GCS / Azure URL); None for run-level records
    approver: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    before: Any = None
    after: Any = None
    error: str | None = None
    time: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        # Redact at construction, so no code path can write or return an unredacted record.
        object.__setattr__(self, "params", redact(dict(self.params or {})))
        object.__setattr__(self, "before", redact(self.before))
        object.__setattr__(self, "after", redact(self.after))
        if self.error is not None:
            object.__setattr__(self, "error", scrub(str(self.error)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class AuditContext:
    """What every record of one run shares; ``record(...)`` fills in the per-step fields."""

    runbook: str
    run_id: str
    actor: str
    dry_run: bool
    params: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    approver: str | None = None

    def record(
        self,
        *,
        step: str,
        action: str,
        outcome: Outcome,
        resource: str | None = None,
        before: Any = None,
        after: Any = None,
        error: str | None = None,
        dry_run: bool | None = None,
    ) -> AuditRecord:
        return AuditRecord(
            runbook=self.runbook,
            run_id=self.run_id,
            actor=self.actor,
            approver=self.approver,
            params=self.params,
            idempotency_key=self.idempotency_key,
            step=step,
            resource=resource,
            action=action,
            dry_run=self.dry_run if dry_run is None else dry_run,
            outcome=outcome,
            before=before,
            after=after,
            error=error,
        )


def audit_dir(base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / "audit"


def audit_path(day: date | str, base: DataPath | None = None) -> DataPath:
    return audit_dir(base) / f"{day if isinstance(day, str) else day.isoformat()}.jsonl"


def write_audit(record: AuditRecord, base: DataPath | None = None) -> DataPath:
    """Append ``record`` to the log of its UTC date; return what was written.

    Local disk: one ``write`` on the day's ``O_APPEND`` file (returns the file). Object store: one new
    object under the day's ``.jsonl.d/`` prefix (returns the object).
    """
    return append_line(audit_path(record.time[:10], base), record.to_json())


def read_audit(
    *,
    runbook: str | None = None,
    run_id: str | None = None,
    resource: str | None = None,
    step: str | None = None,
    since: date | str | None = None,
    until: date | str | None = None,
    base: DataPath | None = None,
) -> list[AuditRecord]:
    """Audit records in time order, optionally filtered (``since``/``until`` are inclusive UTC dates)."""
    folder = audit_dir(base)
    low = str(since) if since else None
    high = str(until) if until else None
    found: list[AuditRecord] = []
    for name in log_names(folder, ".jsonl"):
        day = name[: -len(".jsonl")]
        if (low and day < low) or (high and day > high):
            continue
        for record in _read_file(folder / name):
            if runbook and record.runbook != runbook:
                continue
            if run_id and record.run_id != run_id:
                continue
            if resource and record.resource != resource:
                continue
            if step and record.step != step:
                continue
            found.append(record)
    return sorted(found, key=lambda r: r.time)


def _read_file(path: DataPath) -> Iterator[AuditRecord]:
    for number, line in enumerate(read_lines(path), start=1):
        try:
            yield AuditRecord.from_dict(json.loads(line))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an audit record: {exc}") from exc


def actor_from_context(context: Mapping[str, Any]) -> str:
    """Who started the run: the triggering user, else ``schedule`` / ``asset`` / ``backfill`` / ``api``."""
    dag_run = context.get("dag_run")
    user = getattr(dag_run, "triggering_user_name", None)
    if user:
        return str(user)
    run_type = str(getattr(dag_run, "run_type", "") or "").lower()
    for kind, name in (("scheduled", "schedule"), ("asset", "asset"), ("backfill", "backfill")):
        if kind in run_type:
            return name
    return "api"
