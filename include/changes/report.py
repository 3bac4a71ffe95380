"""What a change runbook shows and writes: plan lines, the approval request, the result document.

Everything is worded by the runbook through :class:`Wording` (its title, what it calls one change, its
status words); nothing here is specific to one runbook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from include.changes.engine import Item, changes, plan_errors, to_dicts
from include.fileio import atomic_write_text
from include.paths import DataPath, data_root, safe_segment


@dataclass(frozen=True)
class Wording:
    """How a runbook names things in its plan, approval request and result."""

    title: str  # "Remediate compliance findings"
    results_dir: str  # results go to <data dir>/<results_dir>/<run id>/result.json
    noun: str = "change"  # one change, as the approver reads it: "compliance fix"
    nouns: str = ""  # more than one ("compliance fixes"); default: noun + "s"
    done_status: str = "applied"  # status when every change applied and verified ("fixed")
    nothing_status: str = "no_changes"  # status when nothing needed changing ("compliant")
    in_state: str = "already as wanted"  # an item that needs no change ("compliant")

    def plural(self, count: int) -> str:
        """``1 compliance fix`` / ``2 compliance fixes``."""
        return f"{count} {self.noun if count == 1 else self.nouns or self.noun + 's'}"


def _request_json(request: Mapping[str, Any]) -> str:
    return json.dumps(request, sort_keys=True, default=str)


def plan_lines(items: Sequence[Item], wording: Wording) -> list[str]:
    """One line per item: the exact change, "already as wanted", or why it could not be planned."""
    lines = []
    for item in items:
        where = f"[{item.record.target}] {item.resource_id}"
        if item.plan_error and item.needs_input:
            lines.append(f"{where}: NEEDS INPUT ({item.step}): {item.plan_error}")
        elif item.plan_error:
            lines.append(f"{where}: PLAN FAILED ({item.step}): {item.plan_error}")
        elif item.change is None:
            lines.append(f"{where}: {wording.in_state}, no change ({item.step})")
        else:
            change = item.change
            flag = " [DESTRUCTIVE]" if change.destructive else ""
            lines.append(f"{where}: {change.operation}{flag} {change.summary} -- {change.action} "
                         f"{_request_json(change.request)}")
    return lines


def approval_text(
    items: Sequence[Item],
    wording: Wording,
    *,
    reason: str = "",
    run_id: str = "",
    permissions: Mapping[str, Sequence[str]] | None = None,
) -> tuple[str, str]:
    """Subject and Markdown body of the approval request, listing every planned change."""
    planned = changes(items)
    targets = sorted({i.record.target for i in planned})
    destructive = [i for i in planned if i.change is not None and i.change.destructive]
    subject = f"Apply {wording.plural(len(planned))} on {', '.join(targets) or 'no target'}?"
    if destructive:
        subject += f" ({len(destructive)} destructive)"
    head = [f"**{wording.title}**", f"**Run** `{run_id}`" if run_id else "", f"**Reason:** {reason}" if reason else ""]
    body = ["  \n".join(line for line in head if line), "",  # Markdown: one line each, then a paragraph
            f"**{wording.plural(len(planned))}** will be made (read -> plan done; nothing changed yet):", ""]
    for item in planned:
        change = item.change
        assert change is not None
        flag = " **(destructive)**" if change.destructive else ""
        body.append(f"- {change.operation} `{change.step}` on `{item.resource_id}` ({item.record.target}){flag}: "
                    f"{change.summary}  \n  call `{change.action}` `{_request_json(change.request)}`")
    in_state = [i for i in items if i.change is None and not i.plan_error]
    if in_state:
        body += ["", f"{len(in_state)} resource(s) {wording.in_state}: no change."]
    failed = plan_errors(items)
    if failed:
        body += ["", f"**{len(failed)} resource(s) could not be planned** (will not be changed):"]
        body += [f"- `{i.resource_id}`: {i.plan_error}" for i in failed]
    if permissions:
        body += ["", "Permissions the connections need for this: "
                 + "; ".join(f"{cloud}: {', '.join(perms)}" for cloud, perms in permissions.items())]
    body += ["", "Approve to apply exactly these changes; Reject (or no answer before the timeout) changes nothing."]
    return subject, "\n".join(line for line in body if line is not None).strip()


def summarise(
    items: Sequence[Item],
    wording: Wording,
    *,
    status: str,
    run_id: str,
    dry_run: bool,
    request: Mapping[str, Any],
    reason: str = "",
    approver: str | None = None,
    runbook: str = "",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The result document: per resource what was planned, applied and verified, and every failure."""
    def row(item: Item, **more: Any) -> dict[str, Any]:
        return {"resource_id": item.resource_id, "target": item.record.target, "step": item.step, **more}

    # In a dry run, an item whose plan only lacks a parameter is listed as needing input, not failed.
    needs_input = [row(i, error=i.plan_error) for i in items if i.needs_input and dry_run]
    failed = [
        row(i, phase="plan" if i.plan_error else "apply", error=i.plan_error or i.apply_error)
        for i in items if (i.plan_error and not (i.needs_input and dry_run)) or i.outcome == "failed"
    ]
    not_attempted = [row(i, reason=i.note) for i in items if i.outcome == "not_attempted"]
    not_verified = [row(i, error=i.verify_error) for i in items if i.verified is False]
    document = {
        "runbook": runbook,
        "title": wording.title,
        "run_id": run_id,
        "status": status,
        "dry_run": dry_run,
        "reason": reason,
        "approver": approver,
        "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "request": dict(request),
        "totals": {
            "resources": len(items),
            "planned_changes": len(changes(items)),
            "in_desired_state": sum(1 for i in items if i.planned and i.change is None and not i.plan_error),
            "needs_input": len(needs_input),
            "changed": sum(1 for i in items if i.outcome == "changed"),
            "done_earlier": sum(1 for i in items if i.outcome == "done_earlier"),
            "failed": len(failed),
            "not_attempted": len(not_attempted),
            "verified": sum(1 for i in items if i.verified is True),
            "not_verified": len(not_verified),
        },
        "failed": failed,
        "needs_input": needs_input,
        "not_attempted": not_attempted,
        "not_verified": not_verified,
        "plan": plan_lines(items, wording),
        "items": to_dicts(items),
    }
    # A runbook's own data (the point in time a restore used...) joins the document; it never replaces a key.
    clash = sorted(set(extra or {}) & set(document))
    if clash:
        raise ValueError(f"extra result keys {clash} would replace the engine's own")
    return {**document, **dict(extra or {})}


def result_path(wording: Wording, run_id: str, base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / wording.results_dir / safe_segment(run_id) / "result.json"


def write_result(result: Mapping[str, Any], wording: Wording, base: DataPath | None = None) -> DataPath:
    path = result_path(wording, str(result["run_id"]), base)
    atomic_write_text(path, json.dumps(result, indent=2, sort_keys=True, default=str))
    return path
