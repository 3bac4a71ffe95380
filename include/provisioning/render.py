"""The plan as data and as a readable file: per resource create / update (field by field) / delete / no change,
conflicts, protected resources, skipped ones. Terraform's plan output is the model.

``plan_entries`` turns planned items into plain dicts (XCom, ``plan.json``, drift reports);
``render_markdown`` writes them for people (``plan.md``, the task log).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from include.changes.engine import Item
from include.fileio import atomic_write_text
from include.paths import DataPath, data_root, safe_segment
from include.provisioning.base import Conflict, Protected
from include.provisioning.spec import Spec

SYMBOLS = {"create": "+", "update": "~", "delete": "-", "no change": "=", "conflict": "!", "protected": "!",
           "error": "!", "skipped": "."}


def status_of(item: Item) -> str:
    """create / update / delete / no change / conflict / protected / error."""
    if item.plan_error:  # the engine keeps "<exception type>: <message>"
        if item.plan_error.startswith(f"{Conflict.__name__}: "):
            return "conflict"
        if item.plan_error.startswith(f"{Protected.__name__}: "):
            return "protected"
        return "error"
    if item.change is None:
        return "no change"
    return item.change.operation


def _diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in dict.fromkeys([*(after or {}), *(before or {})]):
        old, new = (before or {}).get(key), (after or {}).get(key)
        if isinstance(old, Mapping) or isinstance(new, Mapping):
            old = old if isinstance(old, Mapping) else {}
            new = new if isinstance(new, Mapping) else {}
            for sub in sorted(set(old) | set(new)):
                if old.get(sub) != new.get(sub) or sub not in old or sub not in new:
                    rows.append({"field": f"{key}.{sub}", "before": old.get(sub), "after": new.get(sub)})
        elif old != new:
            rows.append({"field": key, "before": old, "after": new})
    return rows


def plan_entries(items: Sequence[Item], spec: Spec, skipped: Mapping[str, str], order: Sequence[str]) -> list[dict[str, Any]]:
    """One entry per spec resource, in ``order``: what the plan does to it and why."""
    by_address = {str(i.labels.get("address")): i for i in items}
    entries = []
    for address in order:
        res = spec.resource(address)
        entry: dict[str, Any] = {"address": address, "kind": res.kind, "name": res.cloud_name, "target": res.target,
                                 "region": res.region}
        item = by_address.get(address)
        if item is None:
            entry.update(action="skipped", message=skipped.get(address, "not planned"), diff=[])
        else:
            status = status_of(item)
            entry["action"] = status
            entry["observed"] = item.labels.get("observed") or {}
            if item.change is not None:
                before = item.change.before if item.change.operation != "create" else {}
                after = item.change.after if item.change.operation != "delete" else {}
                entry["diff"] = _diff(before, after)
                entry["api"] = item.change.action
            else:
                entry["diff"] = []
                entry["message"] = item.plan_error or _no_change_note(entry["observed"])
        entries.append(entry)
    return entries


def _no_change_note(observed: Mapping[str, Any]) -> str:
    status = observed.get("status")
    if status == "absent":
        return "absent"
    if status in ("unmanaged", "other"):
        return f"left alone: {observed.get('owner')}"
    return "as the spec says"


def totals(entries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counted: dict[str, int] = {key: 0 for key in SYMBOLS}
    for entry in entries:
        counted[entry["action"]] = counted.get(entry["action"], 0) + 1
    return counted


def headline(entries: Sequence[Mapping[str, Any]]) -> str:
    """``Plan: 3 to create, 1 to update, 0 to delete, 10 unchanged (2 skipped, 1 conflict).``"""
    t = totals(entries)
    problems = [f"{t[k]} {k if t[k] == 1 else k + 's'}" for k in ("conflict", "error") if t[k]]
    problems += [f"{t['protected']} protected"] if t["protected"] else []
    problems += [f"{t['skipped']} skipped"] if t["skipped"] else []
    tail = f" ({', '.join(problems)})" if problems else ""
    return (f"Plan: {t['create']} to create, {t['update']} to update, {t['delete']} to delete, "
            f"{t['no change']} unchanged{tail}.")


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def entry_lines(entry: Mapping[str, Any]) -> list[str]:
    """The lines of one resource, as in the task log and the Markdown file."""
    where = f"[{entry['target']} {entry['region']}]"
    head = f"{SYMBOLS.get(entry['action'], '?')} {entry['address']} ({entry['kind']} {entry['name']}) {where}: " \
           f"{entry['action']}"
    lines = [head + (f" -- {entry['message']}" if entry.get("message") and entry["action"] != "no change" else "")]
    for row in entry.get("diff") or []:
        if entry["action"] == "create":
            lines.append(f"      {row['field']}: {_value(row['after'])}")
        elif entry["action"] == "delete":
            lines.append(f"      {row['field']}: {_value(row['before'])}")
        else:
            lines.append(f"      {row['field']}: {_value(row['before'])} -> {_value(row['after'])}")
    return lines


def render_markdown(entries: Sequence[Mapping[str, Any]], *, title: str, facts: Sequence[str]) -> str:
    lines = [f"# {title}", "", *(f"- {fact}" for fact in facts), "", f"**{headline(entries)}**", "", "```diff"]
    for entry in entries:
        lines.extend(entry_lines(entry))
    lines += ["```", "", "Legend: `+` create, `~` update (field: before -> after), `-` delete, `=` no change, "
              "`!` cannot be planned (conflict: an unmanaged resource has the name; protected; error), `.` skipped."]
    return "\n".join(lines) + "\n"


def plan_dir(results_dir: str, run_id: str, base: DataPath | None = None) -> DataPath:
    return (base or data_root()) / results_dir / safe_segment(run_id)


def write_plan(entries: Sequence[Mapping[str, Any]], *, results_dir: str, run_id: str, title: str,
               facts: Sequence[str]) -> dict[str, str]:
    """Write ``plan.md`` and ``plan.json`` under ``<data dir>/<results_dir>/<run id>/``; return their paths."""
    folder = plan_dir(results_dir, run_id)
    markdown = folder / "plan.md"
    document = folder / "plan.json"
    atomic_write_text(markdown, render_markdown(entries, title=title, facts=facts))
    atomic_write_text(document, json.dumps({"written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                            "headline": headline(entries), "totals": totals(entries),
                                            "resources": list(entries)}, indent=2, sort_keys=True, default=str))
    return {"markdown": str(markdown), "json": str(document)}
